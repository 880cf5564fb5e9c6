"""Tests for the ``dedupe_constants`` pass (kfreeze/optimize/passes/dedupe_constants.py)."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize import passes
from kfreeze.tfenv import tf
from tests.optimize.helpers import ctx, ops, by_name, same_numbers


def test_dedupe_constants_merges_equal_values_only(rng7):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 2, 2, 3], name="x")
        a = tf.concat([x, x], axis=3, name="cat_a")
        b = tf.concat([a, x], axis=3, name="cat_b")
        c = tf.concat([b[:, 0], b[:, 1]], axis=2, name="cat_c")  # another axis value
        tf.identity(c, name="out")
    graph = passes.dense_constants(g.as_graph_def(), ctx())
    out = passes.dedupe_constants(graph, ctx())
    axis_a = by_name(out)["cat_a"].input[2]
    assert by_name(out)["cat_b"].input[2] == axis_a  # both read the first by name
    assert by_name(out)["cat_c"].input[2] != axis_a
    assert ops(out)["Const"] < ops(graph)["Const"]
    same_numbers(out, graph, rng7.normal(size=[1, 2, 2, 3]).astype(np.float32))
