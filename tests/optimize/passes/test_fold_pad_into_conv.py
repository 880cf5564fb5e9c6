"""Tests for the ``fold_pad_into_conv`` pass (kfreeze/optimize/passes/fold_pad_into_conv.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import passes
from kfreeze.tfenv import tf
from tests.optimize.helpers import ctx, ops, same_numbers, pad_graph


@pytest.mark.parametrize("pads,kernel,stride,depthwise,padding", [
    (([0, 1], [0, 1]), 3, 2, False, b"SAME"),      # Keras correct_pad: exactly TF's SAME
    (([0, 1], [0, 1]), 3, 2, True, b"SAME"),
    (([3, 3], [3, 3]), 7, 2, False, b"EXPLICIT"),  # ResNet's conv1_pad: not SAME
    (([1, 1], [1, 1]), 3, 1, False, b"SAME"),
    (([2, 0], [0, 1]), 3, 1, True, b"EXPLICIT"),
])
def test_fold_pad_into_conv(rng7, pads, kernel, stride, depthwise, padding):
    graph = pad_graph(rng7, pads, kernel, stride, depthwise)
    out = passes.fold_pad_into_conv(graph, ctx())
    assert "Pad" not in ops(out) and "PadV2" not in ops(out)
    conv = next(n for n in out.node if n.op in ("Conv2D", "DepthwiseConv2dNative"))
    assert conv.attr["padding"].s == padding
    if padding == b"EXPLICIT":
        assert list(conv.attr["explicit_paddings"].list.i) == [0, 0, *pads[0], *pads[1], 0, 0]
    same_numbers(out, graph, rng7.normal(size=[1, 8, 8, 3]).astype(np.float32))


def test_fold_pad_into_conv_leaves_a_nonzero_fill(rng7):
    graph = pad_graph(rng7, ([1, 1], [1, 1]), 3, 1, fill=1.0)
    assert passes.fold_pad_into_conv(graph, ctx()) is graph


def test_fold_pad_into_conv_leaves_a_pad_before_max_pool():
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 3], name="x")
        tf.identity(tf.nn.max_pool2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), 3, 2, "VALID"), name="out")
    graph = g.as_graph_def()
    assert passes.fold_pad_into_conv(graph, ctx()) is graph
