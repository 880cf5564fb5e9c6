"""runtime_fusion: what a TF session runs fused, read from the graphs it executed."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import PASSES, optimize
from kfreeze import graphio
from kfreeze.optimize.fusion import runtime_fusion, runtime_fusion_isolated
from kfreeze.tfenv import tf
from tests.optimize.helpers import const, ctx, residual_block_graph

X = {"x:0": np.random.default_rng(0).normal(size=[1, 6, 6, 4]).astype(np.float32)}


def _conv(rng, bias: bool):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 6, 6, 4], name="x")
        y = tf.nn.conv2d(x, const(rng, 3, 3, 4, 4), 1, "SAME")
        if bias:
            y = tf.nn.bias_add(y, const(rng, 4))
        tf.nn.relu(y, name="out")
    return g.as_graph_def()


def test_conv_with_bias_runs_fused_with_its_relu(rng):
    got = runtime_fusion(_conv(rng, bias=True), X, ["out:0"])
    assert (got["fused"], got["bare"], got["share"]) == (1, 0, 1.0)
    assert got["fused_with"] == {"BiasAdd,Relu": 1}
    assert "_FusedConv2D" in got["fused_ops"] or any(op.startswith("_Mkl") for op in got["fused_ops"])


def test_conv_without_bias_runs_bare(rng):
    got = runtime_fusion(_conv(rng, bias=False), X, ["out:0"])
    assert (got["fused"], got["bare"], got["share"]) == (0, 1, 0.0)
    assert got["bare_readers"] == {"Relu": 1}


def test_optimize_makes_the_hoisted_conv_fused(rng):
    """Two convs with residual add: the old pipeline leaves the second bare, the new one fuses both."""
    graph = residual_block_graph("conv", rng, "bn")
    old, _ = optimize(graph, ctx(), pipeline=[(s.name, s.fn) for s in PASSES if s.name != "restore_bias_add"])
    new, _ = optimize(graph, ctx())
    assert runtime_fusion(old, X, ["out:0"])["share"] == 0.5
    assert runtime_fusion(new, X, ["out:0"])["share"] == 1.0


@pytest.mark.slow  # two fresh TensorFlow processes
def test_isolated_measures_both_onednn_settings(rng, tmp_path):
    """A depthwise conv + BiasAdd runs fused only with oneDNN's rewrites (TF 2.21 CPU)."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 6, 6, 4], name="x")
        y = tf.nn.depthwise_conv2d(x, const(rng, 3, 3, 4, 1), [1, 1, 1, 1], "SAME")
        tf.nn.relu6(tf.nn.bias_add(y, const(rng, 4)), name="out")
    path = tmp_path / "dw.pb"
    graphio.write_graph(g.as_graph_def(), path)
    off = runtime_fusion_isolated(path, X, ["out:0"], onednn=False)
    on = runtime_fusion_isolated(path, X, ["out:0"], onednn=True)
    assert (off["fused"], off["bare"]) == (0, 1)
    assert (on["fused"], on["bare"], on["fused_with"]) == (1, 0, {"BiasAdd,Relu6": 1})
