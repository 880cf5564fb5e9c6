"""``opencv: true``: a Dense/EinsumDense on a 3-D tensor as OpenCV's importer reads one.

Keras writes a Dense on ``[N, T, K]`` as ``Reshape -> MatMul -> Reshape -> BiasAdd`` and an
EinsumDense ``abc,cd->abd`` as ``BatchMatMulV2(x, W) -> BiasAdd``. OpenCV's importer has no
``BatchMatMulV2``, and it folds a bias into a MatMul only when the bias op reads the MatMul:
a ``BiasAdd`` after the Reshape is parsed on its own, with its NHWC ``data_format`` making
the importer permute a 3-D blob as if it were 4-D (``permute_layer.cpp: _numAxes``). The same
numbers, in a form it reads: ``Reshape(x, [N*T, K]) -> MatMul(W) -> Add(b) -> Reshape([N, T, M])``
(an ``Add``, which it folds into the MatMul; no ``data_format``). TF's tools keep Keras' form.
"""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import consumers, const_values, copy, make_const, shape_of, static_shapes, unique_name
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2


def _batch_matmuls(graph, consts, shapes):
    """BatchMatMulV2 nodes with a 3-D static left operand and a 2-D constant right one, no adjoints."""
    found = []
    for node in graph.node:
        if node.op not in ("BatchMatMulV2", "BatchMatMul", "BatchMatMulV3") or node.attr["adj_x"].b or node.attr["adj_y"].b:
            continue
        w = split_tensor(node.input[1])[0]
        if w not in consts or np.asarray(consts[w]).ndim != 2 or node.attr["T"].type != tf.float32.as_datatype_enum:
            continue
        xs = shape_of(shapes, node.input[0])
        if xs is None or len(xs) != 3 or None in xs:
            continue
        found.append((node.name, xs, int(np.asarray(consts[w]).shape[1])))
    return found


def opencv_dense3d(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``BatchMatMulV2(x[N,T,K], W[K,M])`` -> ``Reshape(MatMul(Reshape(x, [N*T, K]), W), [N, T, M])``;
    then ``BiasAdd(Reshape(MatMul), b)`` (the Reshape keeping the last axis, each read once) ->
    ``Reshape(Add(MatMul, b))``. Names stay on the nodes that end each pattern."""
    if not any(n.op.startswith("BatchMatMul") or n.op == "BiasAdd" for n in graph.node):
        return graph
    out = copy(graph)
    consts = const_values(out)
    shapes = static_shapes(out)
    names = {n.name for n in out.node}
    by_name = {n.name: n for n in out.node}
    changed = False
    f32 = tf.float32.as_datatype_enum
    for name, (n, t, k), m in _batch_matmuls(out, consts, shapes):
        node = by_name[name]
        flat = make_const(unique_name(names, f"{name}/opencv_flat"), np.asarray([n * t, k], np.int32))
        back = make_const(unique_name(names, f"{name}/opencv_back"), np.asarray([n, t, m], np.int32))
        reshape = node_def_pb2.NodeDef(name=unique_name(names, f"{name}/opencv_in"), op="Reshape",
                                       input=[node.input[0], flat.name])
        matmul = node_def_pb2.NodeDef(name=unique_name(names, f"{name}/opencv_matmul"), op="MatMul",
                                      input=[reshape.name, node.input[1]])
        for x in (reshape, matmul):
            x.attr["T"].type = f32
        reshape.attr["Tshape"].type = tf.int32.as_datatype_enum
        matmul.attr["transpose_a"].b = matmul.attr["transpose_b"].b = False
        node.op = "Reshape"
        node.ClearField("attr")
        node.attr["T"].type = f32
        node.attr["Tshape"].type = tf.int32.as_datatype_enum
        node.input[:] = [matmul.name, back.name]
        out.node.extend([flat, back, reshape, matmul])
        by_name.update({x.name: x for x in (flat, back, reshape, matmul)})
        changed = True
    users = consumers(out)
    if changed:
        shapes = static_shapes(out)
    for node in list(out.node):
        if node.op != "BiasAdd" or node.attr["data_format"].s not in (b"", b"NHWC"):
            continue
        reshape = by_name.get(split_tensor(node.input[0])[0])
        if reshape is None or reshape.op != "Reshape" or split_tensor(node.input[0])[1] or len(users.get(reshape.name, [])) != 1:
            continue
        matmul = by_name.get(split_tensor(reshape.input[0])[0])
        if matmul is None or matmul.op != "MatMul" or len(users.get(matmul.name, [])) != 1:
            continue
        ms, rs = shape_of(shapes, reshape.input[0]), shape_of(shapes, reshape.name)
        if not ms or not rs or len(rs) != 3 or ms[-1] is None or ms[-1] != rs[-1]:
            continue
        bias, shape_in, reshape_name = node.input[1], reshape.input[1], reshape.name
        reshape.op = "Add"  # the node named like the Reshape adds the bias to the MatMul
        tshape = reshape.attr["Tshape"].type
        reshape.ClearField("attr")
        reshape.attr["T"].type = f32
        reshape.input[:] = [matmul.name, bias]
        node.op = "Reshape"  # the node named like the BiasAdd (maybe an output) reshapes
        node.ClearField("attr")
        node.attr["T"].type = f32
        node.attr["Tshape"].type = tshape or tf.int32.as_datatype_enum
        node.input[:] = [reshape_name, shape_in]
        changed = True
    return out if changed else graph
