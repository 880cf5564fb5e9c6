"""Tests for kfreeze/optimize/__init__.py."""

from __future__ import annotations

import numpy as np

from kfreeze import graphio
from kfreeze.optimize import PASSES, Context, InputSpec, optimize, passes, passes_for
from kfreeze.tfenv import tf
from tests.optimize.helpers import ATOL, RTOL, ctx, run, ops, by_name, const, assert_topological, mid_relu_graph, small_net, same_numbers, scale_graph


def test_optimize_pipeline(rng):
    graph = small_net(rng)
    c = ctx([InputSpec("image", dtype="uint8", shape=(None, 6, 6, 1))])
    out, stats = optimize(graph, c)

    assert [s.name for s in stats] == [name for name, _ in passes_for(c)]
    assert [name for name, _ in passes_for(c)] == [step.name for step in PASSES
                                                   if not step.name.startswith("opencv_") and step.name != "float16_weights"]
    assert stats[0].ops_before == len(graph.node) and stats[-1].ops_after == len(out.node)
    for prev, nxt in zip(stats, stats[1:]):
        assert prev.ops_after == nxt.ops_before
    for s in stats:
        d = s.as_dict()
        assert {"pass", "ops_before", "ops_after", "removed", "added"} <= set(d)
        assert s.ops_after - s.ops_before == sum(s.added.values()) - sum(s.removed.values())
    by_pass = {s.name: s for s in stats}
    assert by_pass["cut_inputs"].added == {"Cast": 1}
    assert by_pass["placeholder_defaults"].removed == {"PlaceholderWithDefault": 1}
    assert {"Shape", "Pack"} <= set(by_pass["static_reshape"].removed)
    assert by_pass["fold_affine"].removed.get("Mul", 0) >= 1

    hist = ops(out)
    assert len(out.node) < len(graph.node)
    assert hist == {"BiasAdd": 2, "Cast": 1, "Const": 5, "Conv2D": 1, "MatMul": 1, "Placeholder": 1,
                    "Relu": 1, "Reshape": 1, "Softmax": 1}, hist
    nodes = by_name(out)
    assert nodes["image"].op == "Placeholder" and tf.as_dtype(nodes["image"].attr["dtype"].type) == tf.uint8
    assert nodes["out"].op == "Softmax"
    assert "unused" not in nodes and "is_training" not in nodes
    assert_topological(out)

    pixels = rng.integers(0, 256, size=[3, 6, 6, 1]).astype(np.uint8)
    np.testing.assert_allclose(run(out, {"image:0": pixels}),
                               run(graph, {"image:0": pixels.astype(np.float32)}), rtol=RTOL, atol=ATOL)


def test_optimize_with_a_custom_pipeline_reports_only_those_passes(rng):
    graph = mid_relu_graph(rng)
    pipeline = [("strip_unused", passes.strip_unused), ("check_portable", passes.check_portable)]
    out, stats = optimize(graph, ctx(["x"]), pipeline)
    assert [s.name for s in stats] == ["strip_unused", "check_portable"]
    assert stats[1].ops_before == stats[1].ops_after and not stats[1].removed and not stats[1].added


def test_optional_passes_run_only_when_asked():
    names = [n for n, _ in passes_for(ctx())]
    assert "opencv_compat" not in names and "float16_weights" not in names
    names = [n for n, _ in passes_for(ctx(opencv=True, precision="float16"))]
    assert {"opencv_compat", "float16_weights"} <= set(names)
    assert names[-2:] == ["sort_by_execution_order", "check_portable"]


def test_optimize_is_deterministic_and_beats_grappler_on_a_keras_like_block(rng7):
    """Pad -> conv -> BN-as-Mul -> Relu -> concat -> BN -> Relu -> 1x1 conv, as DenseNet and ResNet emit it."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 3], name="x")
        y = tf.nn.conv2d(tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]]), const(rng7, 3, 3, 3, 4), 2, "VALID")
        y = tf.nn.relu(y * const(rng7, 4, low=0.5, high=1.5))
        y = tf.concat([y, y * 0.5], axis=3)
        y = tf.nn.relu(y * const(rng7, 8, low=0.5, high=1.5))
        y = tf.nn.conv2d(y, const(rng7, 1, 1, 8, 2), 1, "VALID")
        y = tf.reshape(tf.reduce_mean(y, axis=[1, 2]), [-1, 1, 1, 2])
        tf.identity(tf.nn.softmax(tf.reshape(y, [-1, 2])), name="out")
    graph = g.as_graph_def()
    c = Context((InputSpec("x", shape=(1, 8, 8, 3)),), ("out",))
    out, stats = optimize(graph, c)
    again, _ = optimize(graph, c)
    assert graphio.graph_bytes(out) == graphio.graph_bytes(again)
    from kfreeze.optimize import passes
    grappled = passes.grappler(graph, c)
    assert len(out.node) < len(grappled.node)
    assert not {"Pad", "Identity"} & set(ops(out))
    by_pass = {s.name: s for s in stats}
    assert by_pass["fold_input_scale"].removed.get("Mul", 0) >= 1
    assert by_pass["fold_pad_into_conv"].removed == {"Const": 1, "Pad": 1}
    same_numbers(out, graph, rng7.uniform(size=[1, 8, 8, 3]).astype(np.float32))


def test_fold_input_scale_is_off_in_opencv_mode(rng7):
    graph = scale_graph(rng7, rng7.uniform(0.5, 2.0, size=[4]), "relu_conv")
    steps = dict(passes_for(ctx(opencv=True)))  # listed, as before, but it changes nothing
    assert steps["fold_input_scale"](graph, ctx(opencv=True)) is graph
    assert dict(passes_for(ctx()))["fold_input_scale"](graph, ctx()) is not graph
