"""Inference FusedBatchNorm{,V2,V3} becomes Mul + BiasAdd, for fold_affine to fold."""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import const_values, copy, make_const, nhwc, to_bias_add
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2


_FUSED_BN = {"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"}


def batch_norm_to_affine(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """An inference FusedBatchNorm{,V2,V3} with constant statistics becomes Mul + BiasAdd.

    TransformGraph only folds FusedBatchNorm V1, and only straight after a conv;
    TF1 code since 1.14 emits V3, often after a BiasAdd. As a per-channel affine
    ``y = x * s + (offset - mean * s)``, ``s = scale / sqrt(var + eps)``, it is
    then folded into the conv or matmul by ``fold_affine``. Training-mode
    batch norms and those whose batch statistics are read are left alone.
    """
    out = copy(graph)
    consts = const_values(out)
    read_stats = {split_tensor(i)[0] for n in out.node for i in n.input
                  if not i.startswith("^") and split_tensor(i)[1] > 0}
    new_nodes = []
    for node in out.node:
        if node.op not in _FUSED_BN or node.attr["is_training"].b or node.name in read_stats:
            continue
        if not nhwc(node):
            continue
        params_ = [consts.get(split_tensor(i)[0]) for i in node.input[1:5]]
        if any(p is None for p in params_):
            continue
        scale, offset, mean, var = (np.asarray(p, np.float64) for p in params_)
        factor = scale / np.sqrt(var + node.attr["epsilon"].f)
        dtype = tf.as_dtype(node.attr["T"].type).as_numpy_dtype
        s_const = make_const(f"{node.name}/scale", factor.astype(dtype))
        b_const = make_const(f"{node.name}/shift", (offset - mean * factor).astype(dtype))
        mul = node_def_pb2.NodeDef(name=f"{node.name}/mul", op="Mul", input=[node.input[0], s_const.name])
        mul.attr["T"].type = node.attr["T"].type
        new_nodes += [s_const, b_const, mul]
        to_bias_add(node, mul.name, b_const.name, dtype)
    out.node.extend(new_nodes)
    return out
