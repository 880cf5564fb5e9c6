"""Tests for the ``batch_norm_to_affine`` pass (kfreeze/optimize/passes/batch_norm_to_affine.py)."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize import Context, passes
from kfreeze.tfenv import tf
from tests.optimize.helpers import ATOL, RTOL, ctx, run, ops, const


def test_batch_norm_to_affine_after_a_bias_add(rng):
    """Conv -> BiasAdd -> FusedBatchNormV3: TransformGraph's pattern misses it; ours folds it whole."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 6, 6, 2], name="x")
        conv = tf.nn.bias_add(tf.nn.conv2d(x, const(rng, 3, 3, 2, 4), 1, "SAME"), const(rng, 4))
        y = tf.compat.v1.nn.fused_batch_norm(conv, const(rng, 4, low=0.5, high=1.5), const(rng, 4),
                                             mean=const(rng, 4), variance=const(rng, 4, low=0.5, high=2.0),
                                             is_training=False)[0]
        tf.identity(y, name="out")
    graph = g.as_graph_def()
    c = ctx(["x"])
    out = passes.fold_affine(passes.batch_norm_to_affine(graph, c), c)
    assert ops(out) == {"Placeholder": 1, "Const": 2, "Conv2D": 1, "BiasAdd": 1, "Identity": 1}
    xv = rng.normal(size=[3, 6, 6, 2]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)


def test_batch_norm_to_affine_leaves_training_mode_alone(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4, 4, 2], name="x")
        y = tf.compat.v1.nn.fused_batch_norm(x, tf.ones([2]), tf.zeros([2]), is_training=True)[0]
        tf.identity(y, name="out")
    graph = g.as_graph_def()
    out = passes.batch_norm_to_affine(graph, ctx(["x"]))
    assert "FusedBatchNormV3" in ops(out)


def test_compat_v1_fused_batch_norm_emits_v3():
    """Context for the xfail above: the graph-mode API users call produces FusedBatchNormV3."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 2, 2, 2])
        tf.compat.v1.nn.fused_batch_norm(x, tf.ones([2]), tf.zeros([2]), mean=tf.zeros([2]),
                                         variance=tf.ones([2]), is_training=False)
    assert "FusedBatchNormV3" in ops(g.as_graph_def())
