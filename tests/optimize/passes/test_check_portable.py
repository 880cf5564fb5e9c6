"""Tests for the ``check_portable`` pass (kfreeze/optimize/passes/check_portable.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.errors import KfreezeError
from kfreeze.optimize import passes
from kfreeze.tfenv import tf
from tensorflow.core.framework import node_def_pb2
from tests.optimize.helpers import ctx, ops, mid_relu_graph


def test_check_portable_rejects_internal_ops():
    graph = mid_relu_graph(np.random.default_rng(0))
    fused = graph.node.add()
    fused.CopyFrom(node_def_pb2.NodeDef(name="fused", op="_FusedConv2D", input=["x"]))
    with pytest.raises(KfreezeError, match="_FusedConv2D"):
        passes.check_portable(graph, ctx(["x"]))


def test_check_portable_rejects_unregistered_ops():
    graph = mid_relu_graph(np.random.default_rng(0))
    graph.node.add().CopyFrom(node_def_pb2.NodeDef(name="odd", op="NotARealTfOp", input=["x"]))
    with pytest.raises(KfreezeError, match="NotARealTfOp"):
        passes.check_portable(graph, ctx(["x"]))


def test_check_portable_passes_a_standard_graph_unchanged():
    graph = mid_relu_graph(np.random.default_rng(0))
    snapshot = graph.SerializeToString(deterministic=True)
    out = passes.check_portable(graph, ctx(["x"]))
    assert out.SerializeToString(deterministic=True) == snapshot


def test_check_portable_rejects_a_random_op_and_names_it():
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        tf.identity(x + tf.random.uniform([3], name="noise"), name="out")
    with pytest.raises(KfreezeError, match=r"random ops.*noise/RandomUniform \(RandomUniform\)"):
        passes.check_portable(g.as_graph_def(), ctx(["x"]))
