"""``opencv: true``: a constant minus a tensor, in the operand order OpenCV reads.

OpenCV's importer reads ``Sub`` with a constant operand as ``x - c`` whichever side the constant is
on, so a GRU's ``1 - z`` (its update gate, unrolled) came out as ``z - 1`` (relative error 2). The
same numbers are ``Add(Mul(x, -1), c)``: a negation (exact in float) and the constant added, both
of which OpenCV imports with the constant on either side (its Power layer's scale, then shift).
"""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import copy, make_const, unique_name
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2


def opencv_const_sub(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """float32 ``Sub(c, x)`` with ``c`` a Const and ``x`` computed becomes ``Add(Mul(x, -1), c)`` under the
    Sub's name.

    ``PASSES`` runs it only with ``Context(opencv=True)``.
    """
    by_name = {n.name: n for n in graph.node}

    def const(tensor):
        node = by_name.get(split_tensor(tensor)[0])
        return node is not None and node.op == "Const"

    todo = [n.name for n in graph.node if n.op == "Sub" and len(n.input) == 2 and const(n.input[0])
            and not const(n.input[1]) and n.attr["T"].type == tf.float32.as_datatype_enum]
    if not todo:
        return graph
    out = copy(graph)
    names = {n.name for n in out.node}
    nodes = {n.name: n for n in out.node}
    for name in todo:
        sub = nodes[name]
        c, x = sub.input
        minus = make_const(unique_name(names, f"{name}/opencv_minus_one"), np.float32(-1.0))
        neg = node_def_pb2.NodeDef(name=unique_name(names, f"{name}/opencv_negated"), op="Mul", input=[x, minus.name])
        neg.attr["T"].type = tf.float32.as_datatype_enum
        sub.op = "Add"
        del sub.input[:]
        sub.input.extend([neg.name, c])
        out.node.extend([minus, neg])
    return out
