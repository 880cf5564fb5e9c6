"""Tests for the ``opencv_concat_layout`` pass (kfreeze/optimize/passes/opencv_concat_layout.py)."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, run
from tests.optimize.opencv_check import opencv_fails, opencv_output, rel


def _concat_inputs(feed=True):
    """Concatenate()([a, b]) of two model inputs, each through opencv_input_feed's Mul by one."""
    with tf.Graph().as_default() as g:
        a = tf.compat.v1.placeholder(tf.float32, [1, 5, 4, 3], name="a")
        b = tf.compat.v1.placeholder(tf.float32, [1, 5, 4, 2], name="b")
        if feed:
            a, b = tf.multiply(a, 1.0, name="a/opencv_feed"), tf.multiply(b, 1.0, name="b/opencv_feed")
        tf.concat([a, b], -1, name="out")
    return g.as_graph_def()


def test_concat_layout_makes_opencv_join_the_channels(rng):
    graph = _concat_inputs()
    c = ctx(inputs=("a", "b"), opencv=True)
    assert "opencv_concat_layout" not in dict(passes_for(ctx(inputs=("a", "b"))))
    out = passes.opencv_concat_layout(graph, c)
    assert all(by_name(out)[i].op == "BiasAdd" for i in by_name(out)["out"].input[:-1])
    feeds = {"a": rng.normal(size=(1, 5, 4, 3)).astype(np.float32), "b": rng.normal(size=(1, 5, 4, 2)).astype(np.float32)}
    ref = run(graph, {f"{k}:0": v for k, v in feeds.items()})
    np.testing.assert_array_equal(run(out, {f"{k}:0": v for k, v in feeds.items()}), ref)
    assert "Inconsistent shape" in opencv_fails(graph, feeds)  # OpenCV joins the widths (4 and 4), not 3 + 2 channels
    assert rel(ref, opencv_output(out, feeds)) <= 1e-6


def test_concat_layout_leaves_a_concat_of_computed_tensors(rng):
    with tf.Graph().as_default() as g:
        a = tf.compat.v1.placeholder(tf.float32, [1, 5, 4, 3], name="x")
        y = tf.nn.conv2d(a, rng.normal(size=(1, 1, 3, 2)).astype(np.float32), 1, "SAME")
        tf.concat([y, a], -1, name="out")
    graph = g.as_graph_def()
    assert passes.opencv_concat_layout(graph, ctx(opencv=True)) is graph
