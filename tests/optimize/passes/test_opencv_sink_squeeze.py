"""Tests for the ``opencv_sink_squeeze`` pass (kfreeze/optimize/passes/opencv_sink_squeeze.py)."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, run
from tests.optimize.opencv_check import assert_opencv_matches, opencv_fails


def _conv1d_bn_pool(rng):
    """Conv1D -> Relu -> BatchNorm (Mul, Add per channel) -> MaxPooling1D, as Keras writes them."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 16, 2], name="x")
        y = tf.nn.conv2d(tf.expand_dims(x * 1.0, 1), rng.normal(size=(1, 3, 2, 4)).astype(np.float32), 1, "VALID")
        y = tf.nn.relu(tf.squeeze(y, [1], name="sq"), name="relu")
        y = y * rng.uniform(0.5, 1.5, 4).astype(np.float32) + rng.normal(0, 0.3, 4).astype(np.float32)
        y = tf.nn.max_pool2d(tf.expand_dims(y, 1), [1, 2], [1, 2], "VALID")
        tf.squeeze(y, [1], name="out")
    return g.as_graph_def()


def test_sink_squeeze_moves_the_elementwise_ops_onto_the_4d_tensor(rng):
    graph = _conv1d_bn_pool(rng)
    assert "opencv_sink_squeeze" not in dict(passes_for(ctx()))
    out = passes.opencv_sink_squeeze(graph, ctx(opencv=True))
    nodes = by_name(out)
    assert nodes["sq"].op == "Relu" and nodes["relu"].op == "Mul"  # each op one place up, names kept
    squeeze = [n for n in out.node if n.op == "Squeeze" and n.name != "out"]
    assert len(squeeze) == 1 and by_name(out)[squeeze[0].input[0]].op in ("Add", "AddV2")
    x = rng.normal(size=(1, 16, 2)).astype(np.float32)
    ref = run(graph, {"x:0": x})
    np.testing.assert_allclose(run(out, {"x:0": x}), ref, rtol=1e-6, atol=1e-6)
    assert opencv_fails(graph, {"x": x})
    done = passes.opencv_squeeze_expand(out, ctx(opencv=True))
    assert_opencv_matches(done, {"x": x}, ref)


def test_sink_squeeze_keeps_a_constant_that_is_not_per_channel(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 1, 5, 3], name="x")
        tf.add(tf.squeeze(x, [1]), rng.normal(size=(5, 3)).astype(np.float32), name="out")  # per position
    graph = g.as_graph_def()
    assert passes.opencv_sink_squeeze(graph, ctx(opencv=True)) is graph
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 5, 1], name="x")
        tf.nn.relu(tf.squeeze(x, [2]), name="out")  # the last axis squeezed: a constant would broadcast elsewhere
    graph = g.as_graph_def()
    assert passes.opencv_sink_squeeze(graph, ctx(opencv=True)) is graph
