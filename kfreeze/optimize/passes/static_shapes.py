"""Shape, Size and Rank of a tensor whose shape is fully known become constants."""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import copy, import_light, make_const, prune
from tensorflow.core.framework import graph_pb2

_SHAPE_OPS = ("Shape", "Size", "Rank")


def static_shapes(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``Shape(x)`` -> ``Const`` when ``x``'s shape is fully static (after the cut fixed the inputs').

    Grappler materializes shapes, but not of tensors computed from the graph's feeds, whose shape it
    may not assume: kfreeze runs it with the inputs as feeds. A Conv2DTranspose traced with a free
    batch computes its output size as ``Pack(StridedSlice(Shape(x)), h, w, c)``; at ``input_shape``
    [1, 8, 8, 3] that is the constant [1, 16, 16, 4], which Grappler then folds, and which OpenCV
    reads (it cannot follow the StridedSlice).
    """
    if not any(n.op in _SHAPE_OPS for n in graph.node):
        return graph
    g = import_light(graph)
    out = copy(graph)
    changed = False
    for node in out.node:
        if node.op not in _SHAPE_OPS or not node.input:
            continue
        src = g.get_operation_by_name(split_tensor(node.input[0])[0]).outputs[split_tensor(node.input[0])[1]]
        shape = src.shape
        if shape.rank is None or None in shape.as_list():
            continue
        dims = shape.as_list()
        value = {"Shape": dims, "Size": int(np.prod(dims, dtype=np.int64)), "Rank": len(dims)}[node.op]
        dtype = node.attr["out_type"].type if "out_type" in node.attr else None
        const = make_const(node.name, np.asarray(value), dtype=dtype)
        node.Clear()
        node.CopyFrom(const)
        changed = True
    return prune(out, ctx) if changed else graph
