"""A per-channel Mul before a conv or matmul folds into its input channels."""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import const_values, copy, make_const, nhwc, prune, rewire, shape_of, single_data_user, static_shapes, unique_name, consumers
from tensorflow.core.framework import graph_pb2


def fold_input_scale(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Fold a per-channel ``Mul`` by a constant into the input channels of the conv or
    matmul it feeds, possibly through channel-wise ops that commute with a scale.

        Mul(x, s) -> [Relu | MaxPool (s > 0)] [AvgPool | Mean over H, W]* -> Conv2D/Depthwise/MatMul(W)
        ==> x -> ... -> Conv2D(W * s over the input-channel axis)

    Relu and MaxPool commute with a positive scale only; average pooling and a
    spatial Mean with any scale. Zero padding stays zero under scaling, so every
    conv padding is exact. Each node on the way must have that one consumer.

    ``PASSES`` skips it in opencv mode: OpenCV 4.14 cannot propagate its layout
    through ``ConcatV2 -> Relu`` once the Mul between them is gone (DenseNet121).
    """
    out = copy(graph)
    keep = set(ctx.output_nodes)
    consts = const_values(out)
    users = consumers(out)
    shapes = None
    names = {n.name for n in out.node}
    new_consts = []
    changed = False
    for node in list(out.node):
        if node.op != "Mul" or len(node.input) != 2 or any(i.startswith("^") for i in node.input):
            continue
        a, b = node.input
        if split_tensor(b)[0] not in consts and split_tensor(a)[0] in consts:
            a, b = b, a
        if split_tensor(b)[0] not in consts or split_tensor(a)[0] in consts:
            continue
        scale = np.asarray(consts[split_tensor(b)[0]])
        if not np.issubdtype(scale.dtype, np.floating) or (scale.ndim > 1 and any(d != 1 for d in scale.shape[:-1])):
            continue
        # walk to the linear op
        cur, positive = node, bool(np.all(scale > 0))
        target = None
        while True:
            found = single_data_user(users, cur.name, keep)
            if found is None:
                break
            nxt, idx = found
            if nxt.op in ("Relu", "MaxPool") and positive and nhwc(nxt):
                cur = nxt
                continue
            if nxt.op == "AvgPool" and nhwc(nxt):
                cur = nxt
                continue
            if nxt.op == "Mean" and idx == 0 and split_tensor(nxt.input[1])[0] in consts:
                if shapes is None:
                    shapes = static_shapes(out)
                rank = len(shape_of(shapes, nxt.input[0]) or []) or None
                axes = np.asarray(consts[split_tensor(nxt.input[1])[0]]).reshape(-1)
                if rank and all(0 < (int(x) % rank) < rank - 1 for x in axes):
                    cur = nxt
                    continue
                break
            if nxt.op in ("Conv2D", "DepthwiseConv2dNative", "MatMul") and idx == 0 \
                    and split_tensor(nxt.input[1])[0] in consts:
                target = nxt
            break
        if target is None:
            continue
        weights = np.asarray(consts[split_tensor(target.input[1])[0]])
        if weights.dtype != scale.dtype:
            continue
        if target.op == "MatMul":
            if target.attr["transpose_a"].b:
                continue
            in_axis = 1 if target.attr["transpose_b"].b else 0
        else:
            if not nhwc(target):
                continue
            in_axis = 2
        channels = weights.shape[in_axis]
        vec = scale.reshape(-1)
        if vec.size == 1:
            vec = np.full([channels], vec[0], dtype=vec.dtype)
        if vec.size != channels:
            continue
        # The Mul must not broadcast x up to more channels or a bigger shape.
        if shapes is None:
            shapes = static_shapes(out)
        x_shape, y_shape = shape_of(shapes, a), shape_of(shapes, node.name)
        if x_shape is None or x_shape != y_shape or None in x_shape[1:]:
            continue
        bshape = [1] * weights.ndim
        bshape[in_axis] = channels
        wname = unique_name(names, f"{target.name}/input_scaled_weights")
        new_consts.append(make_const(wname, (weights * vec.reshape(bshape)).astype(weights.dtype)))
        consts[wname] = np.asarray(weights * vec.reshape(bshape))  # a Const for later candidates
        target.input[1] = wname
        rewire(out, node.name, a, users)
        users[split_tensor(a)[0]] = users.get(split_tensor(a)[0], []) + users.pop(node.name, [])
        changed = True
    if not changed:
        return graph
    out.node.extend(new_consts)
    return prune(out, ctx)
