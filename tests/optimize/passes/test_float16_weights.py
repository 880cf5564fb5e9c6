"""Tests for the ``float16_weights`` pass (kfreeze/optimize/passes/float16_weights.py)."""

from __future__ import annotations

import importlib

import numpy as np

from kfreeze import graphio
from kfreeze.optimize import Context, InputSpec, optimize, passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, run


def test_float16_weights_inside_a_loop_stay_in_its_frame(gru_frozen, monkeypatch):
    precision = importlib.import_module("kfreeze.optimize.passes.float16_weights")  # the module, not the function
    frozen, x, expected = gru_frozen
    monkeypatch.setattr(precision, "MIN_ELEMENTS", 8)  # the tiny GRU's kernels count as weights
    ctx = Context((InputSpec("seq"),), ("gru",), precision="float16")
    graph, _ = optimize(frozen, ctx)
    loop = graphio.loop_nodes(graph)
    halves = [n for n in graph.node if n.op == "Const" and n.attr["dtype"].type == tf.float16.as_datatype_enum]
    assert any(n.name in loop or n.input for n in halves)  # some weight lives inside the loop
    np.testing.assert_allclose(run(graph, {"seq:0": x}, "gru:0"), expected, atol=5e-3)


def test_float16_weights_halves_the_weights_behind_a_cast(rng7):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 16], name="x")
        y = tf.nn.conv2d(x, tf.constant(rng7.normal(size=[3, 3, 16, 32]).astype(np.float32), name="kernel"), 1, "SAME")
        y = tf.nn.bias_add(y, tf.constant(rng7.normal(size=[32]).astype(np.float32), name="bias"))
        tf.nn.relu(y, name="out")
    graph = g.as_graph_def()
    assert "float16_weights" not in dict(passes_for(ctx()))  # float32 by default
    out = passes.float16_weights(graph, ctx(precision="float16"))
    n = by_name(out)
    assert n["kernel"].op == "Cast" and list(n["kernel"].input) == ["kernel/float16"]
    assert n["kernel/float16"].attr["dtype"].type == tf.float16.as_datatype_enum
    assert n["bias"].op == "Const"  # 32 elements: below MIN_ELEMENTS
    assert len(graphio.graph_bytes(out)) < 0.6 * len(graphio.graph_bytes(graph))
    x = rng7.normal(size=[1, 8, 8, 16]).astype(np.float32)
    ref, got = run(graph, {"x:0": x}), run(out, {"x:0": x})
    assert np.max(np.abs(got - ref)) <= 2e-3 * np.max(np.abs(ref))
    assert np.max(np.abs(got - ref)) > 0  # the weights really are rounded
