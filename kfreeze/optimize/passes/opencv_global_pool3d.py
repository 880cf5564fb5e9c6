"""``opencv: true``: a 3-D global pooling becomes a 3-D pooling whose window is the whole volume.

Keras' GlobalAveragePooling3D / GlobalMaxPooling3D are ``Mean``/``Max`` over axes 1-3 of a 5-D
``[N, D, H, W, C]`` tensor. OpenCV's importer reads ``Mean``/``Max`` as global pooling only on
a 4-D NHWC tensor (``parseMean``), so ``opencv_refuse`` refused them. It does read
``AvgPool3D``/``MaxPool3D`` (NDHWC, as Conv3D's pooling layers): with ``ksize`` the static
``[1, D, H, W, 1]`` and VALID padding they give the same numbers, ``[N, 1, 1, 1, C]``, and a
Reshape to ``[N, C]`` drops the unit axes (OpenCV keeps the channel order: the volume is 1x1x1).
"""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import const_values, copy, make_const, shape_of, static_shapes, unique_name
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2

POOLS = {"Mean": "AvgPool3D", "Max": "MaxPool3D"}


def opencv_global_pool3d(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """float32 ``Mean``/``Max`` of a rank-5 tensor with static ``[N, D, H, W, C]`` over exactly axes 1, 2, 3
    becomes ``AvgPool3D``/``MaxPool3D`` (window ``[1, D, H, W, 1]``, VALID) and, without keep_dims, a
    Reshape to ``[N, C]``; the last node keeps the reduction's name."""
    consts = const_values(graph)
    todo = []
    shapes = None
    for node in graph.node:
        if node.op not in POOLS or node.attr["T"].type != tf.float32.as_datatype_enum:
            continue
        axes_name = split_tensor(node.input[1])[0]
        if axes_name not in consts:
            continue
        if shapes is None:
            shapes = static_shapes(graph)
        shape = shape_of(shapes, node.input[0])
        if shape is None or len(shape) != 5 or None in shape:
            continue
        if sorted({int(a) % 5 for a in np.asarray(consts[axes_name]).reshape(-1)}) == [1, 2, 3]:
            todo.append((node.name, [int(d) for d in shape]))
    if not todo:
        return graph
    out = copy(graph)
    names = {n.name for n in out.node}
    by_name = {n.name: n for n in out.node}
    for name, (n, d, h, w, c) in todo:
        node = by_name[name]
        keep_dims = node.attr["keep_dims"].b
        pool = node_def_pb2.NodeDef(name=unique_name(names, f"{name}/opencv_pool3d") if not keep_dims else name,
                                    op=POOLS[node.op], input=[node.input[0]])
        pool.attr["T"].type = tf.float32.as_datatype_enum
        pool.attr["ksize"].list.i.extend([1, d, h, w, 1])
        pool.attr["strides"].list.i.extend([1, 1, 1, 1, 1])
        pool.attr["padding"].s = b"VALID"
        pool.attr["data_format"].s = b"NDHWC"
        if keep_dims:
            node.CopyFrom(pool)
            continue
        shape = make_const(unique_name(names, f"{name}/opencv_shape"), np.asarray([n, c], np.int32))
        shape.attr["value"].tensor.tensor_content = np.asarray([n, c], np.int32).tobytes()
        shape.attr["value"].tensor.ClearField("int_val")
        node.Clear()
        node.name, node.op = name, "Reshape"
        node.input.extend([pool.name, shape.name])
        node.attr["T"].type = tf.float32.as_datatype_enum
        node.attr["Tshape"].type = tf.int32.as_datatype_enum
        out.node.extend([pool, shape])
    return out
