"""Tests for the ``opencv_global_pool3d`` pass (kfreeze/optimize/passes/opencv_global_pool3d.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, run
from tests.optimize.opencv_check import assert_opencv_matches, opencv_fails


def _global_pool3d(reduce, keepdims=False, axes=(1, 2, 3)):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4, 3, 5, 2], name="x")
        reduce(x * 1.0, axis=list(axes), keepdims=keepdims, name="out")  # the Mul: opencv_input_feed's
    return g.as_graph_def()


@pytest.mark.parametrize("reduce", [tf.reduce_mean, tf.reduce_max], ids=["average", "max"])
def test_global_pool3d_is_a_pooling_over_the_volume(rng, reduce):
    graph = _global_pool3d(reduce)
    assert "opencv_global_pool3d" not in dict(passes_for(ctx()))
    out = passes.opencv_global_pool3d(graph, ctx(opencv=True))
    nodes = by_name(out)
    assert nodes["out"].op == "Reshape" and nodes[nodes["out"].input[0]].op in ("AvgPool3D", "MaxPool3D")
    x = rng.normal(size=(1, 4, 3, 5, 2)).astype(np.float32)
    ref = run(graph, {"x:0": x})
    np.testing.assert_allclose(run(out, {"x:0": x}), ref, rtol=1e-6, atol=1e-6)
    assert opencv_fails(graph, {"x": x})
    assert_opencv_matches(out, {"x": x}, ref)


def test_global_pool3d_keep_dims_and_other_axes(rng):
    graph = _global_pool3d(tf.reduce_mean, keepdims=True)
    out = passes.opencv_global_pool3d(graph, ctx(opencv=True))
    assert by_name(out)["out"].op == "AvgPool3D"
    x = rng.normal(size=(1, 4, 3, 5, 2)).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": x}), run(graph, {"x:0": x}), rtol=1e-6, atol=1e-6)
    graph = _global_pool3d(tf.reduce_mean, axes=(1, 2))  # not the whole volume
    assert passes.opencv_global_pool3d(graph, ctx(opencv=True)) is graph
