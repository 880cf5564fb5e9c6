"""Tests for the ``remove_dropout`` pass (kfreeze/optimize/passes/remove_dropout.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import optimize, passes, training
from kfreeze.tfenv import tf
from tests.optimize.helpers import ATOL, RTOL, ctx, run, ops, dropout_graph, training_dropout_graph, INFERENCE_FEEDS


@pytest.mark.parametrize("form", ["v2", "old"])
def test_remove_dropout_at_rate_zero(rng, form):
    graph = dropout_graph(rng, form, 0.0)
    c = ctx(["x"])
    out = passes.remove_dropout(passes.grappler(passes.placeholder_defaults(graph, c), c), c)
    hist = ops(out)
    assert not {"RandomUniform", "SelectV2", "Floor", "GreaterEqual"} & set(hist), hist
    xv = rng.normal(size=[5, 6]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("form", list(INFERENCE_FEEDS))
def test_dropout_in_training_form_becomes_identity(rng, form):
    """Whatever the flag's default, the optimized graph computes the inference value: no random op left."""
    graph = training_dropout_graph(rng, form)
    c = ctx(["x"])
    out, _ = optimize(graph, c)
    assert not [n.op for n in out.node if training.is_random_op(n.op)], ops(out)
    assert not {"SelectV2", "Floor", "GreaterEqual", "Switch", "Merge"} & set(ops(out)), ops(out)
    xv = rng.normal(size=[5, 6]).astype(np.float32)
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(graph, name="")
        h = g.get_tensor_by_name("MatMul:0")
        with tf.compat.v1.Session(graph=g) as sess:
            expected = sess.run(tf.nn.softmax(h), {"x:0": xv})  # the model without dropout
    np.testing.assert_allclose(run(out, {"x:0": xv}), expected, rtol=RTOL, atol=ATOL)
    if INFERENCE_FEEDS[form]:
        np.testing.assert_allclose(run(graph, {"x:0": xv, **INFERENCE_FEEDS[form]}), expected, rtol=RTOL, atol=ATOL)
