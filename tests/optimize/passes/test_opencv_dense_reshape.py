"""Tests for the ``opencv_dense_reshape`` pass (kfreeze/optimize/passes/opencv_dense_reshape.py)."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, run
from tests.optimize.opencv_check import assert_opencv_matches, opencv_fails


def _project_and_reshape(rng, shape=(3, 4, 5), scale=False):
    """DCGAN's head as optimize leaves it: Dense(H*W*C) + bias (BatchNorm folded in), LeakyReLU, Reshape,
    a conv; ``scale``: a BatchNorm's scale and shift after the activation, which cannot fold."""
    h, w, c = shape
    n = h * w * c
    with tf.Graph().as_default() as g:
        z = tf.compat.v1.placeholder(tf.float32, [1, 6], name="x")
        y = tf.nn.bias_add(tf.matmul(z, rng.normal(size=(6, n)).astype(np.float32)), rng.normal(size=n).astype(np.float32))
        if scale:
            y = y * rng.uniform(0.5, 1.5, n).astype(np.float32) + rng.normal(0, 0.3, n).astype(np.float32)
        y = tf.reshape(tf.nn.leaky_relu(y, 0.2), [1, h, w, c], name="img")
        tf.nn.conv2d(y, rng.normal(size=(2, 2, c, 3)).astype(np.float32), 1, "SAME", name="out")
    return g.as_graph_def()


def test_dense_reshape_puts_the_features_channel_major(rng):
    graph = _project_and_reshape(rng)
    assert "opencv_dense_reshape" not in dict(passes_for(ctx()))
    out = passes.opencv_dense_reshape(graph, ctx(opencv=True))
    nodes = by_name(out)
    assert nodes["img"].op == "Transpose" and nodes[nodes["img"].input[0]].op == "Reshape"
    x = rng.normal(size=(1, 6)).astype(np.float32)
    ref = run(graph, {"x:0": x})
    np.testing.assert_allclose(run(out, {"x:0": x}), ref, rtol=1e-5, atol=1e-5)
    assert opencv_fails(graph, {"x": x})
    assert_opencv_matches(out, {"x": x}, ref)


def test_dense_reshape_permutes_the_per_feature_constants_too(rng):
    """The scale and shift after the activation are permuted with the columns: the same numbers in TF.
    (OpenCV 4.14 still fails on this form: its layout guess for the Add takes the NHWC its constant
    inherits from the conv, and it permutes the 2-D blob as 4-D.)"""
    graph = _project_and_reshape(rng, (4, 2, 3), scale=True)
    out = passes.opencv_dense_reshape(graph, ctx(opencv=True))
    assert by_name(out)["img"].op == "Transpose"
    x = rng.normal(size=(1, 6)).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": x}), run(graph, {"x:0": x}), rtol=1e-5, atol=1e-5)


def test_dense_reshape_leaves_a_reshape_it_cannot_reorder(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 24], name="x")
        tf.reshape(tf.nn.relu(x), [1, 2, 3, 4], name="out")  # no MatMul to permute
    graph = g.as_graph_def()
    assert passes.opencv_dense_reshape(graph, ctx(opencv=True)) is graph
    graph = _project_and_reshape(rng)
    # the Dense read by something else too (an output): its order cannot change
    assert passes.opencv_dense_reshape(graph, ctx(opencv=True, outputs=("out", "LeakyRelu"))) is graph
    with tf.Graph().as_default() as g:
        z = tf.compat.v1.placeholder(tf.float32, [1, 6], name="x")
        y = tf.matmul(z, rng.normal(size=(6, 12)).astype(np.float32))
        tf.reshape(y, [1, 1, 3, 4], name="out")  # [N, 1, W, C]: OpenCV's own swap reads it right
    graph = g.as_graph_def()
    assert passes.opencv_dense_reshape(graph, ctx(opencv=True)) is graph
