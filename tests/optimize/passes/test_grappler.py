"""Tests for the ``grappler`` pass (kfreeze/optimize/passes/grappler.py)."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize import passes
from kfreeze.tfenv import tf
from tests.optimize.helpers import ATOL, RTOL, ctx, run, ops, by_name, const, mid_relu_graph


def test_grappler_folds_constant_subexpressions(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        w = tf.matmul(const(rng, 3, 3), const(rng, 3, 3)) * tf.constant(2.0)   # all constant
        bias = tf.exp(tf.constant([0.1, 0.2, 0.3]))
        tf.identity(tf.matmul(x, w) + bias, name="out")
    graph = g.as_graph_def()
    before = ops(graph)
    assert before["MatMul"] == 2 and "Exp" in before

    out = passes.grappler(graph, ctx(["x"]))
    hist = ops(out)
    assert hist.get("MatMul") == 1 and "Exp" not in hist
    assert sum(hist.values()) < sum(before.values())
    nodes = by_name(out)
    assert "out" in nodes and nodes["x"].op == "Placeholder"
    assert not [n.op for n in out.node if n.op.startswith("_")]
    assert not out.library.function

    xv = rng.normal(size=[4, 3]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)


def test_grappler_keeps_the_output_name_when_it_is_a_foldable_identity(rng):
    graph = mid_relu_graph(rng)
    out = passes.grappler(graph, ctx(["x"]))
    assert by_name(out)["out"].op == "Identity"
    assert not [n.op for n in out.node if n.op.startswith("_")]
    xv = rng.normal(size=[2, 4]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)
