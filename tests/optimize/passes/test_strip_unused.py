"""Tests for the ``strip_unused`` pass (kfreeze/optimize/passes/strip_unused.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.errors import KfreezeError
from kfreeze.optimize import InputSpec, passes
from kfreeze.tfenv import tf
from tests.optimize.helpers import ATOL, RTOL, ctx, run, ops, by_name, mid_relu_graph


def test_strip_unused_drops_nodes_the_outputs_do_not_need(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        h = tf.nn.relu(x, name="h")
        tf.identity(tf.reduce_sum(h), name="loss_like")     # a side branch
        tf.nn.sigmoid(x, name="unused_head")
        tf.identity(h * 2.0, name="out")
    graph = g.as_graph_def()
    out = passes.strip_unused(graph, ctx(["x"]))
    names = set(by_name(out))
    assert {"x", "h", "out"} <= names
    assert not {"loss_like", "unused_head", "Sum"} & names
    assert "Sigmoid" not in ops(out)
    xv = rng.normal(size=[2, 4]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)


def test_strip_unused_rejects_an_input_downstream_of_the_output():
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        out = tf.nn.relu(x, name="out")
        tf.nn.sigmoid(out, name="after")
    graph = g.as_graph_def()
    with pytest.raises(KfreezeError, match="does not feed any of the outputs") as e:
        passes.strip_unused(graph, ctx(["after"]))
    assert "input 'after'" in str(e.value)


def test_strip_unused_rejects_a_missing_output():
    graph = mid_relu_graph(np.random.default_rng(0))
    with pytest.raises(KfreezeError, match="output 'nope'"):
        passes.strip_unused(graph, ctx(["x"], ["nope"]))


def test_strip_unused_rejects_a_port_cut_when_the_outputs_read_another_port(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        a, b = tf.split(x, 2, axis=1, name="split")
        tf.identity(a + b, name="out")
    graph = g.as_graph_def()
    c = ctx([InputSpec("split:1", shape=(None, 2))])
    with pytest.raises(KfreezeError, match="cannot be cut there"):
        passes.strip_unused(passes.cut_inputs(graph, c), c)


def test_strip_unused_rejects_a_port0_cut_when_the_outputs_read_another_port():
    with tf.Graph().as_default() as g:
        ds = tf.data.Dataset.from_tensors((np.zeros([2, 4], np.float32), np.zeros([2], np.int32)))
        feats, labels = tf.compat.v1.data.make_one_shot_iterator(ds).get_next()
        tf.identity(feats * 2.0 + tf.expand_dims(tf.cast(labels, tf.float32), 1), name="out")
    graph = g.as_graph_def()
    c = ctx([InputSpec("IteratorGetNext", shape=(None, 4))])
    with pytest.raises(KfreezeError, match="IteratorGetNext:1|cannot be cut there"):
        passes.strip_unused(passes.cut_inputs(graph, c), c)
