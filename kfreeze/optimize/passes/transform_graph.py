"""TensorFlow's TransformGraph folds FusedBatchNorm V1 into the conv before it."""

from __future__ import annotations

from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import transform
from tensorflow.core.framework import graph_pb2


def transform_graph(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """TensorFlow's TransformGraph folds FusedBatchNorm (V1) and BatchNormWithGlobalNormalization
    straight after a conv into its weights. V2/V3 are left to ``batch_norm_to_affine``.

    Runs only when such a batch norm is present: on other graphs it has nothing to
    fold, and its ``fold_batch_norms`` rejects a Conv -> Mul whose constant is
    [1, 1, 1, C] (EfficientNet), which ``fold_affine`` folds instead."""
    if not any(n.op in ("FusedBatchNorm", "BatchNormWithGlobalNormalization") for n in graph.node):
        return graph
    return transform(graph, ctx.input_nodes, ctx.output_nodes, "fold_batch_norms fold_old_batch_norms")
