"""Tests for the ``opencv_split_reshape`` pass (kfreeze/optimize/passes/opencv_split_reshape.py)."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, run
from tests.optimize.opencv_check import assert_opencv_matches, opencv_fails


def _decoder(rng):
    """Dense(3*3*4) -> ReLU -> (Reshape + UpSampling2D's first ExpandDims, merged) -> Tile chain -> conv."""
    with tf.Graph().as_default() as g:
        z = tf.compat.v1.placeholder(tf.float32, [1, 5], name="x")
        y = tf.nn.relu(tf.matmul(z, rng.normal(size=(5, 36)).astype(np.float32)))
        y = tf.tile(tf.reshape(y, [1, 3, 1, 3, 4], name="merged"), [1, 1, 2, 1, 1])
        y = tf.reshape(y, [1, 6, 3, 4])
        y = tf.tile(tf.reshape(y, [1, 6, 3, 1, 4]), [1, 1, 1, 2, 1])
        y = tf.reshape(y, [1, 6, 6, 4])
        tf.nn.conv2d(y, rng.normal(size=(3, 3, 4, 2)).astype(np.float32), 1, "SAME", name="out")
    return g.as_graph_def()


def test_split_reshape_gives_the_image_back_to_the_other_passes(rng):
    graph = _decoder(rng)
    c = ctx(opencv=True)
    assert "opencv_split_reshape" not in dict(passes_for(ctx()))
    out = passes.opencv_split_reshape(graph, c)
    image = by_name(out)[by_name(out)["merged"].input[0]]
    assert image.op == "Reshape" and by_name(out)[image.input[1]].attr["value"].tensor.tensor_content
    x = rng.normal(size=(1, 5)).astype(np.float32)
    ref = run(graph, {"x:0": x})
    np.testing.assert_array_equal(run(out, {"x:0": x}), ref)
    done = passes.opencv_upsampling(passes.opencv_dense_reshape(out, c), c)
    assert "Tile" not in {n.op for n in done.node}
    assert "Tile" in {n.op for n in passes.opencv_upsampling(passes.opencv_dense_reshape(graph, c), c).node}
    assert opencv_fails(graph, {"x": x})
    assert_opencv_matches(done, {"x": x}, ref)


def test_split_reshape_leaves_a_reshape_that_is_no_repeat(rng):
    with tf.Graph().as_default() as g:
        z = tf.compat.v1.placeholder(tf.float32, [1, 12], name="x")
        tf.reshape(z, [1, 3, 1, 2, 2], name="out")  # not read by a Tile
    graph = g.as_graph_def()
    assert passes.opencv_split_reshape(graph, ctx(opencv=True)) is graph
