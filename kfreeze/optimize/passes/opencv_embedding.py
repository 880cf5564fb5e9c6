"""``opencv: true``: an Embedding lookup as arithmetic OpenCV's importer reads, its ids fed as floats.

Keras' Embedding is ``GatherV2(table [V, D], ids, axis=0)`` (Keras 3 first wraps negative ids:
``SelectV2(ids < 0, ids + V, ids)``). OpenCV's importer has no GatherV2, no Cast and feeds only
float blobs, so ``opencv_refuse`` refused every text model. No TF or OpenCV tool rewrites a gather;
for integer ids ``[1, N]`` the same numbers are, on ``rows = Transpose(ids)`` (``[N, 1]``),

    d   = rows @ ones[1, V] + (o - arange(V))      (id + o - v; o = 0, and V for the wrap)
    hot = Relu(d * d * -1 + 1)                     (1 where id + o == v, else 0)
    y   = Reshape(hot @ table, [1, N, D])

(``hot`` the sum of the two one-hots when Keras wraps, which are never both 1). ``d`` is an integer
below 2^24, exact in float32; ``d * d`` is 0 or at least 1, even rounded, so ``hot`` is exactly 0/1
and the MatMul picks a row exactly. Each op is one OpenCV imports as TF runs it (an InnerProduct with
its bias, an Eltwise product, a Power layer's scale and shift, ReLU). The ids' placeholder becomes
float32 (integer values; its Casts and the wrap gone), when the lookups are all it feeds. The one-hot
is capped at ``MAX_ONE_HOT`` elements; a larger lookup stays a GatherV2, which ``opencv_refuse`` refuses.
"""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import const_values, consumers, copy, make_const, prune, shape_of, static_shapes, \
    unique_name
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2

F32 = tf.float32.as_datatype_enum
INTS = {tf.int32.as_datatype_enum, tf.int64.as_datatype_enum}
MAX_ONE_HOT = 16 * 2**20  # elements of the [N, V] one-hot (64 MB of float32 in OpenCV)
_THROUGH = {"Cast", "Identity"}


def _wrap_source(by_name, consts, tensor, rows):
    """``(x, the wrap's node names)`` when ``tensor`` is Keras 3's ``SelectV2(Less(x, 0), Add(x, rows), x)``,
    else None."""
    select = by_name.get(split_tensor(tensor)[0])
    if select is None or select.op not in ("SelectV2", "Select") or len(select.input) != 3:
        return None
    less, add = by_name.get(split_tensor(select.input[0])[0]), by_name.get(split_tensor(select.input[1])[0])
    x = split_tensor(select.input[2])
    if less is None or add is None or less.op != "Less" or add.op not in ("Add", "AddV2"):
        return None

    def scalar(t, value):
        v = consts.get(split_tensor(t)[0])
        return v is not None and np.asarray(v).size == 1 and int(np.asarray(v).reshape(-1)[0]) == value

    if split_tensor(less.input[0]) != x or not scalar(less.input[1], 0):
        return None
    if not ((split_tensor(add.input[0]) == x and scalar(add.input[1], rows))
            or (split_tensor(add.input[1]) == x and scalar(add.input[0], rows))):
        return None
    return select.input[2], [select.name, less.name, add.name]


def _match(by_name, consts, gather):
    """``(placeholder, chain nodes, wrap, table name)`` for a GatherV2 of a float32 [V, D] constant on axis 0
    whose ids come (through Casts and Keras' wrap) from a Placeholder, else None."""
    if gather.op != "GatherV2" or len(gather.input) != 3 or gather.attr["batch_dims"].i != 0:
        return None
    table = by_name.get(split_tensor(gather.input[0])[0])
    if table is None or table.op != "Const" or table.attr["dtype"].type != F32:
        return None
    axis = consts.get(split_tensor(gather.input[2])[0])
    dims = table.attr["value"].tensor.tensor_shape.dim
    if axis is None or np.asarray(axis).size != 1 or int(np.asarray(axis).reshape(-1)[0]) != 0 or len(dims) != 2:
        return None
    rows = int(dims[0].size)
    tensor, chain, wrap = gather.input[1], [], False
    while True:
        node = by_name.get(split_tensor(tensor)[0])
        if node is None:
            return None
        if node.op == "Placeholder":
            break
        found = None if wrap else _wrap_source(by_name, consts, tensor, rows)
        if found is not None:
            tensor, wrap = found[0], True
            chain.extend(found[1])
        elif node.op in _THROUGH and split_tensor(tensor)[1] == 0:
            chain.append(node.name)
            tensor = node.input[0]
        else:
            return None
    if split_tensor(tensor)[1] != 0 or node.attr["dtype"].type not in INTS | {F32}:
        return None
    return node.name, chain, wrap, table.name


def opencv_embedding(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Each ``GatherV2(const [V, D], ids, axis=0)`` whose ids are a model input of static shape
    ``[1, N]`` that feeds only such lookups, with ``N * V`` (twice that with the wrap) at most
    ``MAX_ONE_HOT``, becomes the one-hot MatMul above under the gather's name; the input becomes float32.

    ``PASSES`` runs it only with ``Context(opencv=True)``.
    """
    by_name = {n.name: n for n in graph.node}
    consts = const_values(graph)
    found = {}
    for node in graph.node:
        m = _match(by_name, consts, node)
        if m is not None:
            found[node.name] = m
    if not found:
        return graph
    shapes = static_shapes(graph)
    users = consumers(graph)
    todo = {}
    for placeholder in sorted({m[0] for m in found.values()}):
        gathers = {g for g, m in found.items() if m[0] == placeholder}
        chain = {c for g in gathers for c in found[g][1]}
        # every reader of the placeholder and of the chain is the chain or a gather (as its ids)
        if any(u.name not in chain | gathers or (u.name in gathers and i != 1)
               for n in chain | {placeholder} for u, i in users.get(n, [])):
            continue
        if placeholder not in ctx.input_nodes:
            continue
        ok = []
        for g in sorted(gathers):
            ids_shape = shape_of(shapes, f"{placeholder}:0")
            table = by_name[found[g][3]].attr["value"].tensor.tensor_shape.dim
            v, d = int(table[0].size), int(table[1].size)
            if not ids_shape or len(ids_shape) != 2 or ids_shape[0] != 1 or None in ids_shape or v <= 0:
                break
            if int(np.prod(ids_shape)) * v * (2 if found[g][2] else 1) > MAX_ONE_HOT:
                break
            ok.append((g, [int(s) for s in ids_shape], v, d))
        else:
            todo[placeholder] = ok
    if not todo:
        return graph
    out = copy(graph)
    names = {n.name for n in out.node}
    nodes = {n.name: n for n in out.node}
    for placeholder, lookups in todo.items():
        nodes[placeholder].attr["dtype"].type = F32
        for name, ids_shape, v, d in lookups:
            wrap, table = found[name][2], found[name][3]

            def const(tag, value):
                node = make_const(unique_name(names, f"{name}/opencv_{tag}"), value)
                out.node.append(node)
                return node.name

            def op(tag, kind, *inputs):
                node = node_def_pb2.NodeDef(name=unique_name(names, f"{name}/opencv_{tag}"), op=kind,
                                            input=list(inputs))
                node.attr["T"].type = F32
                if kind in ("Reshape", "Transpose"):
                    node.attr["Tshape" if kind == "Reshape" else "Tperm"].type = tf.int32.as_datatype_enum
                if kind == "MatMul":
                    node.attr["transpose_a"].b = node.attr["transpose_b"].b = False
                if kind == "BiasAdd":
                    node.attr["data_format"].s = b"NHWC"
                if kind == "AddN":
                    node.attr["N"].i = len(inputs)
                out.node.append(node)
                return node.name

            # [1, N] -> [N, 1]: a 2-D Transpose is a plain Permute in OpenCV; a Reshape of an input that a
            # conv below marks NHWC gets a 4-D permute first, which fails on 2-D
            rows = op("ids", "Transpose", placeholder, const("ids_perm", np.array([1, 0], np.int32)))
            ones = const("ones", np.ones([1, v], np.float32))
            hots = []
            for offset in ([0, v] if wrap else [0]):
                tag = "" if offset == 0 else "_wrapped"
                # a MatMul each: OpenCV folds the one BiasAdd after a MatMul into it, and cannot run a second
                diff = op(f"diff{tag}", "BiasAdd", op(f"spread{tag}", "MatMul", rows, ones),
                          const(f"offsets{tag}", (offset - np.arange(v)).astype(np.float32)))
                square = op(f"square{tag}", "Mul", diff, diff)
                negated = op(f"negated{tag}", "Mul", square, const("minus_one", np.float32(-1)))
                hots.append(op(f"one_hot{tag}", "Relu", op(f"near{tag}", "Add", negated,
                                                               const("one", np.float32(1)))))
            # AddN: OpenCV cannot run an Add of these two 2-D tensors (an Eltwise it reads as NHWC)
            hot = hots[0] if len(hots) == 1 else op("one_hot_sum", "AddN", *hots)
            picked = op("rows", "MatMul", hot, table)
            target = nodes[name]
            target.Clear()
            target.name, target.op = name, "Reshape"
            target.input.extend([picked, const("shape", np.array([*ids_shape, d], np.int32))])
            target.attr["T"].type = F32
            target.attr["Tshape"].type = tf.int32.as_datatype_enum
    return prune(out, ctx)
