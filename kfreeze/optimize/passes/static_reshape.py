"""Keras 3 Flatten's run-time shape becomes a constant."""

from __future__ import annotations

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import copy, import_light, make_const, prune
from tensorflow.core.framework import graph_pb2


def static_reshape(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Give a Reshape a constant target shape when inference knows all but one dimension.

    Keras 3 Flatten computes its shape at run time (Shape -> StridedSlice -> Pack)
    because the batch is dynamic; constant folding cannot fold that, and OpenCV
    cannot import it. ``[-1, 1600]`` is the same reshape as a constant.
    """
    if not any(n.op == "Reshape" for n in graph.node):
        return graph
    g = import_light(graph)
    out = copy(graph)
    new_nodes = []
    for node in out.node:
        if node.op != "Reshape":
            continue
        shape_src = g.get_operation_by_name(split_tensor(node.input[1])[0])
        if shape_src.type == "Const":
            continue
        shape = g.get_operation_by_name(node.name).outputs[0].shape
        if shape.rank is None or sum(d is None for d in shape.as_list()) > 1:
            continue
        new = make_const(f"{node.name}/static_shape", [-1 if d is None else d for d in shape.as_list()],
                         dtype=g.get_operation_by_name(node.name).get_attr("Tshape"))
        new_nodes.append(new)
        node.input[1] = new.name
    out.node.extend(new_nodes)
    return prune(out, ctx) if new_nodes else out
