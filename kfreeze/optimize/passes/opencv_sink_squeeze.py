"""``opencv: true``: element-wise ops after a unit-axis ``Squeeze`` run before it.

Keras' 1-D layers are 2-D ops over a unit axis: Conv1D is ``ExpandDims -> Conv2D -> Squeeze``,
the next pooling 1D or Conv1D expands again. What sits between two of them (an activation, a
BatchNormalization's scale and shift, a Dropout's nothing) runs on the 3-D tensor. OpenCV's
importer keeps 4-D blobs NCHW and loses the layout on the 3-D one: a per-channel Mul or Add
there fails (``shape_utils.hpp: end <= dims``, the Conv1D + BatchNorm audio model). An
element-wise op of one tensor, or with a scalar or per-channel (last axis) constant, gives the
same numbers on the 4-D tensor before the Squeeze (the squeezed axis is not the last one, so
the constant broadcasts the same way); moved there, the ``Squeeze -> ExpandDims`` round trip
becomes adjacent and ``opencv_squeeze_expand`` removes it.
"""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import const_values, consumers, copy, shape_of, static_shapes
from tensorflow.core.framework import graph_pb2

UNARY = {"Relu", "Relu6", "LeakyRelu", "Elu", "Selu", "Tanh", "Sigmoid", "Softplus", "Softsign", "Identity",
         "Neg", "Abs", "Square", "Exp"}
BINARY = {"BiasAdd", "Add", "AddV2", "Sub", "Mul", "RealDiv", "Maximum", "Minimum"}


def _movable(node, by_name, consts, channels) -> bool:
    """``node`` is element-wise on its first input with nothing else but a scalar or per-channel constant."""
    if any(i.startswith("^") for i in node.input):
        return False
    if node.op in UNARY:
        return len(node.input) == 1
    if node.op not in BINARY or len(node.input) != 2:
        return False
    src = split_tensor(node.input[1])[0]
    if src not in consts or by_name[src].op != "Const":
        return False
    value = np.asarray(consts[src])
    return value.ndim <= 1 and value.size in (1, channels)


def opencv_sink_squeeze(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``op(Squeeze(t, [k]), const)`` becomes ``Squeeze(op(t, const), [k])`` (``k`` not the last axis,
    the Squeeze read only by ``op``), repeated down the chain; the nodes keep their names (an output
    stays an output), only the ops swap places."""
    out = None
    for _ in range(64):  # one op down per round; chains between two 1-D layers are short
        g = out if out is not None else graph
        by_name = {n.name: n for n in g.node}
        users = consumers(g)
        consts = const_values(g)
        shapes = None
        pairs = []
        moved = set()
        for sq in g.node:
            if sq.op != "Squeeze" or len(sq.attr["squeeze_dims"].list.i) != 1 or sq.name in ctx.output_nodes:
                continue
            found = users.get(sq.name, [])
            if len(found) != 1:
                continue
            op, idx = found[0]
            if idx != 0 or split_tensor(op.input[0])[1] or op.name in moved:
                continue
            if shapes is None:
                shapes = static_shapes(g)
            shape = shape_of(shapes, sq.input[0])
            if shape is None or None in shape:
                continue
            k = int(sq.attr["squeeze_dims"].list.i[0]) % len(shape)
            if k == len(shape) - 1 or not _movable(op, by_name, consts, shape[-1]):
                continue
            pairs.append((sq.name, op.name))
            moved.add(op.name)
        if not pairs:
            break
        out = copy(g)
        nodes = {n.name: n for n in out.node}
        for sq_name, op_name in pairs:
            sq, op = nodes[sq_name], nodes[op_name]
            old_sq, old_op = type(sq)(), type(op)()
            old_sq.CopyFrom(sq)
            old_op.CopyFrom(op)
            sq.CopyFrom(old_op)                  # named like the Squeeze: the op, on the 4-D tensor
            sq.name = sq_name
            sq.input[0] = old_sq.input[0]
            op.CopyFrom(old_sq)                  # named like the op (maybe an output): the Squeeze
            op.name = op_name
            op.input[:] = [sq_name]
    return graph if out is None else out
