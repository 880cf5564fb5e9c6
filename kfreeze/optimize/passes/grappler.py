"""Offline Grappler with the optimizers that keep a graph portable."""

from __future__ import annotations

from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import import_light
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tensorflow.python.grappler import tf_optimizer

# Grappler optimizers that keep graphs portable: no '_Fused*' ops (remap) and no
# NCHW rewrites (layout), which TF C++ on CPU and OpenCV cannot run.
GRAPPLER_OPTIMIZERS = ("constfold", "arithmetic", "dependency", "pruning", "function", "loop")


def grappler(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Offline Grappler: constant folding (batch norm into conv weights), arithmetic
    simplification, identity and dead-node removal."""
    g = import_light(graph)  # only for export_meta_graph's collections: the graph_def is ``graph``
    meta = tf.compat.v1.train.export_meta_graph(graph_def=graph, graph=g)
    meta.collection_def["train_op"].node_list.value.extend(ctx.output_nodes)
    config = config_pb2.ConfigProto()
    rewrite = config.graph_options.rewrite_options
    rewrite.optimizers.extend(GRAPPLER_OPTIMIZERS)
    rewrite.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.TWO
    rewrite.min_graph_nodes = -1
    out = tf_optimizer.OptimizeGraph(config, meta)
    del out.library.function[:]  # inlined by the function optimizer; none may remain referenced
    return out
