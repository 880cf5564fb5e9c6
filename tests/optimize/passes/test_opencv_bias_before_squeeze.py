"""Tests for the ``opencv_bias_before_squeeze`` pass (kfreeze/optimize/passes/opencv_bias_before_squeeze.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, run
from tests.optimize.opencv_check import assert_opencv_matches, opencv_fails


def _conv1d(rng, squeeze_axis=1):
    """Keras' Conv1D: a Mul before the ExpandDims (what opencv_input_feed adds), Squeeze, then the BiasAdd."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 8, 3], name="x")
        w = tf.constant(rng.normal(size=(1, 3, 3, 4)).astype(np.float32))
        y = tf.nn.conv2d(tf.expand_dims(x * 1.0, 1), w, 1, "VALID", name="conv")
        tf.nn.bias_add(tf.squeeze(y, [squeeze_axis], name="sq"), rng.normal(size=4).astype(np.float32), name="out")
    return g.as_graph_def()


def test_bias_before_squeeze_moves_the_bias_onto_the_conv(rng):
    graph = _conv1d(rng)
    assert "opencv_bias_before_squeeze" not in dict(passes_for(ctx()))
    out = passes.opencv_bias_before_squeeze(graph, ctx(opencv=True))
    nodes = by_name(out)
    assert nodes["out"].op == "Squeeze" and nodes["sq"].op == "BiasAdd" and nodes["sq"].input[0] == "conv"
    x = rng.normal(size=(1, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": x}), run(graph, {"x:0": x}), rtol=1e-6, atol=1e-6)
    assert opencv_fails(graph, {"x": x})
    assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))


def test_bias_before_squeeze_a_broken_rewrite_is_caught(rng):
    graph = _conv1d(rng)
    out = passes.opencv_bias_before_squeeze(graph, ctx(opencv=True))
    nodes = by_name(out)
    bias = nodes[nodes["sq"].input[1]].attr["value"].tensor  # the bias lost on the way: zeros
    bias.tensor_content = np.zeros(4, np.float32).tobytes()
    x = rng.normal(size=(1, 8, 3)).astype(np.float32)
    with pytest.raises(AssertionError, match="differs"):
        assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))


def test_bias_before_squeeze_keeps_a_squeezed_last_axis(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4, 3, 2], name="x")
        y = tf.nn.conv2d(x, tf.constant(rng.normal(size=(1, 1, 2, 1)).astype(np.float32)), 1, "VALID", name="conv")
        tf.nn.bias_add(tf.squeeze(y, [3]), rng.normal(size=3).astype(np.float32), name="out")
    graph = g.as_graph_def()
    assert passes.opencv_bias_before_squeeze(graph, ctx(opencv=True)) is graph
