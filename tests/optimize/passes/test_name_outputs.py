"""Tests for the ``name_outputs`` pass (kfreeze/optimize/passes/name_outputs.py)."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize import passes
from kfreeze.tfenv import tf
from tests.optimize.helpers import ctx, ops, by_name, const, same_numbers


def test_name_outputs_gives_the_output_name_to_its_producer(rng7):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4], name="x")
        tf.identity(tf.nn.softmax(tf.matmul(x, const(rng7, 4, 3)), name="softmax"), name="out")
    graph = g.as_graph_def()
    out = passes.name_outputs(graph, ctx())
    assert "Identity" not in ops(out) and "softmax" not in by_name(out)
    assert by_name(out)["out"].op == "Softmax"
    same_numbers(out, graph, rng7.normal(size=[1, 4]).astype(np.float32))


def test_name_outputs_keeps_identity_of_an_input_or_a_shared_tensor(rng7):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4], name="x")
        r = tf.nn.relu(x)
        tf.identity(r, name="out")
        tf.identity(r * 2.0, name="out2")
        tf.identity(x, name="out3")
    graph = g.as_graph_def()
    c = ctx(outputs=("out", "out3"))
    assert passes.name_outputs(graph, c) is graph
