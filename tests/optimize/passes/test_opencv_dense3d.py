"""Tests for the ``opencv_dense3d`` pass (kfreeze/optimize/passes/opencv_dense3d.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, ops, run
from tests.optimize.opencv_check import assert_opencv_matches, opencv_fails


def _graph(rng, kind):
    w = rng.normal(size=(6, 3)).astype(np.float32)
    b = rng.normal(size=3).astype(np.float32)
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4, 6], name="x")
        if kind == "dense":  # Keras Dense on 3-D: Tensordot's Reshape -> MatMul -> Reshape, then the bias
            y = tf.reshape(tf.matmul(tf.reshape(x, [4, 6]), w), [1, 4, 3])
        else:  # EinsumDense "abc,cd->abd"
            y = tf.raw_ops.BatchMatMulV2(x=x, y=tf.constant(w))
        tf.nn.bias_add(y, b, name="out")
    return g.as_graph_def()


@pytest.mark.parametrize("kind", ["dense", "einsum"])
def test_dense3d_is_a_matmul_with_its_bias(rng, kind):
    graph = _graph(rng, kind)
    assert "opencv_dense3d" not in dict(passes_for(ctx()))
    out = passes.opencv_dense3d(graph, ctx(opencv=True))
    assert "BatchMatMulV2" not in ops(out) and "BiasAdd" not in ops(out) and by_name(out)["out"].op == "Reshape"
    x = rng.normal(size=(1, 4, 6)).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": x}), run(graph, {"x:0": x}), rtol=1e-6, atol=1e-6)
    assert opencv_fails(graph, {"x": x})
    assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))


def test_dense3d_a_broken_rewrite_is_caught(rng):
    graph = _graph(rng, "dense")
    out = passes.opencv_dense3d(graph, ctx(opencv=True))
    add = next(n for n in out.node if n.op == "Add")
    by_name(out)[add.input[1]].attr["value"].tensor.tensor_content = np.zeros(3, np.float32).tobytes()  # bias lost
    x = rng.normal(size=(1, 4, 6)).astype(np.float32)
    with pytest.raises(AssertionError, match="differs"):
        assert_opencv_matches(out, {"x": x}, run(graph, {"x:0": x}))


def test_dense3d_leaves_a_conv_bias(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4, 4, 3], name="x")
        y = tf.nn.conv2d(x, tf.constant(rng.normal(size=(1, 1, 3, 2)).astype(np.float32)), 1, "VALID")
        tf.nn.bias_add(y, np.ones(2, np.float32), name="out")
    graph = g.as_graph_def()
    assert passes.opencv_dense3d(graph, ctx(opencv=True)) is graph
