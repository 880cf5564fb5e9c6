"""Tests for the ``channels_last`` pass (kfreeze/optimize/passes/channels_last.py).

CPU TensorFlow cannot run the NCHW graphs themselves, so each is judged against the same layers
built NHWC with the same weights, fed the transposed input."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import optimize, passes
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, ops, run

TO_NHWC, TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]


def _layers(kind: str, fmt: str, rng_seed: int = 11):
    """x [2, 3, 6, 8] (NCHW) or [2, 6, 8, 3] (NHWC) -> the layers of ``kind`` -> 'out'."""
    rng = np.random.default_rng(rng_seed)
    w = rng.normal(0, 0.4, (3, 3, 3, 4)).astype(np.float32)
    dw = rng.normal(0, 0.4, (3, 3, 3, 2)).astype(np.float32)
    bias = rng.normal(0, 0.3, 4).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 1.5, 4).astype(np.float32), rng.normal(0, 0.3, 4).astype(np.float32)
    mean, var = rng.normal(0, 0.5, 4).astype(np.float32), rng.uniform(0.3, 2.0, 4).astype(np.float32)

    def dims(h, w_):  # NHWC-ordered per-dimension values in the graph's layout
        return [1, 1, h, w_] if fmt == "NCHW" else [1, h, w_, 1]

    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [2, 3, 6, 8] if fmt == "NCHW" else [2, 6, 8, 3], name="x")
        if kind == "conv_stride":
            y = tf.raw_ops.Conv2D(input=x, filter=w, strides=dims(2, 1), padding="SAME", data_format=fmt)
        elif kind == "conv_dilation":
            y = tf.raw_ops.Conv2D(input=x, filter=w, strides=[1, 1, 1, 1], padding="VALID", data_format=fmt,
                                  dilations=dims(2, 1))
        elif kind == "conv_explicit":
            pads = [0, 0, 0, 0, 1, 2, 0, 1] if fmt == "NCHW" else [0, 0, 1, 2, 0, 1, 0, 0]
            y = tf.raw_ops.Conv2D(input=x, filter=w, strides=[1, 1, 1, 1], padding="EXPLICIT",
                                  explicit_paddings=pads, data_format=fmt)
        elif kind == "depthwise":
            y = tf.raw_ops.DepthwiseConv2dNative(input=x, filter=dw, strides=dims(2, 2), padding="SAME",
                                                 data_format=fmt)
        elif kind == "max_pool":
            y = tf.raw_ops.MaxPool(input=x, ksize=dims(3, 2), strides=dims(2, 2), padding="VALID", data_format=fmt)
        elif kind == "avg_pool":
            y = tf.raw_ops.AvgPool(value=x, ksize=dims(2, 3), strides=dims(1, 2), padding="SAME", data_format=fmt)
        else:  # conv_bias_bn_relu_pool: a whole NCHW block, as GPU-trained TF1 graphs have it
            y = tf.raw_ops.Conv2D(input=x, filter=w, strides=[1, 1, 1, 1], padding="SAME", data_format=fmt)
            y = tf.raw_ops.BiasAdd(value=y, bias=bias, data_format=fmt)
            y = tf.raw_ops.FusedBatchNormV3(x=y, scale=gamma, offset=beta, mean=mean, variance=var, epsilon=1e-3,
                                            is_training=False, data_format=fmt)[0]
            y = tf.raw_ops.MaxPool(input=tf.nn.relu(y), ksize=dims(2, 2), strides=dims(2, 2), padding="VALID",
                                   data_format=fmt)
        tf.identity(y, name="out")
    return g.as_graph_def()


def _nhwc_answer(kind, xv):
    return np.transpose(run(_layers(kind, "NHWC"), {"x:0": np.transpose(xv, TO_NHWC)}), TO_NCHW)


KINDS = ["conv_stride", "conv_dilation", "conv_explicit", "depthwise", "max_pool", "avg_pool",
         "conv_bias_bn_relu_pool"]


@pytest.mark.parametrize("kind", KINDS)
def test_nchw_layers_run_as_nhwc_with_the_same_values(kind):
    graph = _layers(kind, "NCHW")
    out = passes.channels_last(graph, ctx())
    formats = {n.attr["data_format"].s for n in out.node if "data_format" in n.attr}
    assert formats == {b"NHWC"}, formats
    xv = np.random.default_rng(5).normal(0, 1, (2, 3, 6, 8)).astype(np.float32)
    want = _nhwc_answer(kind, xv)
    got = run(out, {"x:0": xv})
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_the_whole_pipeline_folds_the_nchw_block_and_cancels_the_inner_transposes():
    """After optimize: one Transpose in, one out; the bias and batch norm folded into the conv."""
    graph = _layers("conv_bias_bn_relu_pool", "NCHW")
    out, _ = optimize(graph, ctx())
    hist = ops(out)
    assert hist.get("Transpose") == 2, hist
    assert not {"FusedBatchNormV3", "Mul", "Add", "AddV2"} & set(hist), hist
    assert hist.get("Conv2D") == 1 and hist.get("BiasAdd") == 1, hist
    xv = np.random.default_rng(6).normal(0, 1, (2, 3, 6, 8)).astype(np.float32)
    got, want = run(out, {"x:0": xv}), _nhwc_answer("conv_bias_bn_relu_pool", xv)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.abs(want).max() > 0.5  # trained-looking values: a wrong fold is far outside the tolerance


def test_a_batch_norm_statistic_is_read_from_the_rewritten_op_and_names_stay():
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 2, 3, 3], name="x")
        bn = tf.raw_ops.FusedBatchNormV3(x=x, scale=[1.0, 2.0], offset=[0.1, 0.2], mean=[0.5, -0.5],
                                         variance=[1.0, 2.0], is_training=False, data_format="NCHW", name="bn")
        tf.identity(bn[0], name="out")
        tf.identity(bn[1], name="stat")
    out = passes.channels_last(g.as_graph_def(), ctx())
    nodes = by_name(out)
    assert nodes["bn"].op == "Transpose" and nodes["out"].input == ["bn"]
    assert nodes["stat"].input == ["bn/nhwc:1"] and nodes["bn/nhwc"].op == "FusedBatchNormV3"
    assert "data_format" not in nodes["x"].attr  # reading the attribute of other nodes must not add it
    xv = np.random.default_rng(1).normal(0, 1, (1, 2, 3, 3)).astype(np.float32)
    want = (xv - np.array([0.5, -0.5]).reshape(2, 1, 1)) / np.sqrt(np.array([1.0, 2.0]).reshape(2, 1, 1) + 1e-4) \
        * np.array([1.0, 2.0]).reshape(2, 1, 1) + np.array([0.1, 0.2]).reshape(2, 1, 1)
    np.testing.assert_allclose(run(out, {"x:0": xv}), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(run(out, {"x:0": xv}, "stat:0"), [0.5, -0.5])


def test_a_bias_add_of_unknown_rank_and_nhwc_graphs_are_left_alone():
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, None, name="x")
        tf.identity(tf.raw_ops.BiasAdd(value=x, bias=[1.0, 2.0], data_format="NCHW"), name="out")
    graph = g.as_graph_def()
    assert passes.channels_last(graph, ctx()) is graph
    nhwc = _layers("conv_bias_bn_relu_pool", "NHWC")
    assert passes.channels_last(nhwc, ctx()) is nhwc
