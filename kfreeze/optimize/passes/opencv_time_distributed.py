"""``opencv: true``: ``TimeDistributed(Conv2D)`` becomes one ``Conv3D`` with a kernel one step deep.

With a fixed number of steps Keras' TimeDistributed is unrolled: ``Transpose`` the time axis
first, ``StridedSlice`` out each step (``shrink_axis_mask``), the same ``Conv2D`` (+ bias,
activation) on each, ``Pack`` them and ``Transpose`` back. OpenCV's importer reads
``StridedSlice`` as a plain slice over every axis and ``Pack`` only on axis 0, and keeps a 5-D
input NCDHW, so ``opencv_refuse`` refused it. The same numbers are a ``Conv3D`` over
``[N, T, H, W, C]`` whose kernel is the Conv2D's with a depth of one (strides ``[1, 1, sh, sw, 1]``),
which OpenCV imports (``parseConvolution`` reads Conv3D and folds the BiasAdd after it).
"""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import const_values, consumers, copy, make_const, prune, unique_name
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2

ACTIVATIONS = {"Relu", "Relu6", "Elu", "Selu", "Tanh", "Sigmoid", "LeakyRelu", "Softplus"}
SWAP = [1, 0, 2, 3, 4]


def _perm(by_name, consts, node) -> list[int] | None:
    src = split_tensor(node.input[1])[0] if node.op == "Transpose" and len(node.input) == 2 else None
    if src is None or src not in consts or by_name[src].op != "Const":
        return None
    return [int(v) for v in np.asarray(consts[src]).reshape(-1)]


def _step(by_name, consts, tensor):
    """One step's chain, output to input: ``(slice, conv, bias or None, [activations], index)`` or None."""
    acts = []
    node = by_name.get(split_tensor(tensor)[0])
    while node is not None and node.op in ACTIVATIONS and len(node.input) == 1:
        acts.append(node)
        node = by_name.get(split_tensor(node.input[0])[0])
    bias = None
    if node is not None and node.op == "BiasAdd":
        bias = node
        node = by_name.get(split_tensor(node.input[0])[0])
    if node is None or node.op != "Conv2D" or node.attr["data_format"].s not in (b"", b"NHWC"):
        return None
    if node.attr["padding"].s not in (b"SAME", b"VALID") or any(d != 1 for d in node.attr["dilations"].list.i):
        return None
    sl = by_name.get(split_tensor(node.input[0])[0])
    if sl is None or sl.op != "StridedSlice" or sl.attr["shrink_axis_mask"].i != 1:
        return None
    if any(sl.attr[m].i for m in ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask")):
        return None
    begin, end, stride = (split_tensor(i)[0] for i in sl.input[1:4])
    if any(c not in consts for c in (begin, end, stride)):
        return None
    b, e, s = (np.asarray(consts[c]).reshape(-1).tolist() for c in (begin, end, stride))
    if len(b) != 1 or e != [b[0] + 1] or s != [1]:
        return None
    return sl, node, bias, acts[::-1], int(b[0])


def _equal_consts(consts, by_name, x: str, y: str) -> bool:
    """Inputs ``x`` and ``y`` are one constant, or constants with the same values."""
    x, y = split_tensor(x)[0], split_tensor(y)[0]
    if x == y:
        return True
    if any(n not in consts or by_name[n].op != "Const" for n in (x, y)):
        return False
    a, b = np.asarray(consts[x]), np.asarray(consts[y])
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


def _same(consts, by_name, a, b) -> bool:
    """Two steps' ops compute the same function: same weights, bias, attributes and activations."""
    _, conv_a, bias_a, acts_a, _ = a
    _, conv_b, bias_b, acts_b, _ = b
    if conv_a.attr != conv_b.attr or (bias_a is None) != (bias_b is None) or \
            not _equal_consts(consts, by_name, conv_a.input[1], conv_b.input[1]):
        return False
    if bias_a is not None and not _equal_consts(consts, by_name, bias_a.input[1], bias_b.input[1]):
        return False
    return [(n.op, n.attr) for n in acts_a] == [(n.op, n.attr) for n in acts_b] and a[0].input[0] == b[0].input[0]


def opencv_time_distributed(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``Transpose(Pack([act(BiasAdd(Conv2D(StridedSlice(Transpose(x, [1,0,2,3,4]), t))))]), [1,0,2,3,4])``
    over t = 0..T-1 with one set of weights becomes ``act(BiasAdd(Conv3D(x, W[None])))``, the last op
    taking the outer Transpose's name."""
    by_name = {n.name: n for n in graph.node}
    consts = const_values(graph)
    users = consumers(graph)
    todo = []
    for out_t in graph.node:
        if _perm(by_name, consts, out_t) != SWAP:
            continue
        pack = by_name.get(split_tensor(out_t.input[0])[0])
        if pack is None or pack.op != "Pack" or pack.attr["axis"].i != 0 or len(users.get(pack.name, [])) != 1:
            continue
        steps = [_step(by_name, consts, i) for i in pack.input]
        if not steps or any(s is None for s in steps) or [s[4] for s in steps] != list(range(len(steps))):
            continue
        if not all(_same(consts, by_name, steps[0], s) for s in steps[1:]):
            continue
        in_t = by_name.get(split_tensor(steps[0][0].input[0])[0])
        if in_t is None or _perm(by_name, consts, in_t) != SWAP:
            continue
        weights = split_tensor(steps[0][1].input[1])[0]
        if weights not in consts or by_name[weights].op != "Const":
            continue
        todo.append((out_t.name, in_t.input[0], steps[0]))
    if not todo:
        return graph
    out = copy(graph)
    names = {n.name for n in out.node}
    nodes = {n.name: n for n in out.node}
    for name, x, (_, conv, bias, acts, _) in todo:
        kernel = tf.make_ndarray(nodes[split_tensor(conv.input[1])[0]].attr["value"].tensor)[None]
        w = make_const(unique_name(names, f"{name}/opencv_conv3d_kernel"), kernel)
        w.attr["value"].tensor.tensor_content = kernel.astype(np.float32).tobytes()
        w.attr["value"].tensor.ClearField("float_val")
        conv3d = node_def_pb2.NodeDef(name=unique_name(names, f"{name}/opencv_conv3d"), op="Conv3D", input=[x, w.name])
        conv3d.attr["T"].CopyFrom(conv.attr["T"])
        sh, sw = conv.attr["strides"].list.i[1], conv.attr["strides"].list.i[2]
        conv3d.attr["strides"].list.i.extend([1, 1, sh, sw, 1])
        conv3d.attr["dilations"].list.i.extend([1, 1, 1, 1, 1])
        conv3d.attr["padding"].s = conv.attr["padding"].s
        conv3d.attr["data_format"].s = b"NDHWC"
        chain = [conv3d]
        if bias is not None:
            b = node_def_pb2.NodeDef()
            b.CopyFrom(bias)
            b.name = unique_name(names, f"{name}/opencv_bias")
            b.attr["data_format"].s = b"NHWC"  # over the last axis, as the 4-D one
            chain.append(b)
        for act in acts:
            a = node_def_pb2.NodeDef()
            a.CopyFrom(act)
            a.name = unique_name(names, f"{name}/opencv_{act.op.lower()}")
            chain.append(a)
        for prev, node in zip(chain, chain[1:]):
            node.input[0] = prev.name
        last = chain[-1]
        target = nodes[name]
        target.CopyFrom(last)
        target.name = name
        out.node.extend([w, *chain[:-1]])
    return prune(out, ctx)
