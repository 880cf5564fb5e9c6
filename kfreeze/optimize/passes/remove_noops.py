"""Ops that change nothing go; reshape chains become one Reshape."""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import const_values, copy, make_const, prune, rewire, shape_of, single_data_user, static_shapes, unique_name, consumers
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2


_SHAPE_OPS = ("Reshape", "Squeeze", "ExpandDims")
# Their output is their input at inference. CheckNumerics only stops a run on NaN/Inf (TF's
# optimize_for_inference strips it too); the others are gradient or aliasing markers.
_PASS_THROUGH = ("Identity", "CheckNumerics", "CheckNumericsV2", "StopGradient", "PreventGradient", "Snapshot")
_CHECKS = ("CheckNumerics", "CheckNumericsV2", "Assert")  # as control inputs: only stop a run

# Cast(Cast(x, A -> B), B -> A) is x when every A value is exact in B (dtype enums).
_F16, _BF16, _F32, _F64 = 19, 14, 1, 2
_I8, _I16, _I32, _I64, _U8, _U16, _U32, _BOOL = 6, 5, 3, 9, 4, 17, 22, 10
_EXACT_IN = {
    _F16: {_F32, _F64}, _BF16: {_F32, _F64}, _F32: {_F64},
    _BOOL: {_I8, _I16, _I32, _I64, _U8, _U16, _U32, _F16, _BF16, _F32, _F64},
    _I8: {_I16, _I32, _I64, _F16, _F32, _F64}, _U8: {_I16, _U16, _I32, _U32, _I64, _F16, _F32, _F64},
    _I16: {_I32, _I64, _F32, _F64}, _U16: {_I32, _U32, _I64, _F32, _F64},
    _I32: {_I64, _F64}, _U32: {_I64, _F64},
}
# x op c is x for a constant c of these values (c on the right for Sub and divisions).
_NEUTRAL = {"Mul": (1, "either"), "Add": (0, "either"), "AddV2": (0, "either"), "BiasAdd": (0, "right"),
            "Sub": (0, "right"), "RealDiv": (1, "right"), "Div": (1, "right")}


def remove_noops(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Drop ops that change nothing and merge reshape chains.

    - Identity, CheckNumerics, StopGradient and the like (not an output), Cast to its own type, Transpose by the identity
      permutation, Pad by zeros, and Reshape/Squeeze/ExpandDims whose static
      output shape is its input's: consumers read the input instead.
    - A Cast back to the type a Cast came from, when that first Cast was exact (float32 -> float64
      -> float32): it reads the first Cast's input.
    - Mul or division by a constant of ones, Add, BiasAdd or Sub of zeros, when the constant's
      shape cannot broadcast the other operand to a larger shape.
    - Control inputs from CheckNumerics and Assert (they only stop a run), as TF's
      optimize_for_inference drops them.
    - A chain of Reshape/Squeeze/ExpandDims: the last one becomes a single
      Reshape of the chain's input to its static shape (batch left as -1).
    """
    out = copy(graph)
    keep = set(ctx.output_nodes)
    consts = const_values(out)
    by_name = {n.name: n for n in out.node}
    shapes = static_shapes(out)
    names = set(by_name)
    users = consumers(out)
    new_consts = []
    changed = False

    def same_shape(a, b):
        sa, sb = shape_of(shapes, a), shape_of(shapes, b)
        return sa is not None and sa == sb and None not in sa[1:]

    for node in out.node:
        checks = [i for i in node.input if i.startswith("^") and by_name.get(i[1:]) is not None
                  and by_name[i[1:]].op in _CHECKS]
        for inp in checks:
            node.input.remove(inp)
            changed = True
        if node.name in keep or not node.input or node.input[0].startswith("^") \
                or any(i.startswith("^") for i in node.input):
            continue
        src = node.input[0]
        noop = False
        if node.op in _PASS_THROUGH:
            noop = True
        elif node.op == "Cast":
            noop = node.attr["SrcT"].type == node.attr["DstT"].type
            inner = by_name.get(split_tensor(src)[0])
            if not noop and inner is not None and inner.op == "Cast" and not split_tensor(src)[1] \
                    and inner.attr["SrcT"].type == node.attr["DstT"].type \
                    and inner.attr["DstT"].type in _EXACT_IN.get(inner.attr["SrcT"].type, ()) \
                    and not any(i.startswith("^") for i in inner.input):
                noop, src = True, inner.input[0]
        elif node.op in _NEUTRAL and len(node.input) == 2:
            found = _neutral_operand(node, consts, shapes)
            if found is not None:
                noop, src = True, found
        elif node.op == "Transpose" and split_tensor(node.input[1])[0] in consts:
            perm = np.asarray(consts[split_tensor(node.input[1])[0]]).reshape(-1)
            noop = bool((perm == np.arange(perm.size)).all())
        elif node.op in ("Pad", "PadV2", "MirrorPad") and split_tensor(node.input[1])[0] in consts:
            noop = not np.asarray(consts[split_tensor(node.input[1])[0]]).any()
        elif node.op in _SHAPE_OPS:
            noop = same_shape(src, node.name)
        if noop:
            rewire(out, node.name, src, users)
            users.setdefault(split_tensor(src)[0], []).extend(users.pop(node.name, []))
            changed = True
            continue
        if node.op in _SHAPE_OPS:
            inner = by_name.get(split_tensor(src)[0])
            if inner is None or inner.op not in _SHAPE_OPS or split_tensor(src)[1] \
                    or single_data_user(users, inner.name, keep) is None:
                continue
            target = shape_of(shapes, node.name)
            if target is None or None in target[1:]:
                continue
            dims = [-1 if d is None else d for d in target]
            sname = unique_name(names, f"{node.name}/merged_shape")
            new_consts.append(make_const(sname, np.asarray(dims, np.int32)))
            consts[sname] = np.asarray(dims, np.int32)
            dtype = node.attr["T"].type
            name = node.name
            node.Clear()
            node.name, node.op = name, "Reshape"
            node.input.extend([inner.input[0], sname])
            node.attr["T"].type = dtype
            node.attr["Tshape"].type = tf.int32.as_datatype_enum
            changed = True
    if not changed:
        return graph
    out.node.extend(new_consts)
    return prune(out, ctx)


def _neutral_operand(node, consts, shapes) -> str | None:
    """The operand ``node`` returns unchanged (``x`` of ``x * 1``, ``x + 0``...), or None."""
    value, side = _NEUTRAL[node.op]
    sides = (1, 0) if side == "either" else (1,)
    for k in sides:
        c = consts.get(split_tensor(node.input[k])[0])
        if c is None or split_tensor(node.input[k])[1]:
            continue
        c = np.asarray(c)
        if c.size == 0 or c.dtype.kind not in "fiu" or not np.all(c == value):
            continue
        other = node.input[1 - k]
        shape = shape_of(shapes, other)
        # The constant must not broadcast ``other`` to more dims or larger ones.
        if shape is None or c.ndim > len(shape):
            continue
        dims = list(c.shape)
        if all(d == 1 or d == s for d, s in zip(dims[::-1], shape[::-1])):
            return other
    return None
