"""Tests for the ``opencv_masking`` pass (kfreeze/optimize/passes/opencv_masking.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, ops, run
from tests.optimize.opencv_check import assert_opencv_matches, opencv_fails


def _masking(value, steps=6, features=3):
    """Keras' Masking(mask_value) as traced: SelectV2(Any(NotEqual(x, v), -1, keepdims), x, 0)."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, steps, features], name="x")
        keep = tf.reduce_any(tf.not_equal(x, value), axis=-1, keepdims=True)
        tf.where(keep, x, tf.constant(0.0), name="out")
    return passes.dense_constants(g.as_graph_def(), ctx(opencv=True))


@pytest.mark.parametrize("value", [0.5, 0.0, -3.0])
def test_masking_is_arithmetic_with_the_same_numbers(rng, value):
    graph = _masking(value)
    assert "opencv_masking" not in dict(passes_for(ctx()))
    out = passes.opencv_masking(graph, ctx(opencv=True))
    assert not {"NotEqual", "Any", "SelectV2"} & set(ops(out)) and by_name(out)["out"].op == "Reshape"
    x = rng.normal(size=(1, 6, 3)).astype(np.float32)
    x[0, 1, :] = value         # a masked step: zeros
    x[0, 3, 1] = value         # one feature equal: kept
    x[0, 4, 2] = value + 1e-6  # close but not equal: kept
    ref = run(graph, {"x:0": x})
    assert not ref[0, 1].any() and (ref[0, 3:5] == x[0, 3:5]).all()
    np.testing.assert_array_equal(run(out, {"x:0": x}), ref)
    assert opencv_fails(graph, {"x": x})
    assert_opencv_matches(out, {"x": x}, ref)


def test_a_select_that_is_no_masking_stays():
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 6, 3], name="x")
        keep = tf.reduce_any(tf.not_equal(x, 0.5), axis=1, keepdims=True)  # over the steps, not the features
        tf.where(keep, x, tf.constant(0.0), name="out")
    graph = g.as_graph_def()
    assert passes.opencv_masking(graph, ctx(opencv=True)) is graph
