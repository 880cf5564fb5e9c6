"""Tests for the ``merge_duplicates`` pass (tf2onnx's test_merge_duplicated_nodes, in TF form)."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize import passes
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, ops, same_numbers


def test_identical_chains_merge_node_by_node(rng7):
    w = rng7.normal(size=[4, 3]).astype(np.float32)
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        a = tf.nn.relu(tf.matmul(x, w)) * 2.0
        b = tf.nn.relu(tf.matmul(x, w)) * 2.0  # the same chain, with its own (equal) constants
        tf.identity(tf.concat([a, b, tf.nn.sigmoid(x)], axis=1), name="out")
    graph = passes.dedupe_constants(g.as_graph_def(), ctx())
    out = passes.merge_duplicates(graph, ctx())
    assert ops(out)["MatMul"] == 1 and ops(out)["Relu"] == 1 and ops(out)["Mul"] == 1, ops(out)
    concat = next(n for n in out.node if n.op == "ConcatV2")
    assert concat.input[0] == concat.input[1]
    same_numbers(out, graph, rng7.normal(size=[3, 4]).astype(np.float32))


def test_different_attributes_inputs_and_random_ops_stay_apart(rng7):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [2, 6], name="x")
        m1 = tf.reduce_mean(x, axis=1, keepdims=True)
        m2 = tf.reduce_mean(x, axis=1, keepdims=False)[:, None]  # another keep_dims
        r1 = tf.random.uniform([2, 6], seed=1)
        r2 = tf.random.uniform([2, 6], seed=1)  # stateful: two draws, not one
        s1, s2 = tf.nn.softmax(x), tf.nn.softmax(x * 1.0)
        tf.identity(m1 + m2 + r1 + r2 + s1 + s2, name="out")
    graph = g.as_graph_def()
    out = passes.merge_duplicates(graph, ctx())
    assert ops(out)["Mean"] == 2 and ops(out)["RandomUniform"] == 2 and ops(out)["Softmax"] == 2, ops(out)


def test_an_output_keeps_its_node_and_two_outputs_both_stay(rng7):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [2, 3], name="x")
        tf.nn.relu(x, name="hidden")
        tf.nn.relu(x, name="out")
        tf.nn.relu(x, name="out2")
        tf.identity(tf.nn.relu(x, name="inner") * 3.0, name="out3")
    graph = g.as_graph_def()
    c = ctx(outputs=("out", "out2", "out3"))
    out = passes.merge_duplicates(graph, c)
    nodes = by_name(out)
    assert {"out", "out2", "out3"} <= set(nodes) and "inner" not in nodes
    assert nodes["mul"].input[0] == "out", nodes["mul"].input  # the relus merged into the first output
    xv = rng7.normal(size=[2, 3]).astype(np.float32)
    same_numbers(out, graph, xv)
