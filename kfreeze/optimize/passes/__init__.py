"""The optimization passes, one a module: pure ``(GraphDef, Context) -> GraphDef`` functions.

The run order and the reason for it are in ``kfreeze.optimize.PASSES``; the graph
helpers the passes share are in ``kfreeze.optimize.graph``.
"""

from kfreeze.optimize.passes.batch_norm_to_affine import batch_norm_to_affine
from kfreeze.optimize.passes.cancel_transposes import cancel_transposes
from kfreeze.optimize.passes.channels_last import channels_last
from kfreeze.optimize.passes.check_portable import check_portable
from kfreeze.optimize.passes.constant_conditions import constant_conditions
from kfreeze.optimize.passes.cut_inputs import cut_inputs
from kfreeze.optimize.passes.dedupe_constants import dedupe_constants
from kfreeze.optimize.passes.dense_constants import dense_constants
from kfreeze.optimize.passes.float16_weights import float16_weights
from kfreeze.optimize.passes.fold_affine import fold_affine
from kfreeze.optimize.passes.fold_input_scale import fold_input_scale
from kfreeze.optimize.passes.fold_pad_into_conv import fold_pad_into_conv
from kfreeze.optimize.passes.frame_constants import frame_constants
from kfreeze.optimize.passes.grappler import GRAPPLER_OPTIMIZERS, grappler
from kfreeze.optimize.passes.keepdims_mean import keepdims_mean
from kfreeze.optimize.passes.loop_bias_adds import loop_bias_adds
from kfreeze.optimize.passes.merge_duplicates import merge_duplicates
from kfreeze.optimize.passes.name_outputs import name_outputs
from kfreeze.optimize.passes.opencv_adaptive_pool import opencv_adaptive_pool
from kfreeze.optimize.passes.opencv_batch_matmul import opencv_batch_matmul
from kfreeze.optimize.passes.opencv_bias_before_squeeze import opencv_bias_before_squeeze
from kfreeze.optimize.passes.opencv_compat import opencv_compat
from kfreeze.optimize.passes.opencv_concat_layout import opencv_concat_layout
from kfreeze.optimize.passes.opencv_const_sub import opencv_const_sub
from kfreeze.optimize.passes.opencv_dense3d import opencv_dense3d
from kfreeze.optimize.passes.opencv_dense_reshape import opencv_dense_reshape
from kfreeze.optimize.passes.opencv_dot import opencv_dot
from kfreeze.optimize.passes.opencv_embedding import opencv_embedding
from kfreeze.optimize.passes.opencv_explicit_constants import opencv_explicit_constants
from kfreeze.optimize.passes.opencv_global_pool1d import opencv_global_pool1d
from kfreeze.optimize.passes.opencv_global_pool3d import opencv_global_pool3d
from kfreeze.optimize.passes.opencv_identity_reshape import opencv_identity_reshape
from kfreeze.optimize.passes.opencv_input_feed import opencv_input_feed
from kfreeze.optimize.passes.opencv_masking import opencv_masking
from kfreeze.optimize.passes.opencv_matmul_sum import opencv_matmul_sum
from kfreeze.optimize.passes.opencv_min_max import opencv_min_max
from kfreeze.optimize.passes.opencv_norm import opencv_norm
from kfreeze.optimize.passes.opencv_refuse import opencv_refuse
from kfreeze.optimize.passes.opencv_sink_squeeze import opencv_sink_squeeze
from kfreeze.optimize.passes.opencv_split_reshape import opencv_split_reshape
from kfreeze.optimize.passes.opencv_squeeze_expand import opencv_squeeze_expand
from kfreeze.optimize.passes.opencv_time_distributed import opencv_time_distributed
from kfreeze.optimize.passes.opencv_transpose import opencv_transpose
from kfreeze.optimize.passes.opencv_unstack import opencv_unstack
from kfreeze.optimize.passes.opencv_upsampling import opencv_upsampling
from kfreeze.optimize.passes.placeholder_defaults import placeholder_defaults
from kfreeze.optimize.passes.remove_dropout import remove_dropout
from kfreeze.optimize.passes.remove_noops import remove_noops
from kfreeze.optimize.passes.restore_bias_add import restore_bias_add
from kfreeze.optimize.passes.sort_by_execution_order import sort_by_execution_order
from kfreeze.optimize.passes.static_reshape import static_reshape
from kfreeze.optimize.passes.static_shapes import static_shapes
from kfreeze.optimize.passes.strip_unused import strip_unused
from kfreeze.optimize.passes.transform_graph import transform_graph

__all__ = ["GRAPPLER_OPTIMIZERS", "batch_norm_to_affine", "cancel_transposes", "channels_last", "check_portable",
           "constant_conditions", "cut_inputs", "dedupe_constants", "dense_constants", "float16_weights", "fold_affine",
           "fold_input_scale", "fold_pad_into_conv", "frame_constants", "grappler", "keepdims_mean", "loop_bias_adds",
           "merge_duplicates", "name_outputs", "opencv_adaptive_pool", "opencv_batch_matmul",
           "opencv_bias_before_squeeze", "opencv_compat", "opencv_concat_layout", "opencv_const_sub", "opencv_dense3d",
           "opencv_dense_reshape", "opencv_dot", "opencv_embedding", "opencv_explicit_constants", "opencv_global_pool1d",
           "opencv_global_pool3d", "opencv_identity_reshape", "opencv_input_feed", "opencv_masking",
           "opencv_matmul_sum", "opencv_min_max", "opencv_norm", "opencv_refuse", "opencv_sink_squeeze",
           "opencv_split_reshape", "opencv_squeeze_expand", "opencv_time_distributed", "opencv_transpose",
           "opencv_unstack", "opencv_upsampling", "placeholder_defaults", "remove_dropout", "remove_noops",
           "restore_bias_add", "sort_by_execution_order", "static_reshape", "static_shapes", "strip_unused",
           "transform_graph"]
