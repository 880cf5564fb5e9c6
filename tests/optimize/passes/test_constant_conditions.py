"""Tests for the ``constant_conditions`` pass (kfreeze/optimize/passes/constant_conditions.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import passes
from kfreeze.tfenv import tf
from tests.optimize.helpers import ctx, ops, run


def _cond_graph(rng, pred):
    """out = cond(pred, dropout(x * w) * 3, x * w + b): TF 2's cond, an If with function branches."""
    w = rng.normal(size=(6,)).astype(np.float32)
    b = rng.normal(size=(6,)).astype(np.float32)
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 6], name="x")
        if pred == "placeholder":
            p = tf.compat.v1.placeholder(tf.bool, [], name="p")
        else:
            p = tf.identity(tf.constant(pred), name="p")
        y = tf.cond(p, lambda: tf.nn.dropout(x * w, rate=0.5) * 3.0, lambda: x * w + b)
        tf.identity(y, name="out")
    return g.as_graph_def(), w, b


@pytest.mark.parametrize("pred", [False, True])
def test_an_if_on_a_constant_becomes_a_call_of_its_branch(rng7, pred):
    graph, w, b = _cond_graph(rng7, pred)
    assert {"If", "StatelessIf"} & set(ops(graph)), ops(graph)
    out = passes.constant_conditions(graph, ctx())
    assert not {"If", "StatelessIf"} & set(ops(out)), ops(out)
    call = next(n for n in out.node if n.op in ("PartitionedCall", "StatefulPartitionedCall"))
    assert ("true" if pred else "false") in call.attr["f"].func.name
    if not pred:  # the inference branch: after Grappler, no random op, the same values
        folded = passes.grappler(passes.strip_unused(out, ctx()), ctx())
        assert not any(n.op.startswith("Random") for n in folded.node), ops(folded)
        xv = rng7.normal(size=(3, 6)).astype(np.float32)
        np.testing.assert_allclose(run(folded, {"x:0": xv}), xv * w + b, rtol=1e-6, atol=1e-6)


def test_an_if_on_a_placeholder_stays(rng7):
    graph, _, _ = _cond_graph(rng7, "placeholder")
    assert passes.constant_conditions(graph, ctx()) is graph
