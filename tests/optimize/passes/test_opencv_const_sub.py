"""Tests for the ``opencv_const_sub`` pass (kfreeze/optimize/passes/opencv_const_sub.py)."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, run
from tests.optimize.opencv_check import assert_opencv_matches, opencv_output, rel


def _one_minus(rng):
    """A GRU's ``1 - z`` on a gate computed from the input."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 3], name="x")
        z = tf.sigmoid(tf.matmul(x, tf.constant(rng.normal(size=(3, 4)).astype(np.float32))))
        tf.raw_ops.Sub(x=tf.constant(1.0), y=z, name="out")
    return g.as_graph_def()


def test_a_constant_minus_a_tensor_is_a_negation_plus_the_constant(rng):
    graph = _one_minus(rng)
    assert "opencv_const_sub" not in dict(passes_for(ctx()))
    out = passes.opencv_const_sub(graph, ctx(opencv=True))
    assert by_name(out)["out"].op == "Add" and "Sub" not in {n.op for n in out.node}
    feeds = {"x": rng.normal(size=(1, 3)).astype(np.float32)}
    ref = run(graph, {"x:0": feeds["x"]})
    np.testing.assert_array_equal(run(out, {"x:0": feeds["x"]}), ref)  # -z + 1 is 1 - z, bit for bit
    assert rel(ref, opencv_output(graph, feeds)) > 0.1  # OpenCV computed z - 1
    assert_opencv_matches(out, feeds, ref)


def test_a_tensor_minus_a_constant_stays(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 3], name="x")
        tf.raw_ops.Sub(x=tf.sigmoid(x), y=tf.constant(1.0), name="out")
    graph = g.as_graph_def()
    assert passes.opencv_const_sub(graph, ctx(opencv=True)) is graph
