"""``opencv: true``: Keras' adaptive pooling, when the sizes divide, becomes one MaxPool/AvgPool.

Keras 3 writes AdaptiveAverage/MaxPooling1D/2D as pools over two window sizes, concatenated
and re-ordered by a ``GatherV2`` with constant indices; OpenCV's importer has no ``GatherV2``
(``Can't create layer ... of type "GatherV2"``). When the input size is a multiple of the
output size, every window has the same size and stride, and the whole subgraph is a plain
``MaxPool``/``AvgPool`` (with ``ExpandDims``/``Squeeze`` around it for 1-D; ``MaxPool3D``/``AvgPool3D``
for 3-D, whose gathers run per axis), which OpenCV
imports. The subgraph is only replaced after TF ran it on a random probe and gave exactly
that pooling. TF's tools do not rewrite a gather into a pool.
"""

from __future__ import annotations

import numpy as np

from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import (copy, make_const, prune, region_runner, shape_of, static_shapes, subgraph_region,
                                    unique_name)
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2

# Ops the adaptive-pooling subgraph is made of: data movement and the pools themselves.
REGION = ("GatherV2", "ConcatV2", "MaxPool", "AvgPool", "MaxPool3D", "AvgPool3D", "ExpandDims", "Squeeze", "Reshape",
          "StridedSlice")
POOLS = ("MaxPool", "AvgPool", "MaxPool3D", "AvgPool3D")




def _probe(graph, nodes, consts, x_tensor, x_shape, end):
    x = np.random.default_rng(0).normal(size=x_shape).astype(np.float32)
    run, sess = region_runner(graph, nodes, consts, x_tensor, end)
    with sess:
        return x, run(x)


def _pooled(x, out_shape, kind):
    """``x`` pooled (max or mean) over equal windows to ``out_shape``, or None if sizes do not divide."""
    if x.ndim != len(out_shape) or x.shape[0] != out_shape[0] or x.shape[-1] != out_shape[-1]:
        return None
    if any(a % b for a, b in zip(x.shape[1:-1], out_shape[1:-1])):
        return None
    split = [x.shape[0]]
    for a, b in zip(x.shape[1:-1], out_shape[1:-1]):
        split += [b, a // b]
    y = x.reshape(split + [x.shape[-1]])
    axes = tuple(range(2, 2 * (x.ndim - 2) + 1, 2))
    return y.max(axes) if kind == "max" else y.mean(axes)


def opencv_adaptive_pool(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Each float32 ``GatherV2`` whose GatherV2/ConcatV2/pool subgraph reads one tensor ``x``
    (rank 3, 4 or 5) and computes, on a probe, exactly max or mean pooling of ``x`` over equal
    windows becomes that ``MaxPool``/``AvgPool`` (VALID, stride = window), under its name."""
    by_name = {n.name: n for n in graph.node}
    found = []
    shapes = None
    for node in graph.node:
        if node.op != "GatherV2" or node.attr["Tparams"].type != tf.float32.as_datatype_enum:
            continue
        region = subgraph_region(by_name, node, REGION)
        if region is None or len(region[2]) != 1 or not any(n.op in POOLS for n in region[0]):
            continue
        if shapes is None:
            shapes = static_shapes(graph)
        (x_tensor,) = region[2]
        xs, ys = shape_of(shapes, x_tensor), shape_of(shapes, node.name)
        if not xs or not ys or None in xs or None in ys or len(xs) not in (3, 4, 5) or len(ys) != len(xs):
            continue
        x, y = _probe(graph, region[0], region[1], x_tensor, xs, node.name)
        for kind in ("max", "mean"):
            want = _pooled(x, ys, kind)
            if want is not None and want.shape == y.shape and np.allclose(want, y, rtol=1e-6, atol=1e-6):
                found.append((node.name, x_tensor, kind, [a // b for a, b in zip(xs[1:-1], ys[1:-1])]))
                break
    if not found:
        return graph
    out = copy(graph)
    names = {n.name for n in out.node}
    by_name = {n.name: n for n in out.node}
    f32 = tf.float32.as_datatype_enum
    for name, x_tensor, kind, window in found:
        node = by_name[name]
        op = "MaxPool" if kind == "max" else "AvgPool"
        src = x_tensor[:-2] if x_tensor.endswith(":0") else x_tensor
        if len(window) >= 2:  # 3-D: AvgPool3D/MaxPool3D, which OpenCV imports on its NCDHW blob
            _pool(node, op + ("3D" if len(window) == 3 else ""), src, [1, *window, 1])
            continue
        axis = make_const(unique_name(names, f"{name}/opencv_axis"), np.int32(1))
        expand = node_def_pb2.NodeDef(name=unique_name(names, f"{name}/opencv_expand"), op="ExpandDims",
                                      input=[src, axis.name])
        expand.attr["T"].type = f32
        expand.attr["Tdim"].type = tf.int32.as_datatype_enum
        pool = node_def_pb2.NodeDef(name=unique_name(names, f"{name}/opencv_pool"))
        _pool(pool, op, expand.name, [1, 1, window[0], 1])
        node.op = "Squeeze"
        node.ClearField("attr")
        node.attr["T"].type = f32
        node.attr["squeeze_dims"].list.i[:] = [1]
        node.input[:] = [pool.name]
        out.node.extend([axis, expand, pool])
    return prune(out, ctx)


def _pool(node, op: str, src: str, ksize: list[int]) -> None:
    node.op = op
    node.ClearField("attr")
    node.attr["T"].type = tf.float32.as_datatype_enum
    node.attr["ksize"].list.i[:] = ksize
    node.attr["strides"].list.i[:] = ksize
    node.attr["padding"].s = b"VALID"
    node.attr["data_format"].s = b"NDHWC" if len(ksize) == 5 else b"NHWC"
    node.input[:] = [src]
