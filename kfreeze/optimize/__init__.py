"""Frozen GraphDef -> inference-optimized GraphDef, as an explicit ordered list of passes.

Each pass is a pure ``(GraphDef, Context) -> GraphDef`` function. TensorFlow's
own machinery (TransformGraph, Grappler) does the heavy folding; the passes in
``kfreeze.optimize.passes`` cover only what neither does for Keras 3 or TF1 graphs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from kfreeze import graphio
from kfreeze.optimize import compat, passes, precision, rewrites
from kfreeze.optimize.context import Context, InputSpec  # noqa: F401  (public API)
from tensorflow.core.framework import graph_pb2

Pass = Callable[[graph_pb2.GraphDef, Context], graph_pb2.GraphDef]

PASSES: list[tuple[str, Pass]] = [
    ("cut_inputs", passes.cut_inputs),                    # named inputs become placeholders
    ("placeholder_defaults", passes.placeholder_defaults),  # is_training/keep_prob take their defaults
    ("strip_unused", passes.strip_unused),                # only what the outputs need
    ("static_reshape", passes.static_reshape),            # Flatten's Shape/Pack -> a constant shape
    ("frame_constants", passes.frame_constants),          # new constants read in a while loop join its frame
    ("grappler", passes.grappler),                        # constant folding (is_training switches too), identities
    ("remove_dropout", passes.remove_dropout),            # inference-mode dropout masks are all ones
    ("transform_graph", passes.transform_graph),          # TF's fold_(old_)batch_norms: FusedBatchNorm V1
    ("batch_norm_to_affine", passes.batch_norm_to_affine),  # FusedBatchNormV2/V3 -> Mul + BiasAdd
    ("fold_affine", passes.fold_affine),                  # per-channel Mul/Add into conv/matmul weights
    ("fold_input_scale", rewrites.fold_input_scale),      # Mul before (Relu ->) conv/matmul into its weights
    ("fold_pad_into_conv", rewrites.fold_pad_into_conv),  # ZeroPadding -> the conv's SAME/EXPLICIT padding
    ("keepdims_mean", rewrites.keepdims_mean),            # Mean + Reshape [N,1,1,C] -> Mean(keep_dims)
    ("remove_noops", rewrites.remove_noops),              # no-op Identity/Reshape/Transpose/Cast/Pad, reshape chains
    ("dense_constants", rewrites.dense_constants),        # values in tensor_content (OpenCV needs it)
    ("dedupe_constants", rewrites.dedupe_constants),      # identical constants become one
    ("name_outputs", rewrites.name_outputs),              # the op computing an output takes its name
    ("frame_constants_late", passes.frame_constants),     # again, for the constants the rewrites made
    ("opencv_compat", compat.opencv_compat),              # only with Context(opencv=True)
    ("float16_weights", precision.float16_weights),       # only with Context(precision="float16")
    ("sort_by_execution_order", passes.sort_by_execution_order),
    ("check_portable", passes.check_portable),            # standard ops only
]


@dataclass
class PassStat:
    name: str
    ops_before: int
    ops_after: int
    removed: dict[str, int] = field(default_factory=dict)
    added: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"pass": self.name, "ops_before": self.ops_before, "ops_after": self.ops_after,
                "removed": self.removed, "added": self.added}


def _delta(before: dict[str, int], after: dict[str, int]):
    removed = {k: before[k] - after.get(k, 0) for k in before if before[k] > after.get(k, 0)}
    added = {k: after[k] - before.get(k, 0) for k in after if after[k] > before.get(k, 0)}
    return dict(sorted(removed.items())), dict(sorted(added.items()))


# Passes that run only when the Context asks for them; otherwise they are not listed in the stats.
OPTIONAL: dict[str, Callable[[Context], bool]] = {
    "opencv_compat": lambda ctx: ctx.opencv,
    "float16_weights": lambda ctx: ctx.precision == "float16",
}


def passes_for(ctx: Context) -> list[tuple[str, Pass]]:
    """The passes ``optimize`` runs for ``ctx``: PASSES without the optional ones it does not enable."""
    return [(name, fn) for name, fn in PASSES if name not in OPTIONAL or OPTIONAL[name](ctx)]


def optimize(graph: graph_pb2.GraphDef, ctx: Context,
             pipeline: list[tuple[str, Pass]] | None = None) -> tuple[graph_pb2.GraphDef, list[PassStat]]:
    stats = []
    for name, fn in passes_for(ctx) if pipeline is None else pipeline:
        before = graphio.op_histogram(graph)
        graph = fn(graph, ctx)
        after = graphio.op_histogram(graph)
        removed, added = _delta(before, after)
        stats.append(PassStat(name, sum(before.values()), sum(after.values()), removed, added))
    return graph, stats
