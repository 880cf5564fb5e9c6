"""Inverse Transpose pairs around element-wise ops and reductions cancel."""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import const_values, consumers, copy, make_const, prune, rewire, unique_name
from tensorflow.core.framework import graph_pb2

# Element-wise on one tensor: a Transpose commutes with them.
_UNARY = {"Relu", "Relu6", "Elu", "Selu", "LeakyRelu", "Tanh", "Sigmoid", "Exp", "Log", "Neg", "Abs", "Sqrt",
          "Rsqrt", "Square", "Softplus", "Softsign", "Identity", "Floor", "Ceil", "Round", "Sign", "Reciprocal",
          "Sin", "Cos", "Erf", "Cast", "Gelu"}
# Element-wise on two tensors: commute when the other side is a scalar constant.
_BINARY = {"Add", "AddV2", "Sub", "Mul", "RealDiv", "Div", "Maximum", "Minimum", "Pow", "SquaredDifference",
           "BiasAdd"}
_REDUCE = {"Sum", "Mean", "Max", "Min", "Prod"}


def cancel_transposes(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``Transpose(p) -> ops -> Transpose(q)`` with ``p[q]`` the identity becomes ``ops``.

    Graphs converted from NCHW frameworks, or written with explicit layout changes, transpose to
    NCHW, apply element-wise ops or a keep-dims reduction, and transpose back; tf2onnx's optimizer
    cancels such pairs in ONNX, Grappler does not (its layout pass, which would, also writes NCHW
    ops other runtimes cannot load, so kfreeze leaves it off). Between the two Transposes: unary
    element-wise ops, binary ones with a scalar constant, and Sum/Mean/Max/Min/Prod with
    ``keep_dims`` (their axes are mapped through ``p``). Each op on the path must have one consumer.
    The path may also start at a ConcatV2 whose inputs are all Transposes by ``p`` (its axis mapped
    through ``p``); a last Transpose that is an output becomes an Identity of that name.
    """
    out = copy(graph)
    keep = set(ctx.output_nodes)
    consts = const_values(out)
    by_name = {n.name: n for n in out.node}
    users = consumers(out)
    names = set(by_name)
    new_consts, changed = [], False

    def perm_of(node):
        if node.op != "Transpose":
            return None
        value = consts.get(split_tensor(node.input[1])[0])
        return None if value is None else np.asarray(value).reshape(-1).astype(np.int64)

    def only_user(node):
        found = users.get(node.name, [])
        if node.name in keep or len(found) != 1 or found[0][0].input[found[0][1]].startswith("^"):
            return None
        return found[0]

    def walk(current, p):
        """The ops from ``current``'s only reader to an inverse Transpose: (path, that Transpose) or None."""
        path = []
        while True:
            nxt = only_user(current)
            if nxt is None:
                return None
            node, index = nxt
            if node.op == "Transpose" and index == 0:
                q = perm_of(node)
                if q is None or len(q) != len(p) or not np.array_equal(p[q], np.arange(len(p))):
                    return None
                return path, node
            if node.op in _UNARY and index == 0:
                path.append(node)
            elif node.op in _BINARY and len(node.input) == 2:
                other = node.input[1 - index]
                value = consts.get(split_tensor(other)[0])
                if value is None or node.op == "BiasAdd" or np.asarray(value).ndim > len(p):
                    return None
                path.append(node)
            elif node.op in _REDUCE and index == 0 and node.attr["keep_dims"].b \
                    and split_tensor(node.input[1])[0] in consts:
                path.append(node)
            else:
                return None
            current = node

    def finish(last, end: str):
        """``last``'s readers read ``end``; an output Transpose becomes an Identity of it (keeping its name)."""
        if last.name in keep:
            dtype = last.attr["T"].type
            del last.input[:]
            last.input.append(end)
            last.op = "Identity"
            last.ClearField("attr")
            last.attr["T"].type = dtype
        else:
            rewire(out, last.name, end, users)

    def untranspose(path, p, q):
        """The path's constants and reduction axes, for the untransposed layout."""
        for node in path:  # reductions: their axes, in the untransposed layout
            if node.op in _BINARY:  # a constant operand laid out for the transposed tensor: transposed back by q
                k = next(i for i, inp in enumerate(node.input) if split_tensor(inp)[0] in consts)
                value = np.asarray(consts[split_tensor(node.input[k])[0]])
                if value.size != 1:
                    full = value.reshape((1,) * (len(p) - value.ndim) + value.shape)
                    moved = np.ascontiguousarray(np.transpose(full, q))
                    name = unique_name(names, f"{node.name}/untransposed_operand")
                    new_consts.append(make_const(name, moved))
                    consts[name] = moved
                    node.input[k] = name
            if node.op in _REDUCE:
                axes = np.asarray(consts[split_tensor(node.input[1])[0]]).reshape(-1)
                mapped = np.asarray(p)[np.where(axes < 0, axes + len(p), axes)].astype(np.int32)
                name = unique_name(names, f"{node.name}/untransposed_axes")
                new_consts.append(make_const(name, mapped))
                consts[name] = mapped
                node.input[1] = name

    for first in list(out.node):
        p = perm_of(first)
        if p is None:
            continue
        found = walk(first, p)
        if found is None:
            continue
        path, last = found
        untranspose(path, p, perm_of(last))
        # The path now reads the first Transpose's input; the last Transpose's readers read the path.
        head = path[0] if path else None
        src = first.input[0]
        if head is not None:
            for i, inp in enumerate(head.input):
                if split_tensor(inp)[0] == first.name and not inp.startswith("^"):
                    head.input[i] = src
            finish(last, path[-1].name)
        else:
            finish(last, src)
        changed = True
        users = consumers(out)
    # ConcatV2 of Transposes by one perm p, then (through the ops above) the inverse Transpose: the
    # concat of the untransposed inputs, along axis p[axis] (tf2onnx pushes Transposes through Concat).
    for concat in list(out.node):
        if concat.op != "ConcatV2" or concat.name in keep or any(i.startswith("^") for i in concat.input):
            continue
        axis = consts.get(split_tensor(concat.input[-1])[0])
        sources = [by_name.get(split_tensor(i)[0]) for i in concat.input[:-1]]
        perms = [perm_of(t) if t is not None and not split_tensor(i)[1] else None
                 for t, i in zip(sources, concat.input[:-1])]
        if axis is None or np.asarray(axis).size != 1 or any(pp is None for pp in perms) \
                or any(not np.array_equal(pp, perms[0]) for pp in perms):
            continue
        if any(only_user(t) is None or only_user(t)[0].name != concat.name for t in sources):
            continue
        p = perms[0]
        found = walk(concat, p)
        if found is None:
            continue
        path, last = found
        untranspose(path, p, perm_of(last))
        a = int(np.asarray(axis).reshape(()))
        a = int(p[a + len(p) if a < 0 else a])
        name = unique_name(names, f"{concat.name}/untransposed_axis")
        new_consts.append(make_const(name, np.int32(a)))
        consts[name] = np.int32(a)
        for k, t in enumerate(sources):
            concat.input[k] = t.input[0]
        concat.input[len(sources)] = name
        concat.attr["Tidx"].type = 3  # DT_INT32
        finish(last, (path[-1] if path else concat).name)
        changed = True
        users = consumers(out)
    if not changed:
        return graph
    out.node.extend(new_consts)
    return prune(out, ctx)
