"""Tests for the ``cut_inputs`` pass (kfreeze/optimize/passes/cut_inputs.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.errors import KfreezeError
from kfreeze.optimize import InputSpec, optimize, passes
from kfreeze.tfenv import tf
from tests.optimize.helpers import ATOL, RTOL, ctx, run, ops, by_name, const, mid_relu_graph, split_graph


def test_cut_inputs_turns_an_intermediate_tensor_into_a_placeholder(rng):
    graph = mid_relu_graph(rng)
    c = ctx([InputSpec("mid", shape=(-1, 4))])
    cut = passes.cut_inputs(graph, c)

    nodes = by_name(cut)
    assert nodes["mid"].op == "Placeholder"
    assert not nodes["mid"].input
    assert tf.as_dtype(nodes["mid"].attr["dtype"].type) == tf.float32
    assert tf.TensorShape(nodes["mid"].attr["shape"].shape).as_list() == [None, 4]
    # the cut node keeps its place in the node list
    assert [n.name for n in cut.node] == [n.name for n in graph.node]

    stripped = passes.strip_unused(cut, c)
    assert "x" not in by_name(stripped) and "Relu" not in ops(stripped)

    mid = rng.uniform(0, 2, size=[5, 4]).astype(np.float32)
    np.testing.assert_allclose(run(stripped, {"mid:0": mid}), run(graph, {"mid:0": mid}), rtol=RTOL, atol=ATOL)


def test_cut_inputs_replaces_a_tf_data_iterator():
    with tf.Graph().as_default() as g:
        ds = tf.data.Dataset.from_tensor_slices(np.zeros([6, 4], np.float32)).batch(2)
        feats = tf.compat.v1.data.make_one_shot_iterator(ds).get_next()
        tf.identity(tf.nn.relu(feats) * 2.0, name="out")
    graph = g.as_graph_def()
    assert "IteratorGetNext" in ops(graph)

    c = ctx([InputSpec("IteratorGetNext", shape=(None, 4))])
    out = passes.strip_unused(passes.cut_inputs(graph, c), c)
    hist = ops(out)
    assert by_name(out)["IteratorGetNext"].op == "Placeholder"
    assert not {"IteratorGetNext", "OneShotIterator", "TensorSliceDataset", "BatchDatasetV2"} & set(hist)

    x = np.random.default_rng(0).normal(size=[3, 4]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"IteratorGetNext:0": x}),
                               run(graph, {"IteratorGetNext:0": x}), rtol=RTOL, atol=ATOL)


def test_cut_inputs_casts_when_the_configured_dtype_differs(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        tf.identity(x * 0.5 + 1.0, name="out")
    graph = g.as_graph_def()
    c = ctx([InputSpec("x", dtype="uint8", shape=(None, 3))])
    out = passes.cut_inputs(graph, c)

    nodes = by_name(out)
    assert nodes["x"].op == "Placeholder"
    assert tf.as_dtype(nodes["x"].attr["dtype"].type) == tf.uint8
    cast = nodes["x/cast"]
    assert cast.op == "Cast" and list(cast.input) == ["x"]
    assert tf.as_dtype(cast.attr["SrcT"].type) == tf.uint8
    assert tf.as_dtype(cast.attr["DstT"].type) == tf.float32
    readers = [n.name for n in out.node if any(i.split(":")[0] == "x" for i in n.input)]
    assert readers == ["x/cast"]  # everything else now reads the cast

    pixels = rng.integers(0, 256, size=[4, 3]).astype(np.uint8)
    np.testing.assert_allclose(run(out, {"x:0": pixels}), run(graph, {"x:0": pixels.astype(np.float32)}),
                               rtol=RTOL, atol=ATOL)


def test_cut_inputs_same_dtype_adds_no_cast():
    graph = mid_relu_graph(np.random.default_rng(0))
    out = passes.cut_inputs(graph, ctx([InputSpec("x", dtype="float32")]))
    assert "Cast" not in ops(out)
    assert ops(out) == ops(graph)


def test_cut_inputs_port_tensor_gives_node_underscore_port(rng):
    graph = split_graph(rng)
    c = ctx([InputSpec("split:1", shape=(None, 2))])
    cut = passes.cut_inputs(graph, c)

    nodes = by_name(cut)
    assert nodes["split_1"].op == "Placeholder"
    assert tf.TensorShape(nodes["split_1"].attr["shape"].shape).as_list() == [None, 2]
    assert nodes["split"].op == "Split"  # the original node stays until strip_unused
    assert not any(i.startswith("split:1") for n in cut.node for i in n.input)

    out = passes.strip_unused(cut, c)
    assert "Split" not in ops(out) and "x" not in by_name(out)
    v = rng.normal(size=[3, 2]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"split_1:0": v}), run(graph, {"split:1": v}), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("shape", [(None, 4, 1), (4,), (None, 5)])
def test_cut_inputs_rejects_a_shape_that_does_not_fit(shape):
    graph = mid_relu_graph(np.random.default_rng(0))
    with pytest.raises(KfreezeError, match=r"shape \[.*\] does not fit the graph.s shape"):
        passes.cut_inputs(graph, ctx([InputSpec("mid", shape=shape)]))


def test_cut_inputs_port_placeholder_does_not_clobber_an_existing_node(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        _, b = tf.split(x, 2, axis=1)             # 'split'
        c, _ = tf.split(x * 2.0, 2, axis=1)       # 'split_1'
        tf.identity(b * 3.0 + c + tf.reduce_sum(x, 1, keepdims=True), name="out")
    graph = g.as_graph_def()
    assert by_name(graph)["split_1"].op == "Split"
    c = ctx([InputSpec("x"), InputSpec("split:1", shape=(None, 2))])
    try:
        out = passes.strip_unused(passes.cut_inputs(graph, c), c)
    except KfreezeError as e:
        assert "split_1" in str(e)  # refusing the name clash is acceptable too
        return
    xv = rng.normal(size=[3, 4]).astype(np.float32)
    bv = rng.normal(size=[3, 2]).astype(np.float32)
    # the name of the cut placeholder for split:1 is whatever cut_inputs chose; the old 'split_1' must survive
    assert by_name(out)["split_1"].op == "Split"
    placeholder = [n.name for n in out.node if n.op == "Placeholder" and n.name != "x"]
    assert len(placeholder) == 1
    np.testing.assert_allclose(run(out, {"x:0": xv, f"{placeholder[0]}:0": bv}),
                               run(graph, {"x:0": xv, "split:1": bv}), rtol=RTOL, atol=ATOL)


def test_cut_inputs_allows_a_smaller_batch_than_the_graphs_fixed_batch(rng):
    """An Estimator graph reshapes its queue input to [100, 28, 28, 1]; the seed's
    transform_graph strip_unused_nodes(shape="1,...") cuts it to batch 1."""
    with tf.Graph().as_default() as g:
        q = tf.compat.v1.placeholder(tf.float32, [100, 16], name="q")
        img = tf.reshape(q, [100, 4, 4, 1], name="reshape")
        y = tf.nn.conv2d(img, const(rng, 3, 3, 1, 2), 1, "SAME")
        tf.identity(tf.matmul(tf.reshape(y, [-1, 32]), const(rng, 32, 3)), name="out")
    c = ctx([InputSpec("reshape", shape=(1, 4, 4, 1))])
    out, _ = optimize(g.as_graph_def(), c)
    assert by_name(out)["reshape"].op == "Placeholder"
    xv = rng.normal(size=[100, 4, 4, 1]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"reshape:0": xv[:1]}), run(g.as_graph_def(), {"reshape:0": xv})[:1],
                               rtol=RTOL, atol=ATOL)
    with pytest.raises(KfreezeError, match=r"shape \[1, 4, 5, 1\] does not fit the graph.s shape \[100, 4, 4, 1\]"):  # the other dimensions must still fit
        passes.cut_inputs(g.as_graph_def(), ctx([InputSpec("reshape", shape=(1, 4, 5, 1))]))
