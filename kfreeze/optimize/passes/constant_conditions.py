"""An If whose condition is a constant becomes a call of the branch it takes."""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import copy
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2

_IF = {"If": "StatefulPartitionedCall", "StatelessIf": "PartitionedCall"}


def constant_conditions(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``If(c, args)`` with ``c`` a scalar constant (through Identities) becomes a call of the branch
    ``c`` selects, with the same args and outputs, which Grappler's function pass inlines.

    TF 2's ``tf.cond`` in a TF1-style graph is an If op with function branches. Once
    ``placeholder_defaults`` has made a learning-phase flag a constant, Grappler lowers the If to
    Switch/Merge but leaves the dead branch in place (its Merge has a control input, which its
    dead-branch removal skips), so a dropout's RandomUniform stayed in the optimized graph.
    """
    consts = {n.name: n for n in graph.node if n.op == "Const"}
    by_name = {n.name: n for n in graph.node}

    def value_of(tensor: str):
        name, port = split_tensor(tensor)
        for _ in range(16):
            node = by_name.get(name)
            if node is None or port:
                return None
            if node.op == "Identity" and node.input and not node.input[0].startswith("^"):
                name, port = split_tensor(node.input[0])
                continue
            if name in consts:
                value = tf.make_ndarray(consts[name].attr["value"].tensor)
                return bool(np.asarray(value).reshape(())) if np.asarray(value).size == 1 and \
                    np.asarray(value).ndim == 0 else None
            return None
        return None

    todo = {n.name: value_of(n.input[0]) for n in graph.node if n.op in _IF and n.input
            and not n.input[0].startswith("^")}
    todo = {k: v for k, v in todo.items() if v is not None}
    if not todo:
        return graph
    out = copy(graph)
    for node in out.node:
        if node.name not in todo:
            continue
        branch = node.attr["then_branch" if todo[node.name] else "else_branch"].func
        tin, tout = list(node.attr["Tin"].list.type), list(node.attr["Tout"].list.type)
        inputs = list(node.input[1:])
        node.op = _IF[node.op]
        node.ClearField("attr")
        del node.input[:]
        node.input.extend(inputs)  # the args, and the If's control inputs after them
        node.attr["Tin"].list.type.extend(tin)
        node.attr["Tout"].list.type.extend(tout)
        node.attr["f"].func.CopyFrom(branch)
        node.attr["config"].s = b""
        node.attr["config_proto"].s = b""
        node.attr["executor_type"].s = b""
    return out
