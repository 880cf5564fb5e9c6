"""Tests for the ``opencv_identity_reshape`` pass (kfreeze/optimize/passes/opencv_identity_reshape.py)."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, run
from tests.optimize.opencv_check import assert_opencv_matches


def _pool_reshape_conv(rng):
    """MaxPooling1D then Conv1D after Grappler: a Reshape to the [1, 1, W, C] the pool already gives."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 1, 12, 3], name="x")
        y = tf.nn.max_pool2d(x * 1.0, [1, 2], [1, 2], "VALID")
        y = tf.reshape(y, [1, 1, 6, 3], name="same")
        tf.nn.conv2d(y, rng.normal(size=(1, 3, 3, 4)).astype(np.float32), 1, "VALID", name="out")
    return g.as_graph_def()


def test_identity_reshape_is_dropped(rng):
    graph = _pool_reshape_conv(rng)
    assert "opencv_identity_reshape" not in dict(passes_for(ctx()))
    out = passes.opencv_identity_reshape(graph, ctx(opencv=True))
    assert "same" not in by_name(out) and by_name(out)[by_name(out)["out"].input[0]].op == "MaxPool"
    x = rng.normal(size=(1, 1, 12, 3)).astype(np.float32)
    ref = run(graph, {"x:0": x})
    np.testing.assert_allclose(run(out, {"x:0": x}), ref)
    try:  # OpenCV runs the graph with the Reshape, and gets other numbers
        assert_opencv_matches(graph, {"x": x}, ref)
    except AssertionError as e:
        assert "differs" in str(e), e
    else:
        raise AssertionError("OpenCV matched TF with the identity Reshape in place")
    assert_opencv_matches(out, {"x": x}, ref)


def test_identity_reshape_output_stays_an_identity_and_real_reshapes_stay(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 1, 4, 3], name="x")
        y = tf.reshape(x * 2.0, [1, 1, 4, 3], name="out")
        tf.reshape(y, [1, 4, 1, 3], name="other")
    graph = g.as_graph_def()
    out = passes.opencv_identity_reshape(graph, ctx(opencv=True, outputs=("out", "other")))
    nodes = by_name(out)
    assert nodes["out"].op == "Identity" and nodes["other"].op == "Reshape"
