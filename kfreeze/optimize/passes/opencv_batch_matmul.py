"""``opencv: true``: a batched matmul of two computed 3-D tensors (batch 1) as 2-D MatMuls by constants.

Keras' Attention and AdditiveAttention compute ``softmax(q k^T) v`` with ``BatchMatMulV2`` of two
computed tensors. OpenCV's importer has no BatchMatMul, and its MatMul needs a constant operand, so
``opencv_refuse`` refused them. For ``a [1, m, k]`` and ``b [1, k, n]`` (``[1, n, k]`` with ``adj_y``),
on ``A = Reshape(a, [m, k])`` and ``B = Reshape(b, [1, k*n])`` (b's own flat order, never transposed):

    P = (A @ T) * Concat([B] * m, axis 0)     (P[i, c] = a[i, kk] * b[kk, j], c = b's flat index of (kk, j))
    y = Reshape(P @ S, [1, m, n])             (S sums each j's k products)

``T`` and ``S`` are 0/1 constants, so every MatMul by them is an exact copy or an exact sum of the
products; only the order of the k additions differs from TF's kernel (float rounding, 1e-7 relative).
The constants take ``k*n*(k+n)`` floats: past ``MAX_ELEMENTS`` the matmul is left to the refusal.
"""

from __future__ import annotations

import numpy as np

from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import copy, make_const, prune, shape_of, static_shapes, unique_name
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2

F32 = tf.float32.as_datatype_enum
OPS = ("BatchMatMulV2", "BatchMatMulV3", "BatchMatMul")
MAX_ELEMENTS = 1 << 22  # 16 MB of 0/1 constants


def _sizes(shapes, node):
    """``(m, k, n)`` for a float32 batch-1 3-D batched matmul Keras' attention layers write, else None."""
    if node.op not in OPS or node.attr["adj_x"].b or len(node.input) != 2:
        return None
    if node.attr["T"].type != F32 or any(node.attr[t].type not in (0, F32) for t in ("Ta", "Tb")):
        return None
    sa, sb = shape_of(shapes, node.input[0]), shape_of(shapes, node.input[1])
    if not sa or not sb or len(sa) != 3 or len(sb) != 3 or None in sa or None in sb or sa[0] != 1 or sb[0] != 1:
        return None
    m, k = sa[1], sa[2]
    n = sb[1] if node.attr["adj_y"].b else sb[2]
    if (sb[2] if node.attr["adj_y"].b else sb[1]) != k or k * n * (k + n) > MAX_ELEMENTS:
        return None
    return int(m), int(k), int(n)


def opencv_batch_matmul(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Each ``BatchMatMulV2(a, b)`` of float32 ``[1, m, k]`` and ``[1, k, n]`` (``adj_y``: ``[1, n, k]``;
    no ``adj_x``) becomes the 2-D form above, under its name.

    ``PASSES`` runs it only with ``Context(opencv=True)``.
    """
    if not any(n.op in OPS for n in graph.node):
        return graph
    shapes = static_shapes(graph)
    todo = [(n.name, sizes, n.attr["adj_y"].b) for n in graph.node if (sizes := _sizes(shapes, n)) is not None]
    if not todo:
        return graph
    out = copy(graph)
    names = {n.name for n in out.node}
    nodes = {n.name: n for n in out.node}
    for name, (m, k, n), adj_y in todo:
        a, b = nodes[name].input

        def const(tag, value):
            node = make_const(unique_name(names, f"{name}/opencv_{tag}"), value)
            out.node.append(node)
            return node.name

        def op(tag, kind, *inputs, **ints):
            node = node_def_pb2.NodeDef(name=unique_name(names, f"{name}/opencv_{tag}"), op=kind, input=list(inputs))
            node.attr["T"].type = F32
            if kind == "Reshape":
                node.attr["Tshape"].type = tf.int32.as_datatype_enum
            if kind == "MatMul":
                node.attr["transpose_a"].b = node.attr["transpose_b"].b = False
            if kind == "ConcatV2":
                node.attr["N"].i = len(inputs) - 1
                node.attr["Tidx"].type = tf.int32.as_datatype_enum
            out.node.append(node)
            return node.name

        t = np.zeros([k, k * n], np.float32)
        s = np.zeros([k * n, n], np.float32)
        for kk in range(k):
            for j in range(n):
                c = j * k + kk if adj_y else kk * n + j  # b's own flat index of (kk, j)
                t[kk, c] = s[c, j] = 1.0
        rows = op("rows", "Reshape", a, const("rows_shape", np.array([-1, k], np.int32)))
        spread = op("spread", "MatMul", rows, const("spread_weights", t))
        flat = op("flat", "Reshape", b, const("flat_shape", np.array([1, k * n], np.int32)))
        tiled = op("tiled", "ConcatV2", *[flat] * m, const("axis", np.int32(0)))
        summed = op("summed", "MatMul", op("products", "Mul", spread, tiled), const("sum_weights", s))
        target = nodes[name]
        target.Clear()
        target.name, target.op = name, "Reshape"
        target.input.extend([summed, const("shape", np.array([1, m, n], np.int32))])
        target.attr["T"].type = F32
        target.attr["Tshape"].type = tf.int32.as_datatype_enum
    return prune(out, ctx)
