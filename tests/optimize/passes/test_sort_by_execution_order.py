"""Tests for the ``sort_by_execution_order`` pass (kfreeze/optimize/passes/sort_by_execution_order.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import passes
from tensorflow.core.framework import graph_pb2
from tests.optimize.helpers import ATOL, RTOL, ctx, run, assert_topological, flatten_graph


def test_sort_by_execution_order_is_topological_and_deterministic(rng):
    graph = flatten_graph(rng)
    shuffled = graph_pb2.GraphDef()
    shuffled.CopyFrom(graph)
    nodes = list(shuffled.node)
    nodes.reverse()  # every consumer now comes before its inputs
    del shuffled.node[:]
    shuffled.node.extend(nodes)
    with pytest.raises(AssertionError):
        assert_topological(shuffled)

    c = ctx(["x"])
    first = passes.sort_by_execution_order(shuffled, c)
    second = passes.sort_by_execution_order(shuffled, c)
    assert_topological(first)
    assert sorted(n.name for n in first.node) == sorted(n.name for n in graph.node)
    assert first.SerializeToString(deterministic=True) == second.SerializeToString(deterministic=True)

    xv = rng.normal(size=[2, 4, 4, 2]).astype(np.float32)
    np.testing.assert_allclose(run(first, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)
