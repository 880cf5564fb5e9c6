"""Per-channel Mul and Add after a conv or matmul fold into its weights and bias."""

from __future__ import annotations

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import (channel_vector, const_values, consumers, copy, make_const, nhwc,
                                    out_channels, prune, to_bias_add, unique_name)
from tensorflow.core.framework import graph_pb2, node_def_pb2


_LINEAR = {"Conv2D", "MatMul", "DepthwiseConv2dNative", "Conv3D"}
_ADD = {"Add", "AddV2", "BiasAdd"}


def _scale_weights(node: node_def_pb2.NodeDef, weights, scale):
    if node.op == "MatMul" and node.attr["transpose_b"].b:
        return weights * scale[:, None]
    if node.op == "DepthwiseConv2dNative":
        return weights * scale.reshape(weights.shape[2], weights.shape[3])
    return weights * scale


def fold_affine(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Fold constant per-channel Mul and Add after a conv or matmul into its weights and bias.

    Keras 3 emits a conv bias as BiasAdd and inference batch norm as Mul + AddV2
    after it; Grappler only folds a Mul that directly follows the conv, so with a
    bias in between the batch norm stays. Rewrites, repeated to a fixed point:
      Mul(Linear(x, W), s)          -> Linear(x, W*s)
      Mul(BiasAdd(y, b), s)         -> BiasAdd(Mul(y, s), b*s)
      Add(BiasAdd(y, b), c)         -> BiasAdd(y, b+c)
      Add(Linear(x, W), c)          -> BiasAdd(Linear(x, W), c)
    each only when the inner node has no other consumer, and for NHWC layouts.
    """
    out = copy(graph)
    keep = set(ctx.output_nodes)
    changed = True
    while changed:
        changed = False
        out = prune(out, ctx)  # dead nodes are no consumers
        consts = const_values(out)  # decoded on use: a sweep touches few weights
        users = {name: len(found) for name, found in consumers(out).items()}
        by_name = {n.name: n for n in out.node}
        names = set(by_name)
        touched: set[str] = set()  # rewritten in this sweep: their neighbours wait for the next one
        for node in list(out.node):
            if node.op not in ({"Mul"} | _ADD) or len(node.input) != 2 or node.input[0].startswith("^"):
                continue
            a, b = (split_tensor(i)[0] for i in node.input)
            if b not in consts and a in consts and node.op != "BiasAdd":
                a, b = b, a
            inner = by_name.get(a)
            if b not in consts or inner is None or users.get(a, 0) != 1 or a in keep or split_tensor(node.input[0])[1]:
                continue
            if node.name in touched or a in touched:
                continue
            if node.op == "BiasAdd" and not nhwc(node):
                continue
            if inner.op in _LINEAR and node.op != "BiasAdd" and split_tensor(inner.input[1])[0] in consts:
                weights = consts[split_tensor(inner.input[1])[0]]
                channels = out_channels(inner, weights)
                vec = channel_vector(consts[b], channels) if channels else None
                if vec is None or vec.dtype != weights.dtype:
                    continue
                if node.op == "Mul":
                    wname = unique_name(names, f"{node.name}/folded_weights")
                    out.node.append(make_const(wname, _scale_weights(inner, weights, vec)))
                    new = node_def_pb2.NodeDef()
                    new.CopyFrom(inner)
                    new.name = node.name
                    new.input[1] = wname
                    node.CopyFrom(new)
                else:
                    bname = unique_name(names, f"{node.name}/folded_bias")
                    out.node.append(make_const(bname, vec))
                    to_bias_add(node, a, bname, weights.dtype)
                changed = True
                touched.update((node.name, a))
                continue
            if inner.op == "BiasAdd" and nhwc(inner) \
                    and split_tensor(inner.input[1])[0] in consts:
                bias = consts[split_tensor(inner.input[1])[0]]
                vec = channel_vector(consts[b], bias.shape[0])
                if vec is None or vec.dtype != bias.dtype:
                    continue
                bname = unique_name(names, f"{node.name}/folded_bias")
                if node.op == "Mul":
                    # Mul(BiasAdd(y, b), s) -> BiasAdd(Mul(y, s), b*s): the Mul then meets the conv.
                    out.node.append(make_const(bname, bias * vec))
                    sname = unique_name(names, f"{node.name}/scale")
                    out.node.append(make_const(sname, vec))
                    mul = node_def_pb2.NodeDef(name=unique_name(names, f"{node.name}/scaled"), op="Mul",
                                               input=[inner.input[0], sname])
                    mul.attr["T"].type = node.attr["T"].type
                    out.node.append(mul)
                    to_bias_add(node, mul.name, bname, bias.dtype)
                else:
                    out.node.append(make_const(bname, bias + vec))
                    to_bias_add(node, inner.input[0], bname, bias.dtype)
                changed = True
                touched.update((node.name, a))
                continue
    return prune(out, ctx)
