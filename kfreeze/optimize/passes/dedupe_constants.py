"""Identical constants become one."""

from __future__ import annotations

import hashlib

from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import copy, prune, rename_inputs
from tensorflow.core.framework import graph_pb2, node_def_pb2


def dedupe_constants(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Constants with the same dtype, shape and values become one, the first by name."""
    keep = set(ctx.output_nodes)
    groups: dict[tuple, list[node_def_pb2.NodeDef]] = {}
    for node in graph.node:
        if node.op != "Const" or node.name in keep or node.input:
            continue
        t = node.attr["value"].tensor
        key = (t.dtype, tuple(d.size for d in t.tensor_shape.dim))
        groups.setdefault(key, []).append(node)
    mapping = {}
    for nodes in groups.values():
        if len(nodes) < 2:
            continue
        by_value: dict[bytes, str] = {}
        for node in sorted(nodes, key=lambda n: n.name):
            t = node.attr["value"].tensor
            # after dense_constants every numeric constant is tensor_content: equal bytes, equal values
            data = t.tensor_content or t.SerializeToString(deterministic=True)
            key = hashlib.sha256(data).digest()
            if key in by_value:
                mapping[node.name] = by_value[key]
            else:
                by_value[key] = node.name
    if not mapping:
        return graph
    out = copy(graph)
    rename_inputs(out, mapping)
    return prune(out, ctx)
