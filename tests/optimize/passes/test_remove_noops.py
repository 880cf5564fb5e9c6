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


def test_an_exact_cast_round_trip_goes_and_a_lossy_one_stays(rng7):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [2, 3], name="x")
        exact = tf.cast(tf.cast(x * 3.7, tf.float64), tf.float32, name="exact")
        lossy = tf.cast(tf.cast(x * 3.7, tf.float16), tf.float32, name="lossy")
        to_int = tf.cast(tf.cast(x * 3.7, tf.int32), tf.float32, name="to_int")
        tf.identity(exact + lossy + to_int, name="out")
    graph = g.as_graph_def()
    out = passes.remove_noops(graph, ctx())
    casts = sorted(n.name for n in out.node if n.op == "Cast")
    assert casts == ["Cast_1", "Cast_2", "lossy", "to_int"], casts  # only the float64 pair is gone
    x = rng7.normal(size=[2, 3]).astype(np.float32)
    same_numbers(out, graph, x)


def test_a_mul_by_ones_and_an_add_of_zeros_go_unless_they_broadcast(rng7):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 3, 4], name="x")
        y = tf.nn.relu(x + tf.constant(rng7.normal(size=4).astype(np.float32)), name="biased")
        a = tf.add(tf.multiply(y, tf.ones([1, 4]), name="by_ones"), tf.zeros([4]), name="plus_zeros")
        b = tf.multiply(y, tf.ones([2, 3, 4]), name="widening")[:1]  # batch 1 -> 2: a real op
        c = tf.subtract(tf.zeros([4]), y, name="zero_minus")  # -y: not neutral
        d = tf.multiply(y, tf.constant([1.0, 1.0, 1.0, 1.01]), name="almost_one")
        e = tf.raw_ops.RealDiv(x=y, y=tf.ones([3, 1]), name="by_ones_div")
        tf.identity(a + b + c + d + e, name="out")
    graph = g.as_graph_def()
    out = passes.remove_noops(graph, ctx())
    names = {n.name for n in out.node}
    assert not {"by_ones", "plus_zeros", "by_ones_div"} & names
    assert {"widening", "zero_minus", "almost_one"} <= names
    x = rng7.normal(size=[1, 3, 4]).astype(np.float32)
    same_numbers(out, graph, x)


def test_check_numerics_control_inputs_go_with_the_checks(rng7):
    """TF's optimize_for_inference_test: CheckNumerics as control inputs of an add (its Identity gone)."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [2], name="x")
        check = tf.debugging.check_numerics(x, "bad", name="check")
        with tf.control_dependencies([check]):
            y = tf.add(x, 2.5, name="add")
        tf.identity(y * 1.5, name="out")
    graph = g.as_graph_def()
    out = passes.remove_noops(graph, ctx())
    assert "CheckNumerics" not in ops(out) and list(by_name(out)["add"].input) == ["x", "add/y"]
    same_numbers(out, graph, rng7.normal(size=[2]).astype(np.float32))
