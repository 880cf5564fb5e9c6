"""``opencv: true``: LayerNormalization, RMSNormalization and UnitNormalization over the last axis
as 2-D MatMul arithmetic OpenCV's importer reads.

Keras writes them with ``Mean``/``Sum`` over the last axis of a 2-D or 3-D tensor, ``Rsqrt``,
``SquaredDifference``, ``Neg`` and broadcasts of ``[..., 1]`` statistics. OpenCV's importer reads
a reduction only on a 4-D NHWC tensor (``parseMean``; a 3-D one hits ``permute_layer.cpp:
_numAxes``) and has no ``Rsqrt``. On ``X = Reshape(x, [rows, C])`` the same numbers are

    d = X - X @ (1/C)                    (LayerNorm; X itself for RMS and unit norm)
    v = (d * d) @ (1/C) + eps            (a MatMul with its bias, which OpenCV folds; 1 for unit norm)
    y = d / Sqrt(v) * gamma + beta       (Eltwise div, Scale and Shift over C)

and ``Reshape(y, x's shape)``: every op a layer OpenCV has, with every statistic broadcast over C
by the MatMul instead of by shape. The subgraph is found as the normalization ops between one
tensor and the node that ends them; its gamma, beta and epsilon are read off by running it in
TF on probes, and it is only replaced when a last probe gives the same numbers (1e-5 relative).
TF's tools have no notion of either form being better.
"""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import (const_values, consumers, copy, make_const, prune, region_runner, shape_of,
                                    static_shapes, subgraph_region, unique_name)
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2

NORM_OPS = ("Mean", "Sum", "Neg", "SquaredDifference", "Sub", "Add", "AddV2", "AddN", "Mul", "Rsqrt", "Square",
            "Minimum", "Maximum", "ClipByValue", "RealDiv", "Sqrt")
BIG = np.float32(np.finfo(np.float32).max)




def _stats(x, kind, eps, groups=1):
    if kind == "group":
        n, h, w, c = x.shape
        g = x.reshape(n, h, w, groups, c // groups)
        d = g - g.mean((1, 2, 4), keepdims=True)
        return (d / np.sqrt((d * d).mean((1, 2, 4), keepdims=True) + eps)).reshape(x.shape)
    if kind == "layer":
        d = x - x.mean(-1, keepdims=True)
        return d / np.sqrt((d * d).mean(-1, keepdims=True) + eps)
    if kind == "rms":
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps)
    return x / np.maximum(np.sqrt((x * x).sum(-1, keepdims=True)), eps)


def _fit(run, shape, eps_candidates, kinds=("layer", "rms", "unit"), groups=1):
    """(kind, eps, gamma, beta) with run(x) == _stats(x, kind, eps) * gamma + beta on probes, or None."""
    rng = np.random.default_rng(0)
    probes = [rng.normal(0, 1.5, shape).astype(np.float32) for _ in range(4)]
    outs = [np.asarray(run(p), np.float64) for p in probes]
    if outs[0].shape != tuple(shape):
        return None
    c = shape[-1]
    for kind in kinds:
        for eps in eps_candidates:
            zs = [_stats(p.astype(np.float64), kind, eps, groups).reshape(-1, c) for p in probes]
            ys = [o.reshape(-1, c) for o in outs]
            z, y = np.concatenate(zs[:3]), np.concatenate(ys[:3])
            gamma, beta = np.empty(c), np.empty(c)
            for k in range(c):
                a = np.stack([z[:, k], np.ones(len(z))], 1)
                (gamma[k], beta[k]), *_ = np.linalg.lstsq(a, y[:, k], rcond=None)
            if kind == "unit" and (np.any(np.abs(beta) > 1e-6) or np.any(np.abs(gamma - 1) > 1e-5)):
                continue
            pred = zs[3] * gamma + beta
            scale = float(np.max(np.abs(ys[3]))) or 1.0
            if float(np.max(np.abs(pred - ys[3]))) / scale <= 1e-5:
                return kind, eps, gamma.astype(np.float32), beta.astype(np.float32)
    return None


def opencv_norm(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Each maximal subgraph of normalization ops over the last axis of one float32 2-D or 3-D
    tensor (a reduction and an Rsqrt in it) that probes show to be a layer, RMS or unit
    normalization becomes the MatMul form above, under the name of the node that ended it."""
    by_name = {n.name: n for n in graph.node}
    users = consumers(graph)
    keep = set(ctx.output_nodes)
    consts = const_values(graph)
    shapes = None
    found = []
    taken: set[str] = set()
    for node in reversed(graph.node):  # the later node first: a subgraph's end before its inside
        if (node.op not in NORM_OPS and node.op != "Reshape") or node.name in taken or node.attr["T"].type != tf.float32.as_datatype_enum:
            continue
        if node.name not in keep and all(u.op in NORM_OPS for u, _ in users.get(node.name, [])):
            continue  # not where the normalization ends
        if node.op == "Reshape":
            group = _group_norm(graph, by_name, consts, node)
            if group is not None:
                found.append(group)
                taken.update(group[4])
            continue
        region = subgraph_region(by_name, node, NORM_OPS)
        if region is None or len(region[2]) != 1:
            continue
        ops = {n.op for n in region[0]}
        if not ops & {"Mean", "Sum"} or "Rsqrt" not in ops:
            continue
        if shapes is None:
            shapes = static_shapes(graph)
        (x_tensor,) = region[2]
        xs, ys = shape_of(shapes, x_tensor), shape_of(shapes, node.name)
        if not xs or xs != ys or None in xs or len(xs) not in (2, 3):
            continue
        eps = sorted({float(np.asarray(consts[c]).reshape(-1)[0]) for c in region[1]
                      if np.asarray(consts[c]).size == 1 and 0 < float(np.asarray(consts[c]).reshape(-1)[0]) < 0.1})
        unit_floor = [1.0 / float(np.asarray(consts[c]).reshape(-1)[0]) for c in region[1]
                      if np.asarray(consts[c]).size == 1 and float(np.asarray(consts[c]).reshape(-1)[0]) > 1e6]
        run, sess = region_runner(graph, region[0], region[1], x_tensor, node.name)
        try:
            fit = _fit(run, xs, eps + unit_floor or [0.0])
        finally:
            sess.close()
        if fit is not None:
            found.append((node.name, x_tensor, xs, fit, {n.name for n in region[0]}))
            taken.update(n.name for n in region[0])
    if not found:
        return graph
    out = copy(graph)
    names = {n.name for n in out.node}
    by_name = {n.name: n for n in out.node}
    for name, x_tensor, xs, (kind, eps, gamma, beta, *groups), _ in found:
        if kind == "group":
            _rewrite_group(out, by_name[name], names, x_tensor, xs, eps, gamma, beta, groups[0])
        else:
            _rewrite(out, by_name[name], names, x_tensor, xs, kind, eps, gamma, beta)
    return prune(out, ctx)


def _group_norm(graph, by_name, consts, end):
    """GroupNormalization as Keras writes it: ``Reshape(x[N,H,W,C] -> [N,H,W,G,C/G])``, normalization
    ops over axes (1, 2, 4), ``Reshape`` back: (end, x, shape, fit, nodes) when probes confirm it."""
    inner = by_name.get(split_tensor(end.input[0])[0])
    if inner is None or inner.op not in NORM_OPS or inner.attr["T"].type != tf.float32.as_datatype_enum:
        return None
    region = subgraph_region(by_name, inner, NORM_OPS)
    if region is None or len(region[2]) != 1:
        return None
    (edge,) = region[2]
    split = by_name.get(split_tensor(edge)[0])
    if split is None or split.op != "Reshape" or "Rsqrt" not in {n.op for n in region[0]}:
        return None
    shapes = static_shapes(graph)
    xs, ys, gs = shape_of(shapes, split.input[0]), shape_of(shapes, end.name), shape_of(shapes, split.name)
    if not xs or xs != ys or None in xs or len(xs) != 4 or not gs or len(gs) != 5 or gs[-2] * gs[-1] != xs[-1]:
        return None
    nodes = [split, *region[0], end]
    shape_consts = {split_tensor(n.input[1])[0] for n in (split, end)}
    if not all(c in consts for c in shape_consts):
        return None
    x_tensor = split.input[0] if ":" in split.input[0] else split.input[0] + ":0"
    eps = sorted({float(np.asarray(consts[c]).reshape(-1)[0]) for c in region[1]
                  if np.asarray(consts[c]).size == 1 and 0 < float(np.asarray(consts[c]).reshape(-1)[0]) < 0.1})
    run, sess = region_runner(graph, nodes, region[1] | shape_consts, x_tensor, end.name)
    try:
        fit = _fit(run, xs, eps or [0.0], kinds=("group",), groups=int(gs[-2]))
    finally:
        sess.close()
    if fit is None:
        return None
    return end.name, x_tensor, xs, (*fit, int(gs[-2])), {n.name for n in nodes}


def _rewrite_group(out, end, names, x_tensor, xs, eps, gamma, beta, groups):
    """``d = x - conv1x1(GAP(x), G)``, ``v = conv1x1(GAP(d*d), G) + eps``, ``d / Sqrt(v) * gamma + beta``:
    G averages each group's channels, the 4-D broadcasts OpenCV's Eltwise layers take."""
    c = xs[-1]
    per = c // groups
    gmat = np.kron(np.eye(groups), np.full((per, per), 1.0 / per)).astype(np.float32).reshape(1, 1, c, c)
    n = end.name
    src = x_tensor[:-2] if x_tensor.endswith(":0") else x_tensor
    kernel = _const(out, names, f"{n}/opencv_group_w", gmat)
    axes = _const(out, names, f"{n}/opencv_spatial", np.asarray([1, 2], np.int32))

    def group_mean(t, base):
        mean = _node(out, names, f"{n}/{base}_gap", "Mean", [t, axes], keep_dims=True, Tidx=tf.int32.as_datatype_enum)
        conv = out.node.add(name=unique_name(names, f"{n}/{base}"), op="Conv2D", input=[mean, kernel])
        conv.attr["T"].type = tf.float32.as_datatype_enum
        conv.attr["strides"].list.i[:] = [1, 1, 1, 1]
        conv.attr["padding"].s = b"VALID"
        conv.attr["data_format"].s = b"NHWC"
        conv.attr["dilations"].list.i[:] = [1, 1, 1, 1]
        return conv.name

    d = _node(out, names, f"{n}/opencv_centered", "Sub", [src, group_mean(src, "opencv_group_mean")])
    sq = _node(out, names, f"{n}/opencv_square", "Mul", [d, d])
    v = out.node.add(name=unique_name(names, f"{n}/opencv_var_eps"), op="BiasAdd",
                     input=[group_mean(sq, "opencv_group_var"), _const(out, names, f"{n}/opencv_eps",
                                                                       np.full(c, eps, np.float32))])
    v.attr["T"].type = tf.float32.as_datatype_enum
    v.attr["data_format"].s = b"NHWC"
    s = _node(out, names, f"{n}/opencv_std", "Sqrt", [v.name])
    y = _node(out, names, f"{n}/opencv_normed", "RealDiv", [d, s])
    y = _node(out, names, f"{n}/opencv_gamma_mul", "Mul", [y, _const(out, names, f"{n}/opencv_gamma", gamma)])
    end.op = "Add"
    end.ClearField("attr")
    end.attr["T"].type = tf.float32.as_datatype_enum
    end.input[:] = [y, _const(out, names, f"{n}/opencv_beta", beta)]


def _node(out, names, base, op, inputs, **attrs):
    n = out.node.add(name=unique_name(names, base), op=op, input=inputs)
    n.attr["T"].type = tf.float32.as_datatype_enum
    for k, v in attrs.items():
        if isinstance(v, bool):
            n.attr[k].b = v
        else:
            n.attr[k].type = v
    return n.name


def _const(out, names, base, value):
    c = make_const(unique_name(names, base), value)
    out.node.append(c)
    return c.name


def _rewrite(out, end, names, x_tensor, xs, kind, eps, gamma, beta):
    c = xs[-1]
    rows = int(np.prod(xs[:-1]))
    src = x_tensor[:-2] if x_tensor.endswith(":0") else x_tensor
    i32 = tf.int32.as_datatype_enum
    n = end.name
    if len(xs) == 3:
        src = _node(out, names, f"{n}/opencv_rows", "Reshape",
                    [src, _const(out, names, f"{n}/opencv_rows_shape", np.asarray([rows, c], np.int32))], Tshape=i32)
    mat = np.full((c, c), 1.0 if kind == "unit" else 1.0 / c, np.float32)
    mean_w = _const(out, names, f"{n}/opencv_mean_w", mat)
    d = src
    if kind == "layer":
        mean = _node(out, names, f"{n}/opencv_mean", "MatMul", [src, mean_w], transpose_a=False, transpose_b=False)
        d = _node(out, names, f"{n}/opencv_centered", "Sub", [src, mean])
    sq = _node(out, names, f"{n}/opencv_square", "Mul", [d, d])
    v = _node(out, names, f"{n}/opencv_var", "MatMul", [sq, mean_w], transpose_a=False, transpose_b=False)
    if kind != "unit":
        v = _node(out, names, f"{n}/opencv_var_eps", "Add",
                  [v, _const(out, names, f"{n}/opencv_eps", np.full(c, eps, np.float32))])
    s = _node(out, names, f"{n}/opencv_std", "Sqrt", [v])
    if kind == "unit":
        s = _node(out, names, f"{n}/opencv_floor", "ClipByValue",
                  [s, _const(out, names, f"{n}/opencv_floor_lo", np.float32(eps)),
                   _const(out, names, f"{n}/opencv_floor_hi", BIG)])
    y = _node(out, names, f"{n}/opencv_normed", "RealDiv", [d, s])
    if kind != "unit":
        y = _node(out, names, f"{n}/opencv_gamma_mul", "Mul", [y, _const(out, names, f"{n}/opencv_gamma", gamma)])
        y = _node(out, names, f"{n}/opencv_beta_add", "Add", [y, _const(out, names, f"{n}/opencv_beta", beta)])
    end.ClearField("attr")
    end.attr["T"].type = tf.float32.as_datatype_enum
    if len(xs) == 3:
        end.op = "Reshape"
        end.attr["Tshape"].type = i32
        end.input[:] = [y, _const(out, names, f"{n}/opencv_back_shape", np.asarray(xs, np.int32))]
    else:
        end.op = "Identity"
        end.input[:] = [y]
