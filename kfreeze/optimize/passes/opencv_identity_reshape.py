"""``opencv: true``: a Reshape to the shape its input already has is dropped.

Grappler merges Keras' ``Squeeze -> ExpandDims`` between two 1-D layers (MaxPooling1D then
Conv1D) into one ``Reshape`` to ``[1, 1, W, C]``: the identity on the 4-D tensor. TF runs it
for free, but OpenCV's importer does not: ``parseReshape`` swaps a ``[1, 1, W, C]`` target to
NCHW ``[1, C, 1, W]`` and reshapes the buffer it has just permuted back to NHWC, so the conv
after it reads scrambled numbers (the Conv1D audio model: relative error 1.3, no error
raised). Consumers read the input itself; an output keeps its name as an Identity.
"""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import bypass, const_values, shape_of, static_shapes
from tensorflow.core.framework import graph_pb2


def opencv_identity_reshape(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Every ``Reshape(x, shape)`` whose constant ``shape`` is ``x``'s static shape (all known) is read
    as ``x``; one that is an output becomes ``Identity(x)``."""
    consts = const_values(graph)
    by_name = {n.name: n for n in graph.node}
    shapes = None
    targets = {}
    for node in graph.node:
        if node.op != "Reshape" or len(node.input) != 2 or any(i.startswith("^") for i in node.input):
            continue
        shape_name = split_tensor(node.input[1])[0]
        if shape_name not in consts or by_name[shape_name].op != "Const":
            continue
        if shapes is None:
            shapes = static_shapes(graph)
        have = shape_of(shapes, node.input[0])
        want = [int(v) for v in np.asarray(consts[shape_name]).reshape(-1)]
        if have is not None and None not in have and [int(d) for d in have] == want:
            targets[node.name] = node.input[0]
    if not targets:
        return graph
    for name in targets:  # a chain of them reads the first one's input
        src = targets[name]
        while split_tensor(src)[0] in targets and split_tensor(src)[1] == 0:
            src = targets[split_tensor(src)[0]]
        targets[name] = src
    return bypass(graph, targets, ctx)
