"""``opencv: true``: a MatMul summed with another computed tensor, as OpenCV reads it.

OpenCV's TF importer takes the one ``Add`` (or ``BiasAdd``) after a MatMul as that MatMul's bias and
reads its other input as a constant. An unrolled recurrent layer adds ``h @ W_rec`` to ``x @ W + b``,
two computed tensors, and OpenCV stopped on "Const input blob for weights not found". As ``AddN`` (the
same sum; OpenCV imports it as an element-wise sum since 3.4) the MatMul stays a plain InnerProduct.
"""

from __future__ import annotations

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import copy
from tensorflow.core.framework import graph_pb2


def opencv_matmul_sum(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``Add(a, b)`` with neither input a Const (nor a Relu) and one of them a MatMul or a Mul by a Const
    (an LSTM's forget gate times its zero first state) becomes ``AddN(a, b)``.

    ``PASSES`` runs it only with ``Context(opencv=True)``, after ``opencv_compat`` spelled AddV2 as Add.
    """
    by_name = {n.name: n for n in graph.node}

    def op(tensor):
        node = by_name.get(split_tensor(tensor)[0])
        return node.op if node is not None else None

    def fusing(tensor):  # what OpenCV fuses the Add after: a MatMul, a Mul by a constant
        node = by_name.get(split_tensor(tensor)[0])
        return node is not None and (node.op == "MatMul" or node.op == "Mul" and "Const" in map(op, node.input))

    # Relu + Mul(alpha, Relu(-x)) is PReLU, which OpenCV's graph simplifier fuses by its Add: left alone.
    todo = [n.name for n in graph.node if n.op == "Add" and len(n.input) == 2 and "Relu" not in map(op, n.input)
            and "Const" not in (op(n.input[0]), op(n.input[1])) and (fusing(n.input[0]) or fusing(n.input[1]))]
    if not todo:
        return graph
    out = copy(graph)
    names = set(todo)
    for node in out.node:
        if node.name in names:
            node.op = "AddN"
            node.attr["N"].i = 2
    return out
