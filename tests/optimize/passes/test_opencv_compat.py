"""Tests for the ``opencv_compat`` pass (kfreeze/optimize/passes/opencv_compat.py)."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize import passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import ctx, ops, same_numbers


def test_opencv_compat_spells_addv2_as_add(rng7):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4], name="x")
        tf.nn.relu(tf.raw_ops.AddV2(x=x, y=x * 2.0), name="out")
    graph = g.as_graph_def()
    assert "opencv_compat" not in dict(passes_for(ctx()))  # off by default
    out = passes.opencv_compat(graph, ctx(opencv=True))
    assert "AddV2" not in ops(out) and ops(out)["Add"] == 1
    same_numbers(out, graph, rng7.normal(size=[1, 4]).astype(np.float32))
