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


def remove_noops(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Drop ops that change nothing and merge reshape chains.

    - Identity, CheckNumerics, StopGradient and the like (not an output), Cast to its own type, Transpose by the identity
      permutation, Pad by zeros, and Reshape/Squeeze/ExpandDims whose static
      output shape is its input's: consumers read the input instead.
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
        if node.name in keep or not node.input or node.input[0].startswith("^") \
                or any(i.startswith("^") for i in node.input):
            continue
        src = node.input[0]
        noop = False
        if node.op in _PASS_THROUGH:
            noop = True
        elif node.op == "Cast":
            noop = node.attr["SrcT"].type == node.attr["DstT"].type
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
