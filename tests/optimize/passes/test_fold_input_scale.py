"""Tests for the ``fold_input_scale`` pass (kfreeze/optimize/passes/fold_input_scale.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import passes
from kfreeze.tfenv import tf
from tests.optimize.helpers import ctx, ops, by_name, const, same_numbers, scale_graph


@pytest.mark.parametrize("tail", ["relu_conv", "conv", "depthwise", "relu_mean_matmul", "avgpool_conv"])
def test_fold_input_scale_moves_the_mul_into_the_weights(rng7, tail):
    graph = scale_graph(rng7, rng7.uniform(0.5, 2.0, size=[4]), tail)
    out = passes.fold_input_scale(graph, ctx())
    assert "bn_mul" not in by_name(out) and "Mul" not in ops(out)
    assert ops(out).get("Relu", 0) == ops(graph).get("Relu", 0)
    same_numbers(out, graph, rng7.normal(size=[1, 6, 6, 4]).astype(np.float32))


def test_fold_input_scale_needs_a_positive_scale_to_cross_relu(rng7):
    scale = rng7.uniform(0.5, 2.0, size=[4])
    scale[1] = -1.0
    graph = scale_graph(rng7, scale, "relu_conv")
    assert passes.fold_input_scale(graph, ctx()) is graph
    # without the Relu a negative scale folds too
    out = passes.fold_input_scale(scale_graph(rng7, scale, "conv"), ctx())
    assert "Mul" not in ops(out)


def test_fold_input_scale_leaves_a_broadcasting_mul(rng7):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 6, 6, 1], name="x")
        y = x * tf.constant(np.array([1.0, 2.0, 3.0, 4.0], np.float32))  # 1 channel -> 4
        tf.identity(tf.nn.conv2d(y, const(rng7, 1, 1, 4, 2), 1, "VALID"), name="out")
    graph = g.as_graph_def()
    assert passes.fold_input_scale(graph, ctx()) is graph


def test_fold_input_scale_leaves_a_mul_with_two_consumers(rng7):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 6, 6, 4], name="x")
        y = x * tf.constant(np.full([4], 2.0, np.float32))
        tf.identity(tf.nn.conv2d(y, const(rng7, 1, 1, 4, 4), 1, "VALID") + y, name="out")
    graph = g.as_graph_def()
    assert passes.fold_input_scale(graph, ctx()) is graph
