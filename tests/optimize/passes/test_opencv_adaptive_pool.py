"""Tests for the ``opencv_adaptive_pool`` pass (kfreeze/optimize/passes/opencv_adaptive_pool.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, ops, run
from tests.optimize.opencv_check import assert_opencv_matches, opencv_fails


def _graph(rng, pool, size=8):
    """Keras' adaptive pooling to 4 along H as traced: two pools, concatenated, re-ordered by a GatherV2
    (window 2 everywhere when 8 -> 4)."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, size, size, 3], name="x")
        y = tf.nn.conv2d(x, tf.constant(rng.normal(size=(3, 3, 3, 3)).astype(np.float32)), 1, "SAME")
        a = pool(y, [1, 2, 1, 1], [1, 2, 1, 1], "VALID")
        b = pool(y, [1, 2, 1, 1], [1, 2, 1, 1], "VALID")
        both = tf.concat([a, b], 1)
        tf.gather(both, tf.constant([0, 1, 2, 3], tf.int32), axis=1, name="out")
    return g.as_graph_def()


@pytest.mark.parametrize("pool", [tf.nn.max_pool2d, tf.nn.avg_pool2d])
def test_adaptive_pool_becomes_one_pool(rng, pool):
    graph = _graph(rng, pool)
    assert "opencv_adaptive_pool" not in dict(passes_for(ctx()))
    out = passes.opencv_adaptive_pool(graph, ctx(opencv=True))
    assert "GatherV2" not in ops(out) and by_name(out)["out"].op in ("MaxPool", "AvgPool")
    x = rng.normal(size=(1, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": x}), run(graph, {"x:0": x}), rtol=1e-6, atol=1e-6)
    assert "GatherV2" in opencv_fails(graph, {"x": x})
    assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))


def test_adaptive_pool_a_broken_rewrite_is_caught(rng):
    graph = _graph(rng, tf.nn.max_pool2d)
    out = passes.opencv_adaptive_pool(graph, ctx(opencv=True))
    by_name(out)["out"].op = "AvgPool"  # the wrong pooling
    x = rng.normal(size=(1, 8, 8, 3)).astype(np.float32)
    with pytest.raises(AssertionError, match="differs"):
        assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))


def test_adaptive_pool_leaves_a_gather_that_is_no_pooling(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 3], name="x")
        y = tf.nn.max_pool2d(x, [1, 2, 1, 1], [1, 2, 1, 1], "VALID")
        tf.gather(y, tf.constant([3, 2, 1, 0], tf.int32), axis=1, name="out")  # reversed: not a pooling
    graph = g.as_graph_def()
    assert passes.opencv_adaptive_pool(graph, ctx(opencv=True)) is graph


@pytest.mark.parametrize("pool", [tf.nn.max_pool3d, tf.nn.avg_pool3d])
def test_adaptive_pool_3d_becomes_one_3d_pool(rng, pool):
    """AdaptiveAverage/MaxPooling3D, (4, 4, 4) -> (2, 2, 2): 3-D pools re-ordered by a GatherV2."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4, 4, 4, 2], name="x")
        a = pool(x, [1, 2, 2, 2, 1], [1, 2, 2, 2, 1], "VALID")
        b = pool(x, [1, 2, 2, 2, 1], [1, 2, 2, 2, 1], "VALID")
        tf.gather(tf.concat([a, b], 1), tf.constant([0, 1], tf.int32), axis=1, name="out")
    graph = g.as_graph_def()
    out = passes.opencv_adaptive_pool(graph, ctx(opencv=True))
    assert "GatherV2" not in ops(out) and by_name(out)["out"].op in ("MaxPool3D", "AvgPool3D")
    x = rng.normal(size=(1, 4, 4, 4, 2)).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": x}), run(graph, {"x:0": x}), rtol=1e-6, atol=1e-6)
    assert "GatherV2" in opencv_fails(graph, {"x": x})
    assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))
