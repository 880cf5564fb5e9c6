"""Tests for the ``opencv_squeeze_expand`` pass (kfreeze/optimize/passes/opencv_squeeze_expand.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, ops, run
from tests.optimize.opencv_check import assert_opencv_matches, opencv_fails


def _graph(rng):
    """Conv1D -> UpSampling1D as opencv_upsampling writes it: Squeeze, then ExpandDims on the same axis."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 8, 3], name="x")
        w = tf.constant(rng.normal(size=(1, 3, 3, 4)).astype(np.float32))
        y = tf.squeeze(tf.nn.conv2d(tf.expand_dims(x * 1.0, 1), w, 1, "SAME", name="conv"), [1], name="sq")
        up = tf.raw_ops.ResizeNearestNeighbor(images=tf.expand_dims(y, 1), size=[1, 16], name="up")
        tf.squeeze(up, [1], name="out")
    return g.as_graph_def()


def test_squeeze_expand_keeps_the_tensor_4d(rng):
    graph = _graph(rng)
    assert "opencv_squeeze_expand" not in dict(passes_for(ctx()))
    out = passes.opencv_squeeze_expand(graph, ctx(opencv=True))
    assert ops(out)["ExpandDims"] == 1 and "sq" not in by_name(out)
    x = rng.normal(size=(1, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(run(out, {"x:0": x}), run(graph, {"x:0": x}))
    assert not _matches(graph, x)
    assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))


def _matches(graph, x) -> bool:
    try:
        assert_opencv_matches(graph, {"x": x})
    except AssertionError:
        return False
    return True


def test_squeeze_expand_a_broken_rewrite_is_caught(rng):
    graph = _graph(rng)
    out = passes.opencv_squeeze_expand(graph, ctx(opencv=True))
    by_name(out)["up"].input[0] = by_name(out)["conv"].input[0]  # the resize reads the conv's input, not the conv
    x = rng.normal(size=(1, 8, 3)).astype(np.float32)
    with pytest.raises(AssertionError):
        assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))


def test_squeeze_expand_other_axis_left_alone(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 1, 4, 3], name="x")
        tf.expand_dims(tf.squeeze(x, [1]), 2, name="out")
    graph = g.as_graph_def()
    assert passes.opencv_squeeze_expand(graph, ctx(opencv=True)) is graph
