"""No pass changes the GraphDef it is given: every step of PASSES, on representative frozen graphs."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.errors import KfreezeError
from kfreeze.optimize import PASSES, Context, InputSpec
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2
from tests.optimize.helpers import const, conv_bn_graph, small_net, training_dropout_graph

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


def _residual():
    """conv -> BN-as-Mul/Add -> relu, plus the input: the AddV2 reaches opencv_compat."""
    rng = np.random.default_rng(6)
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 6, 6, 2], name="x")
        y = tf.nn.conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), const(rng, 3, 3, 2, 2), 1, "VALID")
        y = tf.nn.relu(y * const(rng, 2, low=0.5, high=1.5) + const(rng, 2))
        tf.identity(tf.nn.relu(tf.reshape(y + x, [1, 6, 6, 2])), name="out")
    return g.as_graph_def(), Context((InputSpec("x"),), ("out",), **CONTEXT)


GRAPHS = {"residual": _residual, "conv_bn_v1": lambda: _conv_bn("FusedBatchNorm"), "conv_bn_v3": lambda: _conv_bn("FusedBatchNormV3"),
          "small_net": _small_net, "tf1_dropout": lambda: _tf1_dropout("rate_default_0.5"),
          "tf1_learning_phase": lambda: _tf1_dropout("learning_phase")}


@pytest.fixture(scope="module")
def inputs(gru_frozen):
    """Each graph as each pass meets it in optimize (the previous pass's output), serialized
    before the pass runs: a pass that changed its input in place cannot hide it here."""
    made = {name: make() for name, make in GRAPHS.items()}
    made["gru"] = (gru_frozen[0], Context((InputSpec("seq"),), ("gru",), **CONTEXT))
    staged = {}
    for name, (graph, ctx) in made.items():
        for step in PASSES:
            staged[(name, step.name)] = (graph.SerializeToString(deterministic=True), ctx)
            graph = _step(step, graph, ctx)
    return staged


def _step(step, graph, ctx):
    """``step.fn(graph, ctx)``; opencv_refuse stops at the GRU's while loop (test_opencv_refuse): the
    graph goes on unchanged, as a pass that returns its input would."""
    try:
        return step.fn(graph, ctx)
    except KfreezeError:
        assert step.name == "opencv_refuse"
        return graph


@pytest.mark.parametrize("graph_name", [*GRAPHS, "gru"])
@pytest.mark.parametrize("step", PASSES, ids=[s.name for s in PASSES])
def test_no_pass_mutates_its_input(inputs, graph_name, step):
    before, ctx = inputs[(graph_name, step.name)]
    graph = graph_pb2.GraphDef()
    graph.ParseFromString(before)
    _step(step, graph, ctx)
    assert graph.SerializeToString(deterministic=True) == before
