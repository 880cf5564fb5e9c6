"""Frozen GraphDef -> inference-optimized GraphDef, as an explicit ordered list of passes.

Each pass is a pure ``(GraphDef, Context) -> GraphDef`` function in its own module
under ``kfreeze.optimize.passes``. TensorFlow's own machinery (TransformGraph,
Grappler) does the heavy folding; the other passes cover only what neither does
for Keras 3 or TF1 graphs. Helpers they share are in ``kfreeze.optimize.graph``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from kfreeze import graphio
from kfreeze.optimize import passes as p
from kfreeze.optimize.context import Context, InputSpec  # noqa: F401  (InputSpec: public API)
from tensorflow.core.framework import graph_pb2

PassFn = Callable[[graph_pb2.GraphDef, Context], graph_pb2.GraphDef]


def always(ctx: Context) -> bool:
    return True


@dataclass(frozen=True)
class Pass:
    """One step of ``optimize``. ``enabled(ctx)`` false: the pass does not run, and it is
    absent from the stats, unless ``listed_when_off`` (then recorded as changing nothing)."""
    name: str
    fn: PassFn
    enabled: Callable[[Context], bool] = always
    listed_when_off: bool = False


PASSES: list[Pass] = [
    # The cut first: every later pass sees the graph as it will be fed.
    Pass("cut_inputs", p.cut_inputs),
    # Flags become constants before anything folds, so training branches fold away.
    Pass("placeholder_defaults", p.placeholder_defaults),
    # TF 2 conds (If) on those constants: the taken branch, called (Grappler keeps a lowered If's dead branch).
    Pass("constant_conditions", p.constant_conditions),
    # Only what the outputs need: later passes (and Grappler) never touch the training part.
    Pass("strip_unused", p.strip_unused),
    # NCHW convs, pools and batch norms as NHWC between Transposes: CPU TF runs only those, and the
    # folds below match only them (Grappler cancels the inverse Transpose pairs between two).
    Pass("channels_last", p.channels_last),
    # Shapes the cut made static become constants (Grappler does not assume a feed's shape).
    Pass("static_shapes", p.static_shapes),
    # A constant shape before Grappler, which cannot fold Keras 3 Flatten's Shape/Pack.
    Pass("static_reshape", p.static_reshape),
    # New constants read in a while loop join its frame before Grappler imports the graph.
    Pass("frame_constants", p.frame_constants),
    # Constant folding (the is_training switches too), arithmetic, identities.
    Pass("grappler", p.grappler),
    # After Grappler folded the rate to a constant: inference-mode dropout masks are all ones.
    Pass("remove_dropout", p.remove_dropout),
    # TF's fold_(old_)batch_norms: FusedBatchNorm V1 straight after a conv.
    Pass("transform_graph", p.transform_graph),
    # FusedBatchNormV2/V3 -> Mul + BiasAdd, which fold_affine folds next.
    Pass("batch_norm_to_affine", p.batch_norm_to_affine),
    # Per-channel Mul/Add after a conv/matmul into its weights.
    Pass("fold_affine", p.fold_affine),
    # The bias Grappler's arithmetic pass moved past a residual add goes back after its conv, so
    # that a TF session fuses the two (_FusedConv2D). After fold_affine, which has folded what
    # batch norm Grappler left into the weights and made the biases right after a conv BiasAdds.
    Pass("restore_bias_add", p.restore_bias_add),
    # ...but not inside a while loop, where a default (oneDNN) TF process cannot run it.
    Pass("loop_bias_adds", p.loop_bias_adds),
    # Mul before (Relu ->) conv/matmul into its weights. Off in opencv mode (OpenCV 4.14
    # cannot follow DenseNet's layout without the Mul), but listed, as it always was.
    Pass("fold_input_scale", p.fold_input_scale, enabled=lambda ctx: not ctx.opencv, listed_when_off=True),
    # ZeroPadding -> the conv's SAME/EXPLICIT padding.
    Pass("fold_pad_into_conv", p.fold_pad_into_conv),
    # Mean + Reshape [N,1,1,C] -> Mean(keep_dims).
    Pass("keepdims_mean", p.keepdims_mean),
    # No-op Identity/Reshape/Transpose/Cast/Pad and reshape chains the folds above left.
    Pass("remove_noops", p.remove_noops),
    # Inverse Transpose pairs around element-wise ops and keep-dims reductions (an NCHW detour).
    Pass("cancel_transposes", p.cancel_transposes),
    # Values in tensor_content (OpenCV needs it), before dedupe compares those bytes.
    Pass("dense_constants", p.dense_constants),
    # Identical constants become one (compared by their tensor_content).
    Pass("dedupe_constants", p.dedupe_constants),
    # Identical ops on the same inputs as one, after dedupe made equal weights one constant.
    Pass("merge_duplicates", p.merge_duplicates),
    # The op computing an output takes its name, once nothing else renames nodes.
    Pass("name_outputs", p.name_outputs),
    # Again, for the constants the rewrites made.
    Pass("frame_constants_late", p.frame_constants),
    # Spelling changes for OpenCV, on the final op set.
    Pass("opencv_compat", p.opencv_compat, enabled=lambda ctx: ctx.opencv),
    # -- OpenCV dnn (4.x) importer patterns, opencv mode only (docs/opencv-coverage.md) --
    # Embedding lookups (GatherV2 of a constant table) as a one-hot MatMul, their ids fed as floats (first:
    # the later passes see plain MatMuls, Reshapes and arithmetic).
    Pass("opencv_embedding", p.opencv_embedding, enabled=lambda ctx: ctx.opencv),
    # Adaptive pooling whose sizes divide (a GatherV2 subgraph) as one MaxPool/AvgPool (first: it
    # reads a 1-D layer's 3-D input as Keras wrote it).
    Pass("opencv_adaptive_pool", p.opencv_adaptive_pool, enabled=lambda ctx: ctx.opencv),
    # Conv1D's bias back on the 4-D conv, where OpenCV folds it.
    Pass("opencv_bias_before_squeeze", p.opencv_bias_before_squeeze, enabled=lambda ctx: ctx.opencv),
    # Layer/RMS/unit normalization over the last axis as 2-D MatMul arithmetic (before opencv_min_max,
    # which would rewrite the Minimum of UnitNormalization's floor).
    Pass("opencv_norm", p.opencv_norm, enabled=lambda ctx: ctx.opencv),
    # Dense/EinsumDense on 3-D: a plain MatMul with its bias as an Add OpenCV folds into it.
    Pass("opencv_dense3d", p.opencv_dense3d, enabled=lambda ctx: ctx.opencv),
    # Dot(axes=1) of two vectors (a BatchMatMulV2) as an element-wise product and a MatMul by ones.
    Pass("opencv_dot", p.opencv_dot, enabled=lambda ctx: ctx.opencv),
    # Masking (NotEqual, Any, SelectV2) as 2-D arithmetic: an indicator clipped from |x - v|, MatMul sums.
    Pass("opencv_masking", p.opencv_masking, enabled=lambda ctx: ctx.opencv),
    # After opencv_dot: other batched matmuls of two 3-D tensors (Attention) as 2-D MatMuls by 0/1 constants.
    Pass("opencv_batch_matmul", p.opencv_batch_matmul, enabled=lambda ctx: ctx.opencv),
    # A Reshape Grappler merged from Dense's image shape and UpSampling's ExpandDims, split again.
    Pass("opencv_split_reshape", p.opencv_split_reshape, enabled=lambda ctx: ctx.opencv),
    # Dense -> Reshape to an image (GAN generators) with the features in channel-major order.
    Pass("opencv_dense_reshape", p.opencv_dense_reshape, enabled=lambda ctx: ctx.opencv),
    # TimeDistributed(Conv2D), unrolled over its steps, as one Conv3D with a kernel one step deep.
    Pass("opencv_time_distributed", p.opencv_time_distributed, enabled=lambda ctx: ctx.opencv),
    # An unrolled recurrent layer's Unpack of its time-major input as a Split of the input itself.
    Pass("opencv_unstack", p.opencv_unstack, enabled=lambda ctx: ctx.opencv),
    # Keras' ExpandDims/Tile/Reshape repeats (UpSampling1D/2D, RepeatVector) as Resize or Concat.
    Pass("opencv_upsampling", p.opencv_upsampling, enabled=lambda ctx: ctx.opencv),
    # GlobalAverage/MaxPooling1D as the 2-D pooling over a unit axis.
    Pass("opencv_global_pool1d", p.opencv_global_pool1d, enabled=lambda ctx: ctx.opencv),
    # GlobalAverage/MaxPooling3D as AvgPool3D/MaxPool3D over the whole volume.
    Pass("opencv_global_pool3d", p.opencv_global_pool3d, enabled=lambda ctx: ctx.opencv),
    # Element-wise ops between two 1-D layers (activation, BatchNorm) before the Squeeze, on 4-D.
    Pass("opencv_sink_squeeze", p.opencv_sink_squeeze, enabled=lambda ctx: ctx.opencv),
    # Squeeze -> ExpandDims round trips between Keras' 1-D layers: stay 4-D.
    Pass("opencv_squeeze_expand", p.opencv_squeeze_expand, enabled=lambda ctx: ctx.opencv),
    # A Reshape to its input's own shape (a merged Squeeze -> ExpandDims), which OpenCV scrambles.
    Pass("opencv_identity_reshape", p.opencv_identity_reshape, enabled=lambda ctx: ctx.opencv),
    # Maximum/Minimum, which OpenCV cannot import, as ClipByValue or Relu arithmetic.
    Pass("opencv_min_max", p.opencv_min_max, enabled=lambda ctx: ctx.opencv),
    # Permute((2, 1, 3)) as two transposes OpenCV's layout tracking accepts.
    Pass("opencv_transpose", p.opencv_transpose, enabled=lambda ctx: ctx.opencv),
    # After the rewrites that add ExpandDims: a layer between an input and what asks OpenCV for its shape.
    Pass("opencv_input_feed", p.opencv_input_feed, enabled=lambda ctx: ctx.opencv),
    # 4-D model inputs concatenated directly: a zero BiasAdd (NHWC) each, so OpenCV maps the axis.
    Pass("opencv_concat_layout", p.opencv_concat_layout, enabled=lambda ctx: ctx.opencv),
    # A constant minus a tensor (a GRU's 1 - z), which OpenCV reads as the tensor minus the constant.
    Pass("opencv_const_sub", p.opencv_const_sub, enabled=lambda ctx: ctx.opencv),
    # After the rewrites that add MatMuls: a MatMul + computed tensor (an unrolled RNN step) as AddN,
    # not the Add OpenCV takes for the MatMul's constant bias.
    Pass("opencv_matmul_sum", p.opencv_matmul_sum, enabled=lambda ctx: ctx.opencv),
    # After every rewrite that adds constants: zeros written out, not implied (OpenCV asserts on none).
    Pass("opencv_explicit_constants", p.opencv_explicit_constants, enabled=lambda ctx: ctx.opencv),
    # What OpenCV's importer lacks after the rewrites above: refused, with one line, not written.
    Pass("opencv_refuse", p.opencv_refuse, enabled=lambda ctx: ctx.opencv),
    # -- end of the OpenCV block --
    # Last of the rewrites: no pass after it folds constants, so the Casts stay.
    Pass("float16_weights", p.float16_weights, enabled=lambda ctx: ctx.precision == "float16"),
    # Canonical order for byte-identical files.
    Pass("sort_by_execution_order", p.sort_by_execution_order),
    # Standard, deterministic ops only: a check on the final graph.
    Pass("check_portable", p.check_portable),
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


def _unchanged(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    return graph


def passes_for(ctx: Context) -> list[tuple[str, PassFn]]:
    """The (name, function) steps ``optimize`` records for ``ctx``: the enabled passes, and
    the disabled ones that are ``listed_when_off`` as a step that changes nothing."""
    return [(s.name, s.fn if s.enabled(ctx) else _unchanged) for s in PASSES
            if s.enabled(ctx) or s.listed_when_off]


def optimize(graph: graph_pb2.GraphDef, ctx: Context,
             pipeline: list[tuple[str, PassFn]] | None = None) -> tuple[graph_pb2.GraphDef, list[PassStat]]:
    stats = []
    for name, fn in passes_for(ctx) if pipeline is None else pipeline:
        before = graphio.op_histogram(graph)
        graph = fn(graph, ctx)
        after = graphio.op_histogram(graph)
        removed, added = _delta(before, after)
        stats.append(PassStat(name, sum(before.values()), sum(after.values()), removed, added))
    return graph, stats
