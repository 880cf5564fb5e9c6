"""``opencv: true``: Keras' Masking layer as arithmetic OpenCV's importer reads.

``Masking(mask_value=v)`` is ``SelectV2(Any(NotEqual(x, v), -1, keep_dims), x, 0)``: a step whose
features all equal ``v`` becomes zeros. OpenCV's importer has no NotEqual, Any or SelectV2, and reads
a reduction only on 4-D tensors, so ``opencv_refuse`` refused it. On ``X = Reshape(x, [rows, C])``
the same numbers are

    i = ClipByValue(|X - v| * 2^127, 0, 1)       (1 where a feature differs from v, else 0)
    m = ClipByValue(i @ ones[C, 1], 0, 1)         (1 where any feature of the step differs)
    y = X * (m @ ones[1, C])                      (the step, or zeros)

and ``Reshape(y, x's shape)``. ``|X - v|`` is 0 only where ``X == v``, and any other difference a
float32 can hold normally is at least 2^-126, so times 2^127 it clips to 1. A difference below that
(a denormal) is flushed to zero by TF's CPU kernels (and OpenCV's) already. The sums and products
are of zeros and ones: exact.
"""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import const_values, copy, make_const, prune, shape_of, static_shapes, unique_name
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2

F32 = tf.float32.as_datatype_enum
SCALE = np.float32(2.0 ** 127)


def _match(by_name, consts, select):
    """``(x, v)`` when ``select`` is Keras' Masking of float32 ``x`` by the finite scalar ``v``, else None."""
    if select.op not in ("SelectV2", "Select") or len(select.input) != 3 or select.attr["T"].type != F32:
        return None
    cond, x, zero = select.input
    anyop = by_name.get(split_tensor(cond)[0])
    if anyop is None or anyop.op != "Any" or not anyop.attr["keep_dims"].b or split_tensor(zero)[0] not in consts:
        return None
    if np.any(np.asarray(consts[split_tensor(zero)[0]]) != 0) or np.asarray(consts[split_tensor(zero)[0]]).size != 1:
        return None
    ne = by_name.get(split_tensor(anyop.input[0])[0])
    axis = split_tensor(anyop.input[1])[0]
    if ne is None or ne.op != "NotEqual" or axis not in consts or np.asarray(consts[axis]).size != 1:
        return None
    a, b = ne.input
    if split_tensor(b)[0] in consts and split_tensor(a) == split_tensor(x):
        value = np.asarray(consts[split_tensor(b)[0]])
    elif split_tensor(a)[0] in consts and split_tensor(b) == split_tensor(x):
        value = np.asarray(consts[split_tensor(a)[0]])
    else:
        return None
    if value.size != 1 or not np.isfinite(value).all():
        return None
    return x, int(np.asarray(consts[axis]).reshape(-1)[0]), np.float32(value.reshape(-1)[0])


def opencv_masking(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``SelectV2(Any(NotEqual(x, v), axis=-1, keep_dims), x, 0)`` with ``x`` float32 of static shape
    (last axis ``C``) and ``v`` a finite scalar becomes the 2-D arithmetic above, under the select's name.

    ``PASSES`` runs it only with ``Context(opencv=True)``.
    """
    by_name = {n.name: n for n in graph.node}
    consts = const_values(graph)
    shapes = None
    todo = []
    for node in graph.node:
        found = _match(by_name, consts, node)
        if found is None:
            continue
        if shapes is None:
            shapes = static_shapes(graph)
        x, axis, value = found
        shape = shape_of(shapes, x)
        if not shape or len(shape) < 2 or None in shape or axis not in (-1, len(shape) - 1):
            continue
        todo.append((node.name, x, value, [int(d) for d in shape]))
    if not todo:
        return graph
    out = copy(graph)
    names = {n.name for n in out.node}
    nodes = {n.name: n for n in out.node}
    for name, x, value, shape in todo:
        c = shape[-1]

        def const(tag, v):
            node = make_const(unique_name(names, f"{name}/opencv_{tag}"), v)
            out.node.append(node)
            return node.name

        def op(tag, kind, *inputs):
            node = node_def_pb2.NodeDef(name=unique_name(names, f"{name}/opencv_{tag}"), op=kind, input=list(inputs))
            node.attr["T"].type = F32
            if kind == "Reshape":
                node.attr["Tshape"].type = tf.int32.as_datatype_enum
            out.node.append(node)
            return node.name

        rows = op("rows", "Reshape", x, const("rows_shape", np.array([-1, c], np.int32)))
        zero, one = const("zero", np.float32(0)), const("one", np.float32(1))
        diff = op("abs", "Abs", op("diff", "Sub", rows, const("mask_value", value)))
        differs = op("differs", "ClipByValue", op("scaled", "Mul", diff, const("scale", SCALE)), zero, one)
        count = op("count", "MatMul", differs, const("sum", np.ones([c, 1], np.float32)))
        keep = op("keep", "ClipByValue", count, zero, one)
        keep_c = op("keep_c", "MatMul", keep, const("broadcast", np.ones([1, c], np.float32)))
        masked = op("masked", "Mul", rows, keep_c)
        target = nodes[name]
        target.Clear()
        target.name, target.op = name, "Reshape"
        target.input.extend([masked, const("shape", np.array(shape, np.int32))])
        target.attr["T"].type = F32
        target.attr["Tshape"].type = tf.int32.as_datatype_enum
    return prune(out, ctx)
