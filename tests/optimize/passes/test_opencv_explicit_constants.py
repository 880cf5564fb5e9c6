"""Tests for the ``opencv_explicit_constants`` pass (kfreeze/optimize/passes/opencv_explicit_constants.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, run
from tests.optimize.opencv_check import assert_opencv_matches, opencv_fails


def _graph(rng):
    """A conv, then a StridedSlice whose begin is [0, 0, 0, 0] and a ReLU6-like clip at 0.0, both
    zeros stored as Grappler writes them: no values at all."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 6, 6, 3], name="x")
        y = tf.nn.conv2d(x, tf.constant(rng.normal(size=(3, 3, 3, 3)).astype(np.float32)), 1, "SAME")
        y = tf.strided_slice(y, tf.constant([0, 1, 0, 0], name="begin"), [1, 5, 6, 3], [1, 1, 1, 1])
        tf.raw_ops.ClipByValue(t=y, clip_value_min=tf.constant(0.0, name="zero"), clip_value_max=1.0, name="out")
    graph = g.as_graph_def()
    for node in graph.node:
        if node.name == "zero":
            node.attr["value"].tensor.ClearField("float_val")
    return graph


def test_explicit_constants_writes_implicit_zeros_out(rng):
    graph = _graph(rng)
    assert "opencv_explicit_constants" not in dict(passes_for(ctx()))
    out = passes.opencv_explicit_constants(graph, ctx(opencv=True))
    assert list(by_name(out)["zero"].attr["value"].tensor.float_val) == [0.0]
    x = rng.normal(size=(1, 6, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(run(out, {"x:0": x}), run(graph, {"x:0": x}))
    assert "field.empty" in opencv_fails(graph, {"x": x})
    assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))


def test_explicit_constants_a_broken_rewrite_is_caught(rng):
    graph = _graph(rng)
    out = passes.opencv_explicit_constants(graph, ctx(opencv=True))
    by_name(out)["zero"].attr["value"].tensor.float_val[:] = [0.5]  # a wrong value written out
    x = rng.normal(size=(1, 6, 6, 3)).astype(np.float32)
    with pytest.raises(AssertionError, match="differs"):
        assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))


def test_explicit_constants_leaves_explicit_ones(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 3], name="x")
        tf.identity(x * 2.0, name="out")
    graph = g.as_graph_def()
    assert passes.opencv_explicit_constants(graph, ctx(opencv=True)) is graph
