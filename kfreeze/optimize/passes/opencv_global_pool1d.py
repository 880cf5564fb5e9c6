"""``opencv: true``: a 1-D global pooling becomes the 2-D one over a unit axis.

Keras' GlobalAveragePooling1D / GlobalMaxPooling1D are ``Mean``/``Max`` over axis 1 of a 3-D
``[N, steps, C]`` tensor. OpenCV's importer reads ``Mean``/``Max`` as global pooling only
over the spatial axes of a 4-D NHWC tensor (``parseMean``); on a 3-D blob it adds a
permute for 4 axes (``permute_layer.cpp: _numAxes == inputs[0].size()``). The same numbers
are ``Mean(ExpandDims(x, 1), [1, 2])``, the form GlobalAveragePooling2D takes, and
``opencv_squeeze_expand`` then removes the Squeeze/ExpandDims between it and a Conv1D.
"""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import const_values, copy, make_const, shape_of, static_shapes, unique_name
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2


def opencv_global_pool1d(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """float32 ``Mean``/``Max`` (keep_dims false) of a rank-3 tensor over axis 1 only becomes the
    same op over axes [1, 2] of ``ExpandDims(x, 1)``, under its own name."""
    consts = const_values(graph)
    todo = []
    shapes = None
    for node in graph.node:
        if node.op not in ("Mean", "Max") or node.attr["keep_dims"].b or node.attr["T"].type != tf.float32.as_datatype_enum:
            continue
        axes_name = split_tensor(node.input[1])[0]
        if axes_name not in consts:
            continue
        if shapes is None:
            shapes = static_shapes(graph)
        shape = shape_of(shapes, node.input[0])
        if shape is None or len(shape) != 3:
            continue
        if sorted({int(a) % 3 for a in np.asarray(consts[axes_name]).reshape(-1)}) == [1]:
            todo.append(node.name)
    if not todo:
        return graph
    out = copy(graph)
    names = {n.name for n in out.node}
    by_name = {n.name: n for n in out.node}
    for name in todo:
        node = by_name[name]
        axis = make_const(unique_name(names, f"{name}/opencv_axis"), np.int32(1))
        axes = make_const(unique_name(names, f"{name}/opencv_axes"), np.asarray([1, 2], np.int32))
        expand = node_def_pb2.NodeDef(name=unique_name(names, f"{name}/opencv_expand"), op="ExpandDims",
                                      input=[node.input[0], axis.name])
        expand.attr["T"].type = tf.float32.as_datatype_enum
        expand.attr["Tdim"].type = tf.int32.as_datatype_enum
        node.input[0], node.input[1] = expand.name, axes.name
        node.attr["Tidx"].type = tf.int32.as_datatype_enum
        out.node.extend([axis, axes, expand])
    return out
