"""Tests for the ``opencv_min_max`` pass (kfreeze/optimize/passes/opencv_min_max.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, ops, run
from tests.optimize.opencv_check import assert_opencv_matches, opencv_fails


def _graph(rng, kind):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 5, 5, 3], name="x")
        a = tf.nn.conv2d(x, tf.constant(rng.normal(size=(3, 3, 3, 3)).astype(np.float32)), 1, "SAME")
        b = tf.nn.conv2d(x, tf.constant(rng.normal(size=(1, 1, 3, 3)).astype(np.float32)), 1, "SAME")
        if kind == "relu_max_value":  # Keras ReLU(max_value=1)
            tf.maximum(tf.minimum(tf.nn.relu(a), 1.0), 0.0, name="out")
        elif kind == "max":
            tf.maximum(a, b, name="out")
        elif kind == "min":
            tf.minimum(a, b, name="out")
        elif kind == "leaky":
            tf.maximum(0.2 * a, a, name="out")
    return g.as_graph_def()


@pytest.mark.parametrize("kind", ["relu_max_value", "max", "min"])
def test_min_max_become_ops_opencv_imports(rng, kind):
    graph = _graph(rng, kind)
    assert "opencv_min_max" not in dict(passes_for(ctx()))
    out = passes.opencv_min_max(graph, ctx(opencv=True))
    assert not {"Maximum", "Minimum"} & set(ops(out))
    x = rng.normal(size=(1, 5, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": x}), run(graph, {"x:0": x}), rtol=1e-6, atol=1e-6)
    if kind != "relu_max_value":  # OpenCV's simplifier fuses this one as a clip; Keras' spelling of it fails
        assert kind.capitalize() + "imum" in opencv_fails(graph, {"x": x})
    assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))


def test_min_max_a_broken_rewrite_is_caught(rng):
    graph = _graph(rng, "max")
    out = passes.opencv_min_max(graph, ctx(opencv=True))
    nodes = by_name(out)
    nodes["out"].op = "Sub"  # Relu(a - b) - b: not max(a, b)
    x = rng.normal(size=(1, 5, 5, 3)).astype(np.float32)
    with pytest.raises(AssertionError, match="differs"):
        assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))


def test_min_max_keeps_opencvs_leaky_relu_pattern(rng):
    graph = _graph(rng, "leaky")
    assert passes.opencv_min_max(graph, ctx(opencv=True)) is not None
    assert ops(passes.opencv_min_max(graph, ctx(opencv=True)))["Maximum"] == 1
