"""Tests for the ``opencv_norm`` pass (kfreeze/optimize/passes/opencv_norm.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, ops, run
from tests.optimize.opencv_check import assert_opencv_matches, opencv_fails

SHAPES = {"layer": (1, 4, 6), "rms": (1, 4, 6), "unit": (1, 6)}


def _graph(rng, kind):
    """A Dense, then the normalization as Keras 3 writes it (Mean/Sum over -1, Rsqrt, broadcasts)."""
    shape = SHAPES[kind]
    c = shape[-1]
    gamma = rng.uniform(0.5, 1.5, c).astype(np.float32)
    beta = rng.normal(0, 0.3, c).astype(np.float32)
    w = rng.normal(size=(c, c)).astype(np.float32)
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, shape, name="x")
        h = tf.matmul(tf.reshape(x, [-1, c]), w)
        h = tf.reshape(h, shape) if len(shape) == 3 else h
        if kind == "layer":
            mean = tf.reduce_mean(h, -1, keepdims=True)
            var = tf.reduce_mean(tf.math.squared_difference(h, mean), -1, keepdims=True)
            y = (h - mean) * (tf.math.rsqrt(var + 1e-3) * gamma) + beta
        elif kind == "rms":
            y = h * tf.math.rsqrt(tf.reduce_mean(tf.square(h), -1, keepdims=True) + 1e-6) * gamma
        else:
            y = h * tf.minimum(tf.math.rsqrt(tf.reduce_sum(tf.square(h), -1, keepdims=True)), 1e12)
        tf.identity(y, name="out")
    return g.as_graph_def()


@pytest.mark.parametrize("kind", list(SHAPES))
def test_norm_becomes_matmul_arithmetic(rng, kind):
    graph = _graph(rng, kind)
    assert "opencv_norm" not in dict(passes_for(ctx()))
    out = passes.opencv_norm(graph, ctx(opencv=True))
    assert not {"Rsqrt", "Mean", "Sum"} & set(ops(out))
    x = rng.normal(size=SHAPES[kind]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": x}), run(graph, {"x:0": x}), rtol=1e-5, atol=1e-5)
    assert opencv_fails(graph, {"x": x})
    assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))


def test_norm_a_broken_rewrite_is_caught(rng):
    graph = _graph(rng, "layer")
    out = passes.opencv_norm(graph, ctx(opencv=True))
    gamma = next(n for n in out.node if n.name.endswith("/opencv_gamma"))
    gamma.attr["value"].tensor.tensor_content = np.ones(6, np.float32).tobytes()  # the fitted scale lost
    x = rng.normal(size=(1, 4, 6)).astype(np.float32)
    with pytest.raises(AssertionError, match="differs"):
        assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))


def test_norm_leaves_what_is_no_normalization(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4, 6], name="x")
        tf.identity(x * tf.math.rsqrt(tf.reduce_mean(x, -1, keepdims=True) ** 2 + 1.0), name="out")
    graph = g.as_graph_def()
    assert passes.opencv_norm(graph, ctx(opencv=True)) is graph
    assert by_name(graph)["out"].op == "Identity"


def _group_graph(rng):
    """Keras' GroupNormalization (2 groups of 2 channels): Reshape to 5-D, moments over (1, 2, 4), Reshape back."""
    gamma = rng.uniform(0.5, 1.5, (1, 1, 1, 2, 2)).astype(np.float32)
    beta = rng.normal(0, 0.3, (1, 1, 1, 2, 2)).astype(np.float32)
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 5, 5, 4], name="x")
        y = tf.nn.conv2d(x, tf.constant(rng.normal(size=(3, 3, 4, 4)).astype(np.float32)), 1, "SAME")
        z = tf.reshape(y, [-1, 5, 5, 2, 2])
        mean = tf.reduce_mean(z, [1, 2, 4], keepdims=True)
        var = tf.reduce_mean(tf.math.squared_difference(z, mean), [1, 2, 4], keepdims=True)
        z = (z - mean) * tf.math.rsqrt(var + 1e-3) * gamma + beta
        tf.reshape(z, [1, 5, 5, 4], name="out")
    return g.as_graph_def()


def test_norm_group_normalization_is_4d_arithmetic(rng):
    graph = _group_graph(rng)
    out = passes.opencv_norm(graph, ctx(opencv=True))
    assert not {"Rsqrt", "Reshape"} & set(ops(out)) and by_name(out)["out"].op == "Add"
    x = rng.normal(size=(1, 5, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": x}), run(graph, {"x:0": x}), rtol=1e-5, atol=1e-5)
    assert opencv_fails(graph, {"x": x})
    assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))
    by_name(out)[by_name(out)["out"].input[1]].attr["value"].tensor.tensor_content = np.zeros(4, np.float32).tobytes()
    with pytest.raises(AssertionError, match="differs"):  # a broken rewrite: beta lost
        assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))
