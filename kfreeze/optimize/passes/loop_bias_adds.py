"""BiasAdd inside a v1 while loop becomes AddV2 again."""

from __future__ import annotations

from kfreeze import graphio
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import copy, nhwc
from tensorflow.core.framework import graph_pb2


def loop_bias_adds(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``BiasAdd(x, b)`` in a while loop's frame -> ``AddV2(x, b)`` (the same sum, NHWC broadcast).

    fold_affine and restore_bias_add write a conv's bias as BiasAdd, so that TF fuses the two.
    Inside a loop (a ConvLSTM2D's), a TF process with oneDNN on (TF's default on x86) then fails
    at run time: "Retval[0] does not have value", at any batch, Grappler on or off; with
    AddV2, as Keras wrote it, the graph runs. kfreeze's own pinned session (oneDNN off) runs
    both, which is why verify also runs the graph with TF's defaults. Outside loops nothing changes.
    """
    in_loops = graphio.loop_nodes(graph)
    if not any(n.op == "BiasAdd" and n.name in in_loops and nhwc(n) for n in graph.node):
        return graph
    out = copy(graph)
    for node in out.node:
        if node.op == "BiasAdd" and node.name in in_loops and nhwc(node):
            node.op = "AddV2"
            del node.attr["data_format"]
    return out
