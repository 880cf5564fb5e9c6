"""Tests for the ``fold_affine`` pass (kfreeze/optimize/passes/fold_affine.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import passes
from kfreeze.tfenv import tf
from tests.optimize.helpers import ATOL, RTOL, ctx, run, ops, by_name, const, const_value, assert_topological


def test_fold_affine_conv_bias_mul_add(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 5, 5, 2], name="x")
        y = tf.nn.conv2d(x, const(rng, 3, 3, 2, 4), 1, "VALID", name="conv")
        y = tf.nn.bias_add(y, const(rng, 4), name="bias")
        y = tf.multiply(y, const(rng, 4, low=0.5, high=2.0), name="bn_mul")
        y = tf.add(y, const(rng, 4), name="bn_add")
        tf.nn.relu(y, name="out")
    graph = g.as_graph_def()
    assert {"Mul", "AddV2"} <= set(ops(graph))

    out = passes.fold_affine(graph, ctx(["x"]))
    hist = ops(out)
    assert hist.get("Conv2D") == 1 and hist.get("BiasAdd") == 1 and hist.get("Relu") == 1
    assert not {"Mul", "AddV2", "Add"} & set(hist)
    nodes = by_name(out)
    assert nodes["out"].input[0] == "bn_add" and nodes["bn_add"].op == "BiasAdd"
    assert nodes[nodes["bn_add"].input[0]].op == "Conv2D"
    assert nodes["bn_add"].attr["data_format"].s == b"NHWC"
    assert_topological(passes.sort_by_execution_order(out, ctx(["x"])))

    xv = rng.normal(size=[3, 5, 5, 2]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("transpose_b", [False, True])
def test_fold_affine_matmul_scalar_mul_then_vector_add(rng, transpose_b):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        w = const(rng, 3, 4) if transpose_b else const(rng, 4, 3)
        y = tf.matmul(x, w, transpose_b=transpose_b, name="dense")
        y = tf.multiply(tf.constant(1.5), y, name="scale")       # scalar, constant first
        tf.raw_ops.Add(x=y, y=const(rng, 3), name="out")          # v1 'Add'
    graph = g.as_graph_def()
    assert {"Mul", "Add"} <= set(ops(graph))

    out = passes.fold_affine(graph, ctx(["x"]))
    hist = ops(out)
    assert hist.get("MatMul") == 1 and hist.get("BiasAdd") == 1
    assert not {"Mul", "Add", "AddV2"} & set(hist)
    nodes = by_name(out)
    assert nodes["out"].op == "BiasAdd" and nodes[nodes["out"].input[0]].op == "MatMul"
    assert nodes[nodes["out"].input[0]].attr["transpose_b"].b == transpose_b

    xv = rng.normal(size=[5, 4]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)


def test_fold_affine_depthwise_conv_mul(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 5, 5, 3], name="x")
        y = tf.nn.depthwise_conv2d(x, const(rng, 3, 3, 3, 2), [1, 1, 1, 1], "SAME", name="dw")
        tf.multiply(y, const(rng, 1, 1, 1, 6), name="out")  # [1, 1, 1, C*multiplier]
    graph = g.as_graph_def()
    assert {"DepthwiseConv2dNative", "Mul"} <= set(ops(graph))

    out = passes.fold_affine(graph, ctx(["x"]))
    hist = ops(out)
    assert "Mul" not in hist
    assert by_name(out)["out"].op == "DepthwiseConv2dNative"

    xv = rng.normal(size=[2, 5, 5, 3]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)


def test_fold_affine_leaves_a_conv_with_two_consumers(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 5, 5, 2], name="x")
        w = const(rng, 3, 3, 2, 4)
        y = tf.nn.conv2d(x, w, 1, "SAME", name="conv")
        scaled = tf.multiply(y, const(rng, 4), name="scaled")
        tf.add(scaled, tf.nn.relu(y), name="out")
    graph = g.as_graph_def()
    out = passes.fold_affine(graph, ctx(["x"]))
    assert ops(out) == ops(graph)
    nodes = by_name(out)
    assert nodes["scaled"].op == "Mul" and nodes["conv"].op == "Conv2D"
    np.testing.assert_array_equal(const_value(out, nodes["conv"].input[1]),
                                  const_value(graph, by_name(graph)["conv"].input[1]))

    xv = rng.normal(size=[2, 5, 5, 2]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)


def test_fold_affine_leaves_a_mul_by_a_non_constant(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 5, 5, 2], name="x")
        gate = tf.compat.v1.placeholder(tf.float32, [None, 1, 1, 4], name="gate")
        y = tf.nn.conv2d(x, const(rng, 3, 3, 2, 4), 1, "SAME", name="conv")
        tf.multiply(y, gate, name="out")
    graph = g.as_graph_def()
    out = passes.fold_affine(graph, ctx(["x", "gate"]))
    assert ops(out) == ops(graph)
    assert by_name(out)["out"].op == "Mul"
    xv = rng.normal(size=[2, 5, 5, 2]).astype(np.float32)
    gv = rng.normal(size=[2, 1, 1, 4]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv, "gate:0": gv}), run(graph, {"x:0": xv, "gate:0": gv}),
                               rtol=RTOL, atol=ATOL)


def test_fold_affine_leaves_an_inner_node_that_is_an_output(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        y = tf.matmul(x, const(rng, 4, 3), name="logits")
        tf.multiply(y, 2.0, name="out")
    graph = g.as_graph_def()
    out = passes.fold_affine(graph, ctx(["x"], ["logits", "out"]))
    assert by_name(out)["logits"].op == "MatMul" and by_name(out)["out"].op == "Mul"


def test_fold_affine_leaves_nchw_conv_alone(rng):
    """W == C == 4: a [4] Mul scales the W axis of an NCHW conv, so folding it into the
    output channels would be wrong. (Structure only: TF on CPU cannot run an NCHW Conv2D.)"""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 2, 4, 4], name="x")
        y = tf.nn.conv2d(x, const(rng, 3, 3, 2, 4), 1, "SAME", data_format="NCHW", name="conv")
        tf.multiply(y, const(rng, 4), name="out")
    graph = g.as_graph_def()
    out = passes.fold_affine(graph, ctx(["x"]))
    assert ops(out) == ops(graph) and by_name(out)["out"].op == "Mul"
    np.testing.assert_array_equal(const_value(out, by_name(out)["conv"].input[1]),
                                  const_value(graph, by_name(graph)["conv"].input[1]))


@pytest.mark.parametrize("width, outer", [(5, "add"), (3, "mul")])
def test_fold_affine_respects_an_nchw_bias_add(rng, width, outer):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 3, 4, width], name="x")  # N C H W, C=3
        y = tf.nn.bias_add(tf.nn.relu(x), const(rng, 3), data_format="NCHW", name="bias")
        if outer == "add":
            tf.add(y, tf.constant(0.5), name="out")
        else:
            tf.multiply(y, tf.constant(2.0), name="out")
    graph = g.as_graph_def()
    xv = rng.normal(size=[2, 3, 4, width]).astype(np.float32)
    expected = run(graph, {"x:0": xv})
    out = passes.fold_affine(graph, ctx(["x"]))
    np.testing.assert_allclose(run(out, {"x:0": xv}), expected, rtol=RTOL, atol=ATOL)
