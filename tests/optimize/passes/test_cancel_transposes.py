"""Tests for the ``cancel_transposes`` pass (tf2onnx's test_optimizers transpose cases, in TF form)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import passes
from kfreeze.tfenv import tf
from tests.optimize.helpers import ctx, ops, same_numbers

NHWC_TO_NCHW, NCHW_TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


@pytest.mark.parametrize("middle", ["relu", "scalar_mul", "chain", "mean_keepdims", "sum_keepdims_neg_axis",
                                    "channel_constant"])
def test_inverse_pairs_around_elementwise_ops_and_reductions_cancel(rng7, middle):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [2, 4, 5, 3], name="x")
        t = tf.transpose(x, NHWC_TO_NCHW)
        if middle == "relu":
            y = tf.nn.relu(t)
        elif middle == "scalar_mul":
            y = t * 3.0
        elif middle == "chain":
            y = tf.tanh(tf.nn.relu(t) + 1.0) - 0.5
        elif middle == "channel_constant":  # a per-channel constant in NCHW layout: [3, 1, 1]
            y = t + tf.constant(rng7.normal(size=(3, 1, 1)).astype(np.float32))
        elif middle == "mean_keepdims":
            y = tf.reduce_mean(t, axis=[2, 3], keepdims=True)
        else:
            y = tf.reduce_sum(t, axis=[-1], keepdims=True)
        y = tf.transpose(y, NCHW_TO_NHWC)
        tf.identity(y * 1.5, name="out")
    graph = g.as_graph_def()
    out = passes.cancel_transposes(graph, ctx())
    assert "Transpose" not in ops(out), ops(out)
    same_numbers(out, graph, rng7.normal(size=[2, 4, 5, 3]).astype(np.float32))


@pytest.mark.parametrize("case", ["not_inverse", "tensor_operand", "two_users", "no_keepdims"])
def test_pairs_that_do_not_cancel_stay(rng7, case):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [2, 4, 5, 3], name="x")
        t = tf.transpose(x, NHWC_TO_NCHW)
        if case == "not_inverse":
            y = tf.transpose(tf.nn.relu(t), NHWC_TO_NCHW)
        elif case == "tensor_operand":  # the other operand is laid out as NCHW: the Transposes matter
            y = tf.transpose(t + tf.ones([1, 3, 1, 1]) * tf.reshape(tf.range(3.0), [1, 3, 1, 1]), NCHW_TO_NHWC)
        elif case == "two_users":
            r = tf.nn.relu(t)
            y = tf.transpose(r, NCHW_TO_NHWC) + tf.reduce_sum(r)
        else:
            y = tf.transpose(tf.expand_dims(tf.expand_dims(tf.reduce_mean(t, axis=[2, 3]), 2), 3), NCHW_TO_NHWC)
        tf.identity(y, name="out")
    graph = g.as_graph_def()
    out = passes.cancel_transposes(graph, ctx())
    assert ops(out).get("Transpose", 0) == ops(graph)["Transpose"]
    same_numbers(out, graph, rng7.normal(size=[2, 4, 5, 3]).astype(np.float32))


def test_a_wrong_axis_mapping_would_be_caught(rng7):
    """The control: the cancelled graph with the reduction's axes left in NCHW terms computes other numbers."""
    from kfreeze.verify import run_graph

    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [2, 4, 5, 3], name="x")
        y = tf.transpose(tf.reduce_mean(tf.transpose(x, NHWC_TO_NCHW), axis=[2, 3], keepdims=True), NCHW_TO_NHWC)
        tf.identity(y, name="out")
    graph = g.as_graph_def()
    out = passes.cancel_transposes(graph, ctx())
    axes = next(n for n in out.node if n.name.endswith("/untransposed_axes"))
    assert tf.make_ndarray(axes.attr["value"].tensor).tolist() == [1, 2]
    axes.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.array([2, 3], np.int32)))
    feeds = {"x": rng7.normal(size=[2, 4, 5, 3]).astype(np.float32)}
    right, wrong = run_graph(graph, feeds, ["out"])["out"], run_graph(out, feeds, ["out"])["out"]
    assert right.shape != wrong.shape or not np.allclose(right, wrong)


@pytest.mark.parametrize("axis", [3, -1, 1])
def test_transposes_through_a_concat_cancel_with_the_axis_mapped(rng7, axis):
    """tf2onnx's test_transpose_with_concat: both inputs transposed alike, concatenated, transposed back."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [2, 4, 5, 3], name="x")
        a = tf.transpose(x * tf.constant(rng7.normal(size=3).astype(np.float32)), NHWC_TO_NCHW)
        b = tf.transpose(tf.nn.relu(x), NHWC_TO_NCHW)
        y = tf.nn.relu(tf.concat([a, b], axis=axis) * 2.0)
        tf.identity(tf.transpose(y, NCHW_TO_NHWC) + 0.5, name="out")
    graph = g.as_graph_def()
    out = passes.cancel_transposes(graph, ctx())
    assert "Transpose" not in ops(out), ops(out)
    same_numbers(out, graph, rng7.normal(size=[2, 4, 5, 3]).astype(np.float32))


def test_a_concat_of_differently_transposed_inputs_keeps_its_transposes(rng7):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [2, 4, 4, 4], name="x")
        a = tf.transpose(x, NHWC_TO_NCHW)
        b = tf.transpose(x, [0, 3, 2, 1])
        tf.identity(tf.transpose(tf.concat([a, b], axis=1), NCHW_TO_NHWC), name="out")
    graph = g.as_graph_def()
    out = passes.cancel_transposes(graph, ctx())
    assert ops(out)["Transpose"] == 3


def test_an_output_transpose_becomes_an_identity_keeping_its_name(rng7):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [2, 4, 5, 3], name="x")
        a = tf.transpose(tf.nn.relu(x), NHWC_TO_NCHW)
        b = tf.transpose(x * 3.0, NHWC_TO_NCHW)
        tf.transpose(tf.concat([a, b], axis=1), NCHW_TO_NHWC, name="out")
    graph = g.as_graph_def()
    out = passes.cancel_transposes(graph, ctx())
    assert "Transpose" not in ops(out) and {n.name: n.op for n in out.node}["out"] == "Identity"
    same_numbers(out, graph, rng7.normal(size=[2, 4, 5, 3]).astype(np.float32))
