"""Tests for kfreeze/optimize/training.py."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import optimize, training
from kfreeze.tfenv import tf
from tests.optimize.helpers import ctx, run, ops, by_name, flag_graph, training_dropout_graph, INFERENCE_FEEDS


@pytest.mark.parametrize("form", [f for f, v in INFERENCE_FEEDS.items() if v])
def test_training_flags_are_found_by_structure(rng, form):
    flags = training.training_flags(training_dropout_graph(rng, form))
    assert flags == {k.split(":")[0]: v for k, v in INFERENCE_FEEDS[form].items()}


def test_a_keras2_learning_phase_without_default_is_false():
    """Keras 2 (TF1) learning phase: a plain bool placeholder predicating the batch-norm cond."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        phase = tf.compat.v1.placeholder(tf.bool, [], name="keras_learning_phase")
        tf.compat.v1.disable_control_flow_v2()
        try:
            y = tf.cond(phase, lambda: x - tf.reduce_mean(x, 0), lambda: x - 0.5)
        finally:
            tf.compat.v1.enable_control_flow_v2()
        tf.identity(y, name="out")
    graph = g.as_graph_def()
    assert training.training_flags(graph) == {"keras_learning_phase": False}
    out, _ = optimize(graph, ctx(["x"]))
    assert "keras_learning_phase" not in by_name(out) and "Switch" not in ops(out)
    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(run(out, {"x:0": xv}), xv - 0.5)


def test_training_flags_leave_other_flags_alone():
    assert training.training_flags(flag_graph()) == {}  # keep_prob there only scales: no random mask


@pytest.mark.parametrize("op", ["RandomStandardNormal", "TruncatedNormal", "Multinomial", "RandomShuffle",
                                "RandomUniformInt", "StatelessRandomUniformV2", "StatelessRandomNormalV2"])
def test_random_ops_are_recognised(op):
    assert training.is_random_op(op)
    assert not training.is_random_op("Relu") and not training.is_random_op("MatMul")


def test_a_learning_phase_with_a_true_default_gating_a_cond_without_random_ops_is_set_false():
    """TF's optimize_for_inference_test: keras_learning_phase = PlaceholderWithDefault(True) picks
    [0,1,4,6] (training) or [0,0,1,2] (inference) in a tf.cond with no random op."""
    from kfreeze.optimize import passes
    from kfreeze.optimize.training import training_flags
    from kfreeze.verify import run_graph
    from tests.optimize.helpers import ctx

    with tf.Graph().as_default() as g:
        phase = tf.compat.v1.placeholder_with_default(True, [], name="keras_learning_phase")
        x = tf.compat.v1.placeholder(tf.float32, [4], name="x")
        y = tf.compat.v1.cond(phase, lambda: x * 2.0, lambda: x / 2.0)
        tf.identity(y, name="out")
        other = tf.compat.v1.placeholder_with_default(True, [], name="use_bias")  # not a mode flag
        tf.identity(tf.compat.v1.cond(other, lambda: x + 1.0, lambda: x), name="out2")
    graph = g.as_graph_def()
    assert training_flags(graph) == {"keras_learning_phase": False}
    out = passes.placeholder_defaults(graph, ctx(outputs=("out", "out2")))
    got = run_graph(out, {"x": np.array([0, 2, 8, 12], np.float32)}, ["out", "out2"])
    assert got["out"].tolist() == [0, 1, 4, 6] and got["out2"].tolist() == [1, 3, 9, 13]
