"""Tests for the ``opencv_upsampling`` pass (kfreeze/optimize/passes/opencv_upsampling.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, ops, run
from tests.optimize.opencv_check import assert_opencv_matches, opencv_fails


def _repeat(x, k, axis):
    """Keras 3's ops.repeat as it is traced: ExpandDims -> Tile -> Reshape."""
    shape = x.shape.as_list()
    y = tf.tile(tf.expand_dims(x, axis + 1), [1] * (axis + 1) + [k] + [1] * (len(shape) - axis - 1))
    return tf.reshape(y, shape[:axis] + [shape[axis] * k] + shape[axis + 1:])


def _graph(rng, kind):
    with tf.Graph().as_default() as g:
        if kind == "2d":
            x = tf.compat.v1.placeholder(tf.float32, [1, 5, 5, 3], name="x")
            y = tf.nn.conv2d(x, tf.constant(rng.normal(size=(3, 3, 3, 3)).astype(np.float32)), 1, "SAME")
            tf.identity(_repeat(_repeat(y, 2, 1), 3, 2), name="out")
        elif kind == "1d":
            x = tf.compat.v1.placeholder(tf.float32, [1, 6, 3], name="x")
            w = tf.constant(rng.normal(size=(1, 3, 3, 3)).astype(np.float32))
            y = tf.squeeze(tf.nn.conv2d(tf.expand_dims(x * 1.0, 1), w, 1, "SAME"), [1])
            tf.identity(_repeat(y, 2, 1), name="out")
        else:  # RepeatVector
            x = tf.compat.v1.placeholder(tf.float32, [1, 6], name="x")
            y = tf.matmul(x, tf.constant(rng.normal(size=(6, 4)).astype(np.float32)))
            z = tf.tile(tf.reshape(y, [1, 1, 1, 4]), [1, 1, 3, 1])
            tf.identity(tf.reshape(z, [1, 3, 4]), name="out")
    return g.as_graph_def()


SHAPES = {"2d": (1, 5, 5, 3), "1d": (1, 6, 3), "repeat_vector": (1, 6)}


@pytest.mark.parametrize("kind", list(SHAPES))
def test_upsampling_repeat_chains_become_resize_or_concat(rng, kind):
    graph = _graph(rng, kind)
    assert "opencv_upsampling" not in dict(passes_for(ctx()))
    out = passes.opencv_upsampling(graph, ctx(opencv=True))
    if kind == "1d":  # what the pipeline runs next: the conv stays 4-D
        out = passes.opencv_squeeze_expand(out, ctx(opencv=True))
    assert "Tile" not in ops(out)
    x = rng.normal(size=SHAPES[kind]).astype(np.float32)
    np.testing.assert_array_equal(run(out, {"x:0": x}), run(graph, {"x:0": x}))
    assert opencv_fails(graph, {"x": x})
    assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))


def test_upsampling_a_broken_rewrite_is_caught(rng):
    graph = _graph(rng, "2d")
    out = passes.opencv_upsampling(graph, ctx(opencv=True))
    resize = next(n for n in out.node if n.op == "ResizeNearestNeighbor")
    size = by_name(out)[resize.input[1]].attr["value"].tensor
    size.tensor_content = np.asarray([15, 10], np.int32).tobytes()  # the factors swapped: as many values, others
    x = rng.normal(size=SHAPES["2d"]).astype(np.float32)
    with pytest.raises(AssertionError, match="differs"):
        assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))


def test_upsampling_leaves_a_tile_that_is_no_repeat(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4, 4, 3], name="x")
        tf.reshape(tf.tile(x, [1, 2, 1, 1]), [1, 8, 4, 3], name="out")  # the whole image twice, not a repeat
    graph = g.as_graph_def()
    assert passes.opencv_upsampling(graph, ctx(opencv=True)) is graph
    assert by_name(graph)["out"].op == "Reshape"
