"""Tests for the ``opencv_global_pool1d`` pass (kfreeze/optimize/passes/opencv_global_pool1d.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, run
from tests.optimize.opencv_check import assert_opencv_matches, opencv_fails


def _graph(rng, reduce):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 8, 3], name="x")
        w = tf.constant(rng.normal(size=(1, 3, 3, 4)).astype(np.float32))
        y = tf.squeeze(tf.nn.conv2d(tf.expand_dims(x * 1.0, 1), w, 1, "SAME"), [1])
        reduce(y, axis=1, name="out")
    return g.as_graph_def()


@pytest.mark.parametrize("reduce", [tf.reduce_mean, tf.reduce_max])
def test_global_pool1d_is_the_2d_pooling(rng, reduce):
    graph = _graph(rng, reduce)
    assert "opencv_global_pool1d" not in dict(passes_for(ctx()))
    out = passes.opencv_squeeze_expand(passes.opencv_global_pool1d(graph, ctx(opencv=True)), ctx(opencv=True))
    x = rng.normal(size=(1, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": x}), run(graph, {"x:0": x}), rtol=1e-6, atol=1e-6)
    assert opencv_fails(graph, {"x": x})
    assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))


def test_global_pool1d_a_broken_rewrite_is_caught(rng):
    graph = _graph(rng, tf.reduce_mean)
    out = passes.opencv_global_pool1d(graph, ctx(opencv=True))
    by_name(out)["out"].op = "Max"  # the wrong pooling
    x = rng.normal(size=(1, 8, 3)).astype(np.float32)
    with pytest.raises(AssertionError, match="differs"):
        assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))


def test_global_pool1d_leaves_other_axes(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 8, 3], name="x")
        tf.reduce_mean(x, axis=2, name="out")
    graph = g.as_graph_def()
    assert passes.opencv_global_pool1d(graph, ctx(opencv=True)) is graph
