"""Tests for the ``static_reshape`` pass (kfreeze/optimize/passes/static_reshape.py)."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize import passes
from kfreeze.tfenv import tf
from tests.optimize.helpers import ATOL, RTOL, ctx, run, ops, by_name, const_value, flatten_graph


def test_static_reshape_gives_reshape_a_constant_shape(rng):
    graph = flatten_graph(rng)
    assert {"Shape", "StridedSlice", "Pack"} <= set(ops(graph))
    out = passes.static_reshape(graph, ctx(["x"]))

    hist = ops(out)
    assert not {"Shape", "StridedSlice", "Pack"} & set(hist)
    reshape = by_name(out)["flat"]
    assert reshape.op == "Reshape"
    assert const_value(out, reshape.input[1]).tolist() == [-1, 32]
    assert tf.as_dtype(by_name(out)[reshape.input[1]].attr["dtype"].type) == tf.int32

    for batch in (1, 3):
        xv = rng.normal(size=[batch, 4, 4, 2]).astype(np.float32)
        np.testing.assert_allclose(run(out, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)


def test_static_reshape_leaves_constant_and_ambiguous_shapes_alone(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, None, 4], name="x")
        a = tf.reshape(x, [-1, 4], name="const_shape")
        s = tf.shape(x)
        # two unknown dims: no constant shape can express it
        b = tf.reshape(a, tf.stack([s[0], s[1], 4]), name="dynamic")
        tf.identity(b, name="out")
    graph = g.as_graph_def()
    out = passes.static_reshape(graph, ctx(["x"]))
    assert out == graph
