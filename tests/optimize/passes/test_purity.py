"""No pass changes the GraphDef it is given: every step of PASSES, on representative frozen graphs."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import PASSES, Context, InputSpec
from kfreeze.tfenv import tf
from tests.optimize.helpers import conv_bn_graph, small_net, training_dropout_graph

CONTEXT = {"opencv": True, "precision": "float16"}  # every pass on


def _conv_bn(op):
    graph = conv_bn_graph(np.random.default_rng(3), getattr(tf.raw_ops, op))
    return graph, Context((InputSpec("x"),), ("out",), **CONTEXT)


def _small_net():
    return small_net(np.random.default_rng(4)), Context(
        (InputSpec("image", dtype="uint8", shape=(None, 6, 6, 1)),), ("out",), **CONTEXT)


def _tf1_dropout(form):
    graph = training_dropout_graph(np.random.default_rng(5), form)
    return graph, Context((InputSpec("x"),), ("out",), **CONTEXT)


GRAPHS = {"conv_bn_v1": lambda: _conv_bn("FusedBatchNorm"), "conv_bn_v3": lambda: _conv_bn("FusedBatchNormV3"),
          "small_net": _small_net, "tf1_dropout": lambda: _tf1_dropout("rate_default_0.5"),
          "tf1_learning_phase": lambda: _tf1_dropout("learning_phase")}


@pytest.fixture(scope="module")
def inputs(gru_frozen):
    """Each graph as each pass meets it in optimize: the previous pass's output."""
    made = {name: make() for name, make in GRAPHS.items()}
    made["gru"] = (gru_frozen[0], Context((InputSpec("seq"),), ("gru",), **CONTEXT))
    staged = {}
    for name, (graph, ctx) in made.items():
        for step in PASSES:
            staged[(name, step.name)] = (graph, ctx)
            graph = step.fn(graph, ctx)
    return staged


@pytest.mark.parametrize("graph_name", [*GRAPHS, "gru"])
@pytest.mark.parametrize("step", PASSES, ids=[s.name for s in PASSES])
def test_no_pass_mutates_its_input(inputs, graph_name, step):
    graph, ctx = inputs[(graph_name, step.name)]
    before = graph.SerializeToString(deterministic=True)
    step.fn(graph, ctx)
    assert graph.SerializeToString(deterministic=True) == before
