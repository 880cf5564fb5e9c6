"""Tests for the ``keepdims_mean`` pass (kfreeze/optimize/passes/keepdims_mean.py)."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize import passes
from kfreeze.tfenv import tf
from tests.optimize.helpers import ctx, ops, by_name, const, same_numbers


def test_keepdims_mean_replaces_mean_and_reshape(rng7):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 5, 5, 6], name="x")
        se = tf.reshape(tf.reduce_mean(x, axis=[1, 2]), [-1, 1, 1, 6], name="se_reshape")
        tf.identity(tf.nn.conv2d(se, const(rng7, 1, 1, 6, 2), 1, "VALID"), name="out")
    graph = g.as_graph_def()
    out = passes.keepdims_mean(graph, ctx())
    assert "Reshape" not in ops(out) and ops(out)["Mean"] == 1
    mean = by_name(out)["se_reshape"]
    assert mean.op == "Mean" and mean.attr["keep_dims"].b
    same_numbers(out, graph, rng7.normal(size=[1, 5, 5, 6]).astype(np.float32))


def test_keepdims_mean_leaves_a_reshape_that_moves_data(rng7):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 5, 5, 6], name="x")
        tf.identity(tf.reshape(tf.reduce_mean(x, axis=[1, 2]), [-1, 2, 3, 1]), name="out")
    graph = g.as_graph_def()
    assert passes.keepdims_mean(graph, ctx()) is graph
