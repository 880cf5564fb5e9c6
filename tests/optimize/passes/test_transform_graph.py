"""Tests for the ``transform_graph`` pass (kfreeze/optimize/passes/transform_graph.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import passes
from kfreeze.tfenv import tf
from tests.optimize.helpers import ATOL, RTOL, ctx, run, ops, by_name, conv_bn_graph


@pytest.mark.parametrize("bn_name", ["FusedBatchNorm", "FusedBatchNormV3"])
def test_transform_graph_folds_fused_batch_norm_into_conv(rng, bn_name):
    """TransformGraph folds V1; V3 (what tf.compat.v1.nn.fused_batch_norm emits) needs
    batch_norm_to_affine + fold_affine. Either way no batch norm is left."""
    graph = conv_bn_graph(rng, getattr(tf.raw_ops, bn_name))
    assert bn_name in ops(graph)
    c = ctx(["x"])
    out = passes.fold_affine(passes.batch_norm_to_affine(passes.transform_graph(graph, c), c), c)
    hist = ops(out)
    assert not any(op.startswith("FusedBatchNorm") for op in hist), hist
    assert hist.get("Conv2D") == 1 and hist.get("BiasAdd") == 1 and "Mul" not in hist
    assert "out" in by_name(out) and "x" in by_name(out)
    xv = rng.normal(size=[2, 6, 6, 2]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)


def test_two_convs_sharing_weights_before_one_batch_norm_fold_correctly(rng7):
    """TF's TestFoldFusedBatchNormsWithConcat (split=True), with one weights constant read by both convs."""
    import numpy as np

    from kfreeze.optimize import passes
    from kfreeze.tfenv import tf
    from tests.optimize.helpers import ctx, same_numbers

    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 1, 6, 2], name="x")
        w = tf.constant(rng7.normal(size=(1, 2, 2, 2)).astype(np.float32), name="w")
        both = tf.concat([tf.nn.conv2d(x, w, 1, "SAME"), tf.nn.conv2d(x, w, 1, "SAME")], 3)
        scale, offset = rng7.uniform(0.5, 2, 4).astype(np.float32), rng7.normal(size=4).astype(np.float32)
        mean, var = rng7.normal(size=4).astype(np.float32), rng7.uniform(0.5, 2, 4).astype(np.float32)
        y = tf.compat.v1.raw_ops.FusedBatchNorm(x=both, scale=scale, offset=offset, mean=mean, variance=var,
                                                 is_training=False)[0]
        tf.identity(y, name="out")
    graph = g.as_graph_def()
    out = passes.transform_graph(graph, ctx())
    assert "FusedBatchNorm" not in {n.op for n in out.node}
    same_numbers(out, graph, rng7.normal(size=[1, 1, 6, 2]).astype(np.float32))
