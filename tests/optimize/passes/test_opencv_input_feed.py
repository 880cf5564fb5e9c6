"""Tests for the ``opencv_input_feed`` pass (kfreeze/optimize/passes/opencv_input_feed.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import ctx, ops, run
from tests.optimize.opencv_check import assert_opencv_matches, opencv_fails


def _expand_conv(rng):
    """Keras' Conv1D as Grappler leaves it: ExpandDims on the input, Conv2D, then a bias on the 4-D result."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 8, 3], name="x")
        w = tf.constant(rng.normal(size=(1, 3, 3, 4)).astype(np.float32))
        y = tf.nn.bias_add(tf.nn.conv2d(tf.expand_dims(x, 1), w, 1, "VALID"), rng.normal(size=4).astype(np.float32))
        tf.squeeze(y, [1], name="out")
    return g.as_graph_def()


def _two_inputs():
    with tf.Graph().as_default() as g:
        a = tf.compat.v1.placeholder(tf.float32, [1, 4, 4, 3], name="a")
        b = tf.compat.v1.placeholder(tf.float32, [1, 4, 4, 3], name="b")
        tf.identity(a * b, name="out")
    return g.as_graph_def()


def test_input_feed_puts_a_layer_between_the_input_and_expand_dims(rng):
    graph = _expand_conv(rng)
    assert "opencv_input_feed" not in dict(passes_for(ctx()))
    out = passes.opencv_input_feed(graph, ctx(opencv=True))
    assert ops(out)["Mul"] == 1 and ops(out)["ExpandDims"] == 1
    x = rng.normal(size=(1, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(run(out, {"x:0": x}), run(graph, {"x:0": x}))  # x * 1 is x
    assert "requiredOutputs" in opencv_fails(graph, {"x": x})
    assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))


def test_input_feed_two_tensor_mul():
    graph = _two_inputs()
    out = passes.opencv_input_feed(graph, ctx(inputs=("a", "b"), opencv=True))
    assert ops(out)["Mul"] == 3
    rng = np.random.default_rng(0)
    feeds = {k: rng.normal(size=(1, 4, 4, 3)).astype(np.float32) for k in "ab"}
    assert opencv_fails(graph, feeds)
    assert_opencv_matches(out, feeds)


def test_input_feed_a_broken_rewrite_is_caught(rng):
    graph = _expand_conv(rng)
    out = passes.opencv_input_feed(graph, ctx(opencv=True))
    for node in out.node:  # the "1" is 2: TF and OpenCV both double, the comparison with the original fails
        if node.name.endswith("/opencv_feed/one"):
            node.attr["value"].tensor.float_val[:] = [2.0]
    x = rng.normal(size=(1, 8, 3)).astype(np.float32)
    with pytest.raises(AssertionError, match="differs"):
        assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))


def test_input_feed_leaves_other_graphs_alone(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4], name="x")
        tf.identity(x * 2.0, name="out")
    graph = g.as_graph_def()
    assert passes.opencv_input_feed(graph, ctx(opencv=True)) is graph
