"""Tests for the ``opencv_matmul_sum`` pass (kfreeze/optimize/passes/opencv_matmul_sum.py)."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, run
from tests.optimize.opencv_check import assert_opencv_matches, opencv_fails


def _step(rng, scale=None):
    """One unrolled RNN step: ``x @ W + b`` plus ``tanh(x @ V) @ U`` (or a state times a constant), as Add."""
    const = lambda *s: tf.constant(rng.normal(size=s).astype(np.float32))  # noqa: E731
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 3], name="x")
        a = tf.nn.bias_add(tf.matmul(x, const(3, 4)), const(4))
        h = tf.tanh(tf.matmul(x, const(3, 4)))
        b = tf.matmul(h, const(4, 4)) if scale is None else tf.multiply(h, const(1, 4))
        tf.raw_ops.Add(x=a, y=b, name="out")
    return g.as_graph_def()


def test_a_matmul_added_to_a_tensor_becomes_addn(rng):
    graph = _step(rng)
    assert "opencv_matmul_sum" not in dict(passes_for(ctx()))
    out = passes.opencv_matmul_sum(graph, ctx(opencv=True))
    assert by_name(out)["out"].op == "AddN"
    feeds = {"x": rng.normal(size=(1, 3)).astype(np.float32)}
    ref = run(graph, {"x:0": feeds["x"]})
    np.testing.assert_array_equal(run(out, {"x:0": feeds["x"]}), ref)
    assert "Const input blob" in opencv_fails(graph, feeds)  # the Add taken for the MatMul's bias
    assert_opencv_matches(out, feeds, ref)


def test_a_product_with_a_constant_added_to_a_tensor_becomes_addn(rng):
    graph = _step(rng, scale=True)  # an LSTM's forget gate times its (constant) first state
    out = passes.opencv_matmul_sum(graph, ctx(opencv=True))
    assert by_name(out)["out"].op == "AddN"
    feeds = {"x": rng.normal(size=(1, 3)).astype(np.float32)}
    assert opencv_fails(graph, feeds)
    assert_opencv_matches(out, feeds, run(graph, {"x:0": feeds["x"]}))


def test_an_add_of_a_constant_stays_the_matmuls_bias(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 3], name="x")
        tf.raw_ops.Add(x=tf.matmul(x, tf.ones([3, 4])), y=tf.ones([4]), name="out")
    graph = g.as_graph_def()
    assert passes.opencv_matmul_sum(graph, ctx(opencv=True)) is graph
