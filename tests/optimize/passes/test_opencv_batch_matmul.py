"""Tests for the ``opencv_batch_matmul`` pass (kfreeze/optimize/passes/opencv_batch_matmul.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, ops, run
from tests.optimize.opencv_check import assert_opencv_matches, opencv_fails

M, N, K = 4, 5, 6


def _attention():
    """Keras' Attention as traced: softmax(scale * q v^T) v, two BatchMatMulV2 of computed tensors."""
    with tf.Graph().as_default() as g:
        q = tf.compat.v1.placeholder(tf.float32, [1, M, K], name="q")
        v = tf.compat.v1.placeholder(tf.float32, [1, N, K], name="v")
        scores = tf.raw_ops.BatchMatMulV2(x=q, y=v, adj_y=True) * 1.3
        tf.raw_ops.BatchMatMulV2(x=tf.nn.softmax(scores), y=v, name="out")
    return passes.dense_constants(g.as_graph_def(), ctx(inputs=("q", "v"), opencv=True))


def _feeds(rng):
    return {"q": rng.normal(size=(1, M, K)).astype(np.float32), "v": rng.normal(size=(1, N, K)).astype(np.float32)}


def test_attention_matmuls_become_2d_matmuls_by_constants(rng):
    graph = _attention()
    c = ctx(inputs=("q", "v"), opencv=True)
    assert "opencv_batch_matmul" not in dict(passes_for(ctx(inputs=("q", "v"))))
    out = passes.opencv_batch_matmul(graph, c)
    assert "BatchMatMulV2" not in ops(out) and by_name(out)["out"].op == "Reshape"
    feeds = _feeds(rng)
    tf_feeds = {f"{k}:0": v for k, v in feeds.items()}
    ref = run(graph, tf_feeds)
    np.testing.assert_allclose(run(out, tf_feeds), ref, rtol=1e-5, atol=1e-6)  # the order of the k sums only
    scores = feeds["q"] @ feeds["v"].transpose(0, 2, 1) * 1.3
    w = np.exp(scores - scores.max(-1, keepdims=True))
    np.testing.assert_allclose(ref, (w / w.sum(-1, keepdims=True)) @ feeds["v"], rtol=1e-5, atol=1e-6)
    assert "BatchMatMulV2" in opencv_fails(graph, feeds)
    assert_opencv_matches(out, feeds, ref)


def test_a_broken_rewrite_is_caught(rng):
    out = passes.opencv_batch_matmul(_attention(), ctx(inputs=("q", "v"), opencv=True))
    feeds = _feeds(rng)
    ref = run(_attention(), {f"{k}:0": v for k, v in feeds.items()})
    for node in out.node:  # read q's features in the wrong order
        if node.name.endswith("opencv_spread_weights"):
            node.attr["value"].tensor.tensor_content = np.ascontiguousarray(
                tf.make_ndarray(node.attr["value"].tensor)[::-1]).tobytes()
    with pytest.raises(AssertionError, match="differs"):
        assert_opencv_matches(out, feeds, ref)


def test_batches_and_unknown_shapes_stay():
    with tf.Graph().as_default() as g:
        a = tf.compat.v1.placeholder(tf.float32, [2, M, K], name="q")
        b = tf.compat.v1.placeholder(tf.float32, [2, K, N], name="v")
        tf.raw_ops.BatchMatMulV2(x=a, y=b, name="out")
    graph = g.as_graph_def()
    assert passes.opencv_batch_matmul(graph, ctx(inputs=("q", "v"), opencv=True)) is graph
