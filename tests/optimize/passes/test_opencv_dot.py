"""Tests for the ``opencv_dot`` pass (kfreeze/optimize/passes/opencv_dot.py)."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, run
from tests.optimize.opencv_check import assert_opencv_matches, opencv_fails


def _dot(n=6, adj=False):
    """Keras' Dot(axes=1)([a, b]) on [1, n] inputs (after opencv_input_feed's Mul by one)."""
    with tf.Graph().as_default() as g:
        a = tf.compat.v1.placeholder(tf.float32, [1, n], name="a")
        b = tf.compat.v1.placeholder(tf.float32, [1, n], name="b")
        y = tf.raw_ops.BatchMatMulV2(x=tf.expand_dims(a * 1.0, 1), y=tf.expand_dims(b * 1.0, 2 if not adj else 1),
                                     adj_y=adj)
        tf.squeeze(y, [1], name="out")
    return g.as_graph_def()


def test_dot_is_a_product_and_a_matmul_by_ones(rng):
    graph = _dot()
    c = ctx(inputs=("a", "b"), opencv=True)
    assert "opencv_dot" not in dict(passes_for(ctx(inputs=("a", "b"))))
    out = passes.opencv_dot(graph, c)
    ops = {n.op for n in out.node}
    assert by_name(out)["out"].op == "MatMul" and "BatchMatMulV2" not in ops
    feeds = {"a": rng.normal(size=(1, 6)).astype(np.float32), "b": rng.normal(size=(1, 6)).astype(np.float32)}
    ref = run(graph, {f"{k}:0": v for k, v in feeds.items()})
    np.testing.assert_allclose(run(out, {f"{k}:0": v for k, v in feeds.items()}), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ref, np.sum(feeds["a"] * feeds["b"], axis=1, keepdims=True), rtol=1e-5)
    assert opencv_fails(graph, feeds)
    assert_opencv_matches(out, feeds, ref)


def test_dot_leaves_other_batched_matmuls():
    with tf.Graph().as_default() as g:  # attention scores: matrices, not two vectors
        q = tf.compat.v1.placeholder(tf.float32, [1, 4, 6], name="a")
        k = tf.compat.v1.placeholder(tf.float32, [1, 5, 6], name="b")
        tf.squeeze(tf.raw_ops.BatchMatMulV2(x=q[:, :1], y=k, adj_y=True), [1], name="out")
    graph = g.as_graph_def()
    assert passes.opencv_dot(graph, ctx(inputs=("a", "b"), opencv=True)) is graph
    graph = _dot(adj=True)  # Keras' form only (adj_y false)
    assert passes.opencv_dot(graph, ctx(inputs=("a", "b"), opencv=True)) is graph
