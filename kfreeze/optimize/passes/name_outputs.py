"""The op computing an output takes the output's name; its Identity goes."""

from __future__ import annotations

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import copy, rename_inputs, consumers
from tensorflow.core.framework import graph_pb2


def name_outputs(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``out = Identity(y)``: ``y`` takes the name ``out`` and the Identity goes.

    Only when ``y`` is an op's port 0, read by nothing else, not an input or
    another output, and not a Const (a constant output keeps its Identity).
    """
    keep = set(ctx.output_nodes)
    inputs = set(ctx.input_nodes)
    by_name = {n.name: n for n in graph.node}
    users = consumers(graph)
    mapping = {}
    for name in ctx.output_nodes:
        node = by_name.get(name)
        if node is None or node.op != "Identity" or len(node.input) != 1 or node.input[0].startswith("^"):
            continue
        src, port = split_tensor(node.input[0])
        producer = by_name.get(src)
        if producer is None or port or src in keep or src in inputs or src in mapping \
                or producer.op in ("Const", "Placeholder", "PlaceholderWithDefault") or len(users.get(src, [])) != 1:
            continue
        if producer.attr["T"].type and node.attr["T"].type != producer.attr["T"].type:
            continue
        mapping[src] = name
    if not mapping:
        return graph
    out = copy(graph)
    drop = set(mapping.values())
    kept = [n for n in out.node if n.name not in drop]
    del out.node[:]
    for node in kept:
        node.name = mapping.get(node.name, node.name)
        out.node.append(node)
    rename_inputs(out, mapping)
    return out
