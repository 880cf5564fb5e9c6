"""Tests for the ``remove_noops`` pass (kfreeze/optimize/passes/remove_noops.py)."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize import passes
from kfreeze.tfenv import tf
from tests.optimize.helpers import ctx, ops, by_name, same_numbers


def test_remove_noops_drops_ops_that_change_nothing(rng7):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [2, 3, 4], name="x")
        y = tf.identity(x * 2.0, name="ident")
        y = tf.cast(y, tf.float32)  # tf.cast to the same type is already a no-op in Python: build it by hand
        y = tf.raw_ops.Cast(x=y, DstT=tf.float32, name="cast")
        y = tf.transpose(y, [0, 1, 2], name="transpose")
        y = tf.pad(y, [[0, 0], [0, 0], [0, 0]], name="pad")
        y = tf.reshape(y, [2, 3, 4], name="same_reshape")
        tf.nn.relu(y, name="out")
    graph = g.as_graph_def()
    out = passes.remove_noops(graph, ctx())
    assert not {"Identity", "Cast", "Transpose", "Pad", "Reshape"} & set(ops(out)), ops(out)
    same_numbers(out, graph, rng7.normal(size=[2, 3, 4]).astype(np.float32))


def test_remove_noops_merges_a_reshape_chain(rng7):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 2, 3, 4], name="x")
        y = tf.reshape(x, [-1, 24])
        y = tf.expand_dims(y, 1)
        y = tf.squeeze(y, [1])
        y = tf.reshape(y, [-1, 6, 4], name="last")
        tf.nn.relu(y, name="out")
    graph = g.as_graph_def()
    out = passes.remove_noops(passes.remove_noops(graph, ctx()), ctx())
    assert ops(out).get("Reshape", 0) == 1 and not {"Squeeze", "ExpandDims"} & set(ops(out)), ops(out)
    assert by_name(out)["last"].op == "Reshape"
    x = rng7.normal(size=[3, 2, 3, 4]).astype(np.float32)
    same_numbers(out, graph, x)


def test_remove_noops_keeps_an_output_identity_and_a_real_transpose(rng7):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [2, 3], name="x")
        tf.identity(tf.transpose(x), name="out")
    graph = g.as_graph_def()
    out = passes.remove_noops(graph, ctx())
    assert ops(out) == ops(graph)


def test_remove_noops_strips_check_numerics_and_gradient_markers(rng7):
    """As TF's optimize_for_inference does (its test_strip_check_numerics... cases)."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [2, 3], name="x")
        y = tf.debugging.check_numerics(x * 2.0, "bad", name="check")
        y = tf.stop_gradient(y, name="stop")
        tf.nn.relu(y, name="out")
    graph = g.as_graph_def()
    out = passes.remove_noops(graph, ctx())
    assert not {"CheckNumerics", "StopGradient"} & set(ops(out)), ops(out)
    same_numbers(out, graph, rng7.normal(size=[2, 3]).astype(np.float32))
