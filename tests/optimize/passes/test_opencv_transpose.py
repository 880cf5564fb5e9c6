"""Tests for the ``opencv_transpose`` pass (kfreeze/optimize/passes/opencv_transpose.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, ops, run
from tests.optimize.opencv_check import assert_opencv_matches, opencv_fails


def _graph(rng, perm=(0, 2, 1, 3)):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4, 6, 3], name="x")
        y = tf.nn.conv2d(x, tf.constant(rng.normal(size=(1, 1, 3, 3)).astype(np.float32)), 1, "VALID")
        tf.transpose(y, perm, name="out")
    return g.as_graph_def()


def test_transpose_swap_hw_becomes_two_opencv_accepts(rng):
    graph = _graph(rng)
    assert "opencv_transpose" not in dict(passes_for(ctx()))
    out = passes.opencv_transpose(graph, ctx(opencv=True))
    assert ops(out)["Transpose"] == 2 and by_name(out)["out"].op == "Transpose"
    x = rng.normal(size=(1, 4, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(run(out, {"x:0": x}), run(graph, {"x:0": x}))
    assert "permutations" in opencv_fails(graph, {"x": x})
    assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))


def test_transpose_a_broken_rewrite_is_caught(rng):
    graph = _graph(rng)
    out = passes.opencv_transpose(graph, ctx(opencv=True))
    nodes = by_name(out)
    first = nodes[nodes["out"].input[0]]
    perm = nodes[first.input[1]].attr["value"].tensor
    perm.tensor_content = np.asarray([0, 3, 1, 2], np.int32).tobytes()  # NHWC -> NCHW: no swap at all
    x = rng.normal(size=(1, 4, 6, 3)).astype(np.float32)
    with pytest.raises(AssertionError, match="differs"):
        assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))


def test_transpose_other_perms_left(rng):
    graph = _graph(rng, (0, 3, 1, 2))
    assert passes.opencv_transpose(graph, ctx(opencv=True)) is graph
