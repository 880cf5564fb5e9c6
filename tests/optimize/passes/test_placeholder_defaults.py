"""Tests for the ``placeholder_defaults`` pass (kfreeze/optimize/passes/placeholder_defaults.py)."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize import passes
from kfreeze.tfenv import tf
from tests.optimize.helpers import ATOL, RTOL, ctx, run, ops, by_name, flag_graph


def test_placeholder_defaults_resolves_flags_that_are_not_inputs():
    graph = flag_graph()
    out = passes.placeholder_defaults(graph, ctx(["x"]))
    node = by_name(out)["keep_prob"]
    assert node.op == "Identity"
    assert list(node.input) == list(by_name(graph)["keep_prob"].input)
    assert by_name(out)[node.input[0]].op == "Const"
    assert tf.as_dtype(node.attr["T"].type) == tf.float32
    assert "PlaceholderWithDefault" not in ops(out)
    assert set(node.attr) == {"T"}

    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(run(out, {"x:0": xv}), xv * 0.25, rtol=RTOL, atol=ATOL)
    # the resolved flag constant-folds in Grappler
    folded = passes.grappler(out, ctx(["x"]))
    assert by_name(folded)["keep_prob"].op == "Const"
    assert "PlaceholderWithDefault" not in ops(folded)
    np.testing.assert_allclose(run(folded, {"x:0": xv}), xv * 0.25, rtol=RTOL, atol=ATOL)


def test_placeholder_defaults_keeps_a_flag_that_is_an_input():
    graph = flag_graph()
    out = passes.placeholder_defaults(graph, ctx(["x", "keep_prob"]))
    assert by_name(out)["keep_prob"].op == "PlaceholderWithDefault"
    assert out == graph
    xv = np.ones([1, 3], np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv, "keep_prob:0": 0.5}), xv * 0.5)
