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

    for first in list(out.node):
        p = perm_of(first)
        if p is None:
            continue
        path, current, ok = [], first, True
        while True:
            nxt = only_user(current)
            if nxt is None:
                ok = False
                break
            node, index = nxt
            if node.op == "Transpose" and index == 0:
                last = node
                break
            if node.op in _UNARY and index == 0:
                path.append(node)
            elif node.op in _BINARY and len(node.input) == 2:
                other = node.input[1 - index]
                value = consts.get(split_tensor(other)[0])
                if value is None or node.op == "BiasAdd" or np.asarray(value).ndim > len(p):
                    ok = False
                    break
                path.append(node)
            elif node.op in _REDUCE and index == 0 and node.attr["keep_dims"].b \
                    and split_tensor(node.input[1])[0] in consts:
                path.append(node)
            else:
                ok = False
                break
            current = node
        if not ok:
            continue
        q = perm_of(last)
        if last.name in keep or q is None or len(q) != len(p) or not np.array_equal(p[q], np.arange(len(p))):
            continue
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
        # The path now reads the first Transpose's input; the last Transpose's readers read the path.
        head = path[0] if path else None
        src = first.input[0]
        if head is not None:
            for i, inp in enumerate(head.input):
                if split_tensor(inp)[0] == first.name and not inp.startswith("^"):
                    head.input[i] = src
            rewire(out, last.name, path[-1].name, users)
        else:
            rewire(out, last.name, src, users)
        changed = True
        users = consumers(out)
    if not changed:
        return graph
    out.node.extend(new_consts)
    return prune(out, ctx)
