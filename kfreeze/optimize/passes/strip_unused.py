"""Only what the outputs need; every configured input must still feed one."""

from __future__ import annotations

from kfreeze.errors import KfreezeError
from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2


def strip_unused(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Keep only what the outputs need; every input must still feed an output."""
    names = {n.name for n in graph.node}
    missing = [o for o in ctx.output_nodes if o not in names]
    if missing:
        raise KfreezeError(f"output '{missing[0]}'", "is not in the graph", "check the model's outputs ('kfreeze nodes' lists a graph's nodes)")
    out = graph if _needed(graph, ctx.output_nodes) == names else \
        tf.compat.v1.graph_util.extract_sub_graph(graph, ctx.output_nodes)
    kept = {n.name for n in out.node}
    for spec, name in zip(ctx.inputs, ctx.input_nodes):
        if name not in kept:
            raise KfreezeError(f"input '{spec.name}'", f"does not feed any of the outputs {list(ctx.outputs)} "
                               "(it is downstream of them or on another branch)",
                               "choose an input upstream of the outputs ('kfreeze nodes' lists candidates)")
        node, port = split_tensor(spec.name)
        # A placeholder has one output: anything still reading '<node>:j' reads the cut-away node.
        other_ports = sorted({inp for n in out.node for inp in n.input
                              if not inp.startswith("^") and split_tensor(inp)[0] == node and split_tensor(inp)[1] != port})
        if (node != name and node in kept) or other_ports:
            tensors = ", ".join(other_ports) or f"{node}:N"
            raise KfreezeError(f"input '{spec.name}'", f"the outputs also read other tensors of '{node}' "
                               f"({tensors}), so the graph cannot be cut there", "add those tensors to 'inputs'")
    return out


def _needed(graph: graph_pb2.GraphDef, outputs: list[str]) -> set[str]:
    """The nodes ``outputs`` depend on (data and control), as extract_sub_graph keeps them."""
    inputs = {n.name: [split_tensor(i)[0] for i in n.input] for n in graph.node}
    seen, todo = set(), [o for o in outputs if o in inputs]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(i for i in inputs.get(name, ()) if i not in seen)
    return seen
