"""Tests for the ``opencv_unstack`` pass (kfreeze/optimize/passes/opencv_unstack.py)."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize import passes, passes_for
from kfreeze.optimize.graph import copy
from kfreeze.tfenv import tf
from tests.optimize.helpers import ctx, run
from tests.optimize.opencv_check import assert_opencv_matches, opencv_fails


def _unrolled_rnn(rng, steps=5, features=3, units=4, rank=3):
    """A SimpleRNN unrolled as Keras writes it: Unpack(Transpose(x, [1, 0, 2])), one cell per step."""
    const = lambda *s: tf.constant(rng.normal(size=s).astype(np.float32))  # noqa: E731
    with tf.Graph().as_default() as g:
        w, u, b = const(features, units), const(units, units), const(units)
        x = tf.compat.v1.placeholder(tf.float32, [1, steps, features] + [2] * (rank - 3), name="x")
        xs = tf.unstack(tf.transpose(x, [1, 0, *range(2, rank)]))
        if rank > 3:
            tf.identity(xs[-1], name="out")
            return g.as_graph_def()
        h = tf.tanh(tf.nn.bias_add(tf.matmul(xs[0], w), b))
        for t, step in enumerate(xs[1:], 1):
            h = tf.tanh(tf.add_n([tf.nn.bias_add(tf.matmul(step, w), b), tf.matmul(h, u)]),
                        name="out" if t == steps - 1 else None)
    return g.as_graph_def()


def test_the_steps_are_a_split_of_the_input(rng):
    graph = passes.dense_constants(_unrolled_rnn(rng), ctx(opencv=True))  # as optimize has it by then
    assert "opencv_unstack" not in dict(passes_for(ctx()))
    out = passes.opencv_unstack(graph, ctx(opencv=True))
    ops = {n.op for n in out.node}
    assert "Unpack" not in ops and "Transpose" not in ops and "Split" in ops
    assert not any("data_format" in n.attr for n in out.node if n.op == "BiasAdd")  # no NHWC guess from them
    feeds = {"x": rng.normal(size=(1, 5, 3)).astype(np.float32)}
    ref = run(graph, {"x:0": feeds["x"]})
    # a copy: TF's import_graph_def writes the default data_format back into the graph it is given
    np.testing.assert_array_equal(run(copy(out), {"x:0": feeds["x"]}), ref)
    assert "Unpack" in opencv_fails(graph, feeds)
    assert_opencv_matches(out, feeds, ref)


def test_a_stacked_layer_reads_the_steps_the_one_before_packed(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 3], name="x")
        w = tf.constant(rng.normal(size=(3, 4)).astype(np.float32))
        steps = [tf.tanh(tf.matmul(x * float(t + 1), w)) for t in range(3)]  # the first layer's outputs
        xs = tf.unstack(tf.stack(steps))
        tf.add_n([tf.matmul(s, tf.ones([4, 2])) for s in xs], name="out")
    graph = passes.dense_constants(g.as_graph_def(), ctx(opencv=True))
    out = passes.opencv_unstack(graph, ctx(opencv=True))
    assert not {"Pack", "Unpack"} & {n.op for n in out.node}
    feeds = {"x": rng.normal(size=(1, 3)).astype(np.float32)}
    ref = run(graph, {"x:0": feeds["x"]})
    np.testing.assert_array_equal(run(copy(out), {"x:0": feeds["x"]}), ref)
    assert opencv_fails(graph, feeds)
    assert_opencv_matches(out, feeds, ref)


def test_higher_rank_steps_stay_for_the_refusal(rng):
    graph = _unrolled_rnn(rng, rank=4)  # ConvLSTM's steps: OpenCV guesses their layout (opencv_refuse)
    assert passes.opencv_unstack(graph, ctx(opencv=True)) is graph
