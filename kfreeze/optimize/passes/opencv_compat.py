"""``opencv: true``: rewrite standard patterns that OpenCV dnn (4.x) rejects into
equivalent standard TF ops that it imports. The graph stays valid TensorFlow with
the same outputs; only the op spelling changes.
"""

from __future__ import annotations

from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import copy
from tensorflow.core.framework import graph_pb2


def opencv_compat(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Keras 3's ``AddV2`` becomes ``Add`` (the same kernel; OpenCV before 4.5 knows only Add).

    ``PASSES`` runs it only with ``Context(opencv=True)``.
    """
    out = copy(graph)
    for node in out.node:
        if node.op == "AddV2":
            node.op = "Add"
    return out
