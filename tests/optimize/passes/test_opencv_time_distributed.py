"""Tests for the ``opencv_time_distributed`` pass (kfreeze/optimize/passes/opencv_time_distributed.py)."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, ctx, run
from tests.optimize.opencv_check import assert_opencv_matches


def _time_distributed(rng, steps=3, same_weights=True, strides=1):
    """TimeDistributed(Conv2D(4, 3, activation='relu')) as Keras unrolls it over fixed steps."""
    w = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, steps, 7, 7, 2], name="x")
        t = tf.transpose(x, [1, 0, 2, 3, 4])
        outs = []
        for i in range(steps):
            kernel = w if same_weights or i == 0 else w * 2
            y = tf.nn.conv2d(t[i], kernel, strides, "VALID")
            outs.append(tf.nn.relu(tf.nn.bias_add(y, b)))
        tf.transpose(tf.stack(outs), [1, 0, 2, 3, 4], name="out")
    return g.as_graph_def()


def test_time_distributed_conv2d_is_one_conv3d(rng):
    graph = _time_distributed(rng, strides=2)
    assert "opencv_time_distributed" not in dict(passes_for(ctx()))
    out = passes.opencv_time_distributed(graph, ctx(opencv=True))
    ops = {n.op for n in out.node}
    assert "Conv3D" in ops and not ops & {"StridedSlice", "Pack", "Conv2D", "Transpose"}
    assert by_name(out)["out"].op == "Relu"
    x = rng.normal(size=(1, 3, 7, 7, 2)).astype(np.float32)
    ref = run(graph, {"x:0": x})
    np.testing.assert_allclose(run(out, {"x:0": x}), ref, rtol=1e-5, atol=1e-5)
    assert_opencv_matches(out, {"x": x}, ref)


def test_time_distributed_with_different_weights_per_step_is_left(rng):
    graph = _time_distributed(rng, same_weights=False)
    assert passes.opencv_time_distributed(graph, ctx(opencv=True)) is graph
