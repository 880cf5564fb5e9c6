"""``opencv: true``: ``Reshape(Dense(z), [N, H, W, C])`` becomes ``Transpose(Reshape(Dense'(z), [N, C, H, W]))``.

A GAN generator (DCGAN's "project and reshape") or a decoder turns a vector into an image with
``Dense(H*W*C) -> (BatchNorm, activation) -> Reshape((H, W, C))``. OpenCV's importer reads a
Reshape to 4-D after a 2-D ``InnerProduct`` as a plain reshape of its buffer and labels the
result NCHW: the conv after it sees ``W`` channels where Keras has ``C``
(``convolution_layer.cpp: blobs[0].size[0] == inpCn``), or wrong numbers when the sizes happen
to agree. The permutation it would need (``parseReshape`` adds a ``/nchw`` Permute) is not
what its consumers read.

The Dense's output features can be put in any order, so they are put in channel-major
order: the MatMul's weight columns, and every per-feature constant on the element-wise
chain between it and the Reshape (bias, batch norm scale and shift), are permuted so that the
buffer is already ``[C, H, W]``; the Reshape asks for ``[N, C, H, W]`` and a
``Transpose([0, 2, 3, 1])`` gives TF its NHWC tensor back, which OpenCV reads as the change
of label it is (NCHW to NHWC) and nothing else. The same numbers in TF.
"""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import const_values, consumers, copy, make_const, unique_name
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2

# Element-wise ops of one tensor: permuting their input's features permutes their output's.
UNARY = {"Relu", "Relu6", "LeakyRelu", "Elu", "Selu", "Tanh", "Sigmoid", "Softplus", "Softsign", "Identity",
         "Neg", "Abs", "Square", "Exp"}
# Element-wise ops with a constant operand (a scalar, or one value per feature).
BINARY = {"BiasAdd", "Add", "AddV2", "Sub", "Mul", "RealDiv", "Maximum", "Minimum"}


def _chain(by_name, consts, users, keep, reshape, features):
    """From the Reshape's input back to a MatMul with constant weights: ``(matmul, [(node, const
    input index)])``, every node read only by the next; None when the path is anything else."""
    steps = []
    name, port = split_tensor(reshape.input[0])
    while True:
        node = by_name.get(name)
        if node is None or port or name in keep or len(users.get(name, [])) != 1:
            return None
        if node.op == "MatMul":
            weights = split_tensor(node.input[1])[0]
            if node.attr["transpose_a"].b or weights not in consts or by_name[weights].op != "Const":
                return None
            value = np.asarray(consts[weights])
            cols = value.shape[0] if node.attr["transpose_b"].b else value.shape[-1]
            return (node, steps) if value.ndim == 2 and cols == features else None
        if node.op in UNARY:
            name, port = split_tensor(node.input[0])
            continue
        if node.op not in BINARY or len(node.input) != 2 or any(i.startswith("^") for i in node.input):
            return None
        srcs = [split_tensor(i)[0] for i in node.input]
        which = [k for k, s in enumerate(srcs) if s in consts and by_name[s].op == "Const"]
        if len(which) != 1 or (node.op in ("Sub", "RealDiv", "BiasAdd") and which[0] != 1):
            return None
        value = np.asarray(consts[srcs[which[0]]])
        if not (value.size == 1 or (value.size == features and value.shape[-1] == features)):
            return None
        if value.size == features:
            steps.append((node, which[0]))
        name, port = split_tensor(node.input[1 - which[0]])


def opencv_dense_reshape(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Each ``Reshape(x, [N, H, W, C])`` (N 1 or -1, H not 1) whose ``x`` is a MatMul with constant
    weights followed only by element-wise ops on constants: the MatMul's columns and the per-feature
    constants permuted to channel-major order, the Reshape to ``[N, C, H, W]``, then a Transpose to
    NHWC that takes the Reshape's name."""
    by_name = {n.name: n for n in graph.node}
    consts = const_values(graph)
    users = consumers(graph)
    keep = set(ctx.output_nodes)
    found = []
    for node in graph.node:
        if node.op != "Reshape" or len(node.input) != 2:
            continue
        shape_name = split_tensor(node.input[1])[0]
        if shape_name not in consts or by_name[shape_name].op != "Const":
            continue
        shape = [int(v) for v in np.asarray(consts[shape_name]).reshape(-1)]
        # [N, 1, W, C] OpenCV already reads right (parseReshape's NHWC->NCHW swap).
        if len(shape) != 4 or shape[0] not in (1, -1) or min(shape[1:]) < 1 or shape[1] == 1:
            continue
        chain = _chain(by_name, consts, users, keep, node, shape[1] * shape[2] * shape[3])
        if chain is not None:
            found.append((node.name, shape, chain[0].name, [(n.name, k) for n, k in chain[1]]))
    if not found:
        return graph
    out = copy(graph)
    by_name = {n.name: n for n in out.node}
    names = set(by_name)
    added = []
    for reshape_name, (n, h, w, c), matmul_name, steps in found:
        perm = np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)
        matmul = by_name[matmul_name]
        weights = by_name[split_tensor(matmul.input[1])[0]]
        value = tf.make_ndarray(weights.attr["value"].tensor)
        value = value[perm] if matmul.attr["transpose_b"].b else value[:, perm]
        new = make_const(unique_name(names, weights.name + "/opencv_nchw"), value)
        added.append(new)
        matmul.input[1] = new.name
        for step_name, k in steps:
            step = by_name[step_name]
            src = by_name[split_tensor(step.input[k])[0]]
            value = tf.make_ndarray(src.attr["value"].tensor)
            new = make_const(unique_name(names, src.name + "/opencv_nchw"), value.reshape(-1)[perm].reshape(value.shape))
            added.append(new)
            step.input[k] = new.name
        reshape = by_name[reshape_name]
        inner = unique_name(names, reshape_name + "/opencv_nchw")
        new_shape = make_const(unique_name(names, reshape_name + "/opencv_nchw_shape"), np.array([n, c, h, w], np.int32))
        order = make_const(unique_name(names, reshape_name + "/opencv_to_nhwc"), np.array([0, 2, 3, 1], np.int32))
        added += [new_shape, order]
        transpose = out.node.add()
        transpose.CopyFrom(reshape)
        transpose.op = "Transpose"
        transpose.ClearField("attr")
        transpose.attr["T"].CopyFrom(reshape.attr["T"])
        transpose.attr["Tperm"].type = tf.int32.as_datatype_enum
        transpose.input[:] = [inner, order.name]
        reshape.name = inner
        reshape.input[1] = new_shape.name
        reshape.attr["Tshape"].type = tf.int32.as_datatype_enum
    for node in added:
        proto = node.attr["value"].tensor
        if not proto.tensor_content and proto.tensor_shape.dim:  # OpenCV reads arrays from tensor_content
            value = tf.make_ndarray(proto)
            proto.ClearField("float_val")
            proto.ClearField("int_val")
            proto.tensor_content = value.tobytes()
    out.node.extend(added)
    return out
