"""``opencv: true``: ``ExpandDims(Squeeze(t, [k]), k)`` reads ``t`` itself.

Keras' 1-D layers each drop and re-add the unit axis they run their 2-D op over (Conv1D:
``... -> Conv2D -> Squeeze``; the next pooling 1D: ``ExpandDims -> MaxPool``). TF keeps
the round trip (shape ops cost nothing there), but OpenCV's importer loses track of the
layout on the 3-D blob in between: the op after it reads the axes in the wrong order
(UpSampling1D, pooling 1D after a conv). Reading the 4-D tensor directly keeps OpenCV's
NCHW bookkeeping intact. The Squeeze stays for any other reader.
"""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import bypass, const_values, shape_of, static_shapes
from tensorflow.core.framework import graph_pb2


def opencv_squeeze_expand(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Consumers of an ``ExpandDims(Squeeze(t, [k]), k')`` whose result has ``t``'s shape read
    ``t`` (the ExpandDims keeps its name only if it is an output, as an Identity of ``t``)."""
    by_name = {n.name: n for n in graph.node}
    consts = const_values(graph)
    pairs = []
    shapes = None
    for node in graph.node:
        if node.op != "ExpandDims":
            continue
        sq = by_name.get(split_tensor(node.input[0])[0])
        if sq is None or sq.op != "Squeeze" or split_tensor(node.input[0])[1] or len(sq.attr["squeeze_dims"].list.i) != 1:
            continue
        dim = split_tensor(node.input[1])[0]
        if dim not in consts:
            continue
        if shapes is None:
            shapes = static_shapes(graph)
        t_shape, y_shape = shape_of(shapes, sq.input[0]), shape_of(shapes, node.name)
        if t_shape is None or y_shape is None or None in t_shape or t_shape != y_shape:
            continue
        rank = len(t_shape)
        k = int(sq.attr["squeeze_dims"].list.i[0]) % rank
        axis = int(np.asarray(consts[dim]).reshape(-1)[0]) % rank
        if k == axis:
            pairs.append((node.name, sq.input[0]))
    if not pairs:
        return graph
    return bypass(graph, dict(pairs), ctx)
