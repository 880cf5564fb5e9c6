"""Tests for the ``static_shapes`` pass."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize import passes
from kfreeze.tfenv import tf
from tests.optimize.helpers import ctx, ops, same_numbers


def test_shape_of_a_fixed_input_becomes_a_constant_and_a_free_batch_stays(rng7):
    def graph_for(batch):
        with tf.Graph().as_default() as g:
            x = tf.compat.v1.placeholder(tf.float32, [batch, 4, 4, 3], name="x")
            n = tf.shape(x)[0]
            k = tf.constant(rng7.normal(size=(3, 3, 2, 3)).astype(np.float32))
            y = tf.nn.conv2d_transpose(x, k, tf.stack([n, 8, 8, 2]), 2, "SAME")
            tf.identity(y + tf.cast(tf.size(x) + tf.rank(x), tf.float32), name="out")
        return g.as_graph_def()
    fixed = graph_for(1)
    out = passes.static_shapes(fixed, ctx())
    assert not {"Shape", "Size", "Rank"} & set(ops(out)), ops(out)
    same_numbers(out, fixed, rng7.normal(size=[1, 4, 4, 3]).astype(np.float32))
    free = graph_for(None)
    kept = passes.static_shapes(free, ctx())
    assert ops(kept)["Shape"] == 1 and "Rank" not in ops(kept)  # the batch is unknown: Shape stays; Rank is known
