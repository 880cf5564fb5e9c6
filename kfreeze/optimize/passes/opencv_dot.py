"""``opencv: true``: the dot product of two vectors (``Dot(axes=1)`` on 2-D inputs) without a batched matmul.

Keras' ``Dot(axes=1)([a, b])`` on ``[N, n]`` tensors is ``BatchMatMulV2(ExpandDims(a, 1),
ExpandDims(b, 2))`` then a Squeeze to ``[N, 1]``. OpenCV's TF importer has no BatchMatMul, and
its MatMul needs a constant operand, so ``opencv_refuse`` refused it (a siamese network's
similarity head). The same numbers are ``MatMul(a * b, ones[n, 1])``: an element-wise product
(OpenCV's Eltwise prod) and a sum as a matmul by constant ones (its InnerProduct).
"""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import const_values, consumers, copy, make_const, prune, shape_of, static_shapes, unique_name
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2


def _expanded(by_name, consts, tensor, axis):
    """``x`` when ``tensor`` is ``ExpandDims(x, axis)`` (axis given as a constant), else None."""
    node = by_name.get(split_tensor(tensor)[0])
    if node is None or node.op != "ExpandDims" or split_tensor(tensor)[1]:
        return None
    dim = split_tensor(node.input[1])[0]
    if dim not in consts or int(np.asarray(consts[dim]).reshape(-1)[0]) % 3 != axis:
        return None
    return node.input[0]


def opencv_dot(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``Squeeze(BatchMatMulV2(ExpandDims(a, 1), ExpandDims(b, 2)))`` with ``a``, ``b`` float32 ``[N, n]``
    (static ``n``) and a Squeeze of one of the unit axes becomes ``MatMul(Mul(a, b), ones[n, 1])`` under
    the Squeeze's name."""
    by_name = {n.name: n for n in graph.node}
    consts = const_values(graph)
    users = consumers(graph)
    shapes = None
    todo = []
    for node in graph.node:
        if node.op not in ("BatchMatMulV2", "BatchMatMul", "BatchMatMulV3") or node.attr["adj_x"].b or node.attr["adj_y"].b:
            continue
        if node.attr["T"].type != tf.float32.as_datatype_enum or len(users.get(node.name, [])) != 1:
            continue
        squeeze, _ = users[node.name][0]
        dims = list(squeeze.attr["squeeze_dims"].list.i)
        if squeeze.op != "Squeeze" or len(dims) != 1 or dims[0] % 3 not in (1, 2):
            continue
        a, b = _expanded(by_name, consts, node.input[0], 1), _expanded(by_name, consts, node.input[1], 2)
        if a is None or b is None:
            continue
        if shapes is None:
            shapes = static_shapes(graph)
        sa, sb = shape_of(shapes, a), shape_of(shapes, b)
        if sa is None or sb is None or len(sa) != 2 or sa[1] is None or sa[1] != sb[1] or len(sb) != 2:
            continue
        todo.append((squeeze.name, a, b, int(sa[1])))
    if not todo:
        return graph
    out = copy(graph)
    names = {n.name for n in out.node}
    nodes = {n.name: n for n in out.node}
    for name, a, b, n in todo:
        ones = make_const(unique_name(names, f"{name}/opencv_ones"), np.ones([n, 1], np.float32))
        ones.attr["value"].tensor.ClearField("float_val")
        ones.attr["value"].tensor.tensor_content = np.ones([n, 1], np.float32).tobytes()
        mul = node_def_pb2.NodeDef(name=unique_name(names, f"{name}/opencv_product"), op="Mul", input=[a, b])
        mul.attr["T"].type = tf.float32.as_datatype_enum
        target = nodes[name]
        target.Clear()
        target.name, target.op = name, "MatMul"
        target.input.extend([mul.name, ones.name])
        target.attr["T"].type = tf.float32.as_datatype_enum
        target.attr["transpose_a"].b = False
        target.attr["transpose_b"].b = False
        out.node.extend([ones, mul])
    return prune(out, ctx)
