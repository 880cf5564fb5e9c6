"""Tests for the ``dense_constants`` pass (kfreeze/optimize/passes/dense_constants.py)."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize import passes
from kfreeze.tfenv import tf
from tests.optimize.helpers import ctx, by_name, const, same_numbers


def test_dense_constants_writes_tensor_content(rng7):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [2, 5], name="x")
        tf.add(x, tf.constant(0.5, shape=[5]), name="out")  # a splat: float_val holds one 0.5
    graph = g.as_graph_def()
    splat = next(n for n in graph.node if n.op == "Const")
    assert not splat.attr["value"].tensor.tensor_content
    out = passes.dense_constants(graph, ctx())
    const = by_name(out)[splat.name].attr["value"].tensor
    assert const.tensor_content and not const.float_val
    np.testing.assert_array_equal(tf.make_ndarray(const), np.full([5], 0.5, np.float32))
    same_numbers(out, graph, rng7.normal(size=[2, 5]).astype(np.float32))
    assert passes.dense_constants(out, ctx()) is out


def test_dense_constants_leaves_scalars_alone():
    """OpenCV reads scalar axes (ConcatV2, Mean) from int_val; re-encoding them breaks its importer."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 2, 2, 3], name="x")
        tf.identity(tf.concat([x, x], axis=3), name="out")
    graph = g.as_graph_def()
    assert passes.dense_constants(graph, ctx()) is graph
