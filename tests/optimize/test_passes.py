"""Unit tests for the optimization passes, each on a tiny tf.compat.v1 graph.

Every test checks the structure a pass must produce (which ops go, which stay,
which names survive) and that the numbers do not change.
"""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze import graphio
from kfreeze.errors import KfreezeError
from kfreeze.optimize import PASSES, Context, InputSpec, optimize, passes, passes_for
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2

RTOL = ATOL = 1e-5


# -- helpers --------------------------------------------------------------------

def run(graph: graph_pb2.GraphDef, feeds: dict, fetch: str = "out:0"):
    """Import ``graph`` into a fresh tf.Graph and run ``fetch`` with tensor-name ``feeds``."""
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(graph, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            return sess.run(fetch, feed_dict=feeds)


def ops(graph: graph_pb2.GraphDef) -> dict[str, int]:
    return graphio.op_histogram(graph)


def by_name(graph: graph_pb2.GraphDef) -> dict[str, node_def_pb2.NodeDef]:
    return {n.name: n for n in graph.node}


def const(rng, *shape, low=None, high=None):
    if low is None:
        value = rng.normal(size=shape)
    else:
        value = rng.uniform(low, high, size=shape)
    return tf.constant(value.astype(np.float32))


def const_value(graph: graph_pb2.GraphDef, name: str) -> np.ndarray:
    node = by_name(graph)[name.split(":")[0]]
    assert node.op == "Const", f"{name} is a {node.op}, not a Const"
    return tf.make_ndarray(node.attr["value"].tensor)


def ctx(inputs, outputs=("out",)) -> Context:
    return Context(tuple(i if isinstance(i, InputSpec) else InputSpec(i) for i in inputs), tuple(outputs))


def assert_topological(graph: graph_pb2.GraphDef) -> None:
    seen = set()
    for node in graph.node:
        for inp in node.input:
            assert inp.lstrip("^").split(":")[0] in seen, f"{node.name} reads {inp} before it is defined"
        seen.add(node.name)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# -- cut_inputs -----------------------------------------------------------------

def mid_relu_graph(rng):
    """x -> Mul -> Relu 'mid' -> MatMul -> 'out'."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        mid = tf.nn.relu(x * 3.0, name="mid")
        tf.identity(tf.matmul(mid, const(rng, 4, 3)), name="out")
    return g.as_graph_def()


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


def split_graph(rng):
    """x -> Split 'split' (2 outputs); the output reads only split:1."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        _, right = tf.split(x, 2, axis=1, name="split")
        tf.identity(tf.matmul(right, const(rng, 2, 3)), name="out")
    return g.as_graph_def()


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
    with pytest.raises(KfreezeError, match="input_shape"):
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


# -- placeholder_defaults -------------------------------------------------------

def flag_graph():
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        keep = tf.compat.v1.placeholder_with_default(0.25, [], name="keep_prob")
        tf.identity(x * keep, name="out")
    return g.as_graph_def()


def test_placeholder_defaults_resolves_flags_that_are_not_inputs():
    graph = flag_graph()
    out = passes.placeholder_defaults(graph, ctx(["x"]))
    node = by_name(out)["keep_prob"]
    assert node.op == "Identity"
    assert list(node.input) == list(by_name(graph)["keep_prob"].input)
    assert by_name(out)[node.input[0]].op == "Const"
    assert tf.as_dtype(node.attr["T"].type) == tf.float32
    assert "PlaceholderWithDefault" not in ops(out)
    assert set(node.attr) == {"T"}

    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(run(out, {"x:0": xv}), xv * 0.25, rtol=RTOL, atol=ATOL)
    # the resolved flag constant-folds in Grappler
    folded = passes.grappler(out, ctx(["x"]))
    assert by_name(folded)["keep_prob"].op == "Const"
    assert "PlaceholderWithDefault" not in ops(folded)
    np.testing.assert_allclose(run(folded, {"x:0": xv}), xv * 0.25, rtol=RTOL, atol=ATOL)


def test_placeholder_defaults_keeps_a_flag_that_is_an_input():
    graph = flag_graph()
    out = passes.placeholder_defaults(graph, ctx(["x", "keep_prob"]))
    assert by_name(out)["keep_prob"].op == "PlaceholderWithDefault"
    assert out == graph
    xv = np.ones([1, 3], np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv, "keep_prob:0": 0.5}), xv * 0.5)


# -- strip_unused ---------------------------------------------------------------

def test_strip_unused_drops_nodes_the_outputs_do_not_need(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        h = tf.nn.relu(x, name="h")
        tf.identity(tf.reduce_sum(h), name="loss_like")     # a side branch
        tf.nn.sigmoid(x, name="unused_head")
        tf.identity(h * 2.0, name="out")
    graph = g.as_graph_def()
    out = passes.strip_unused(graph, ctx(["x"]))
    names = set(by_name(out))
    assert {"x", "h", "out"} <= names
    assert not {"loss_like", "unused_head", "Sum"} & names
    assert "Sigmoid" not in ops(out)
    xv = rng.normal(size=[2, 4]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)


def test_strip_unused_rejects_an_input_downstream_of_the_output():
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        out = tf.nn.relu(x, name="out")
        tf.nn.sigmoid(out, name="after")
    graph = g.as_graph_def()
    with pytest.raises(KfreezeError, match="does not feed any of the outputs") as e:
        passes.strip_unused(graph, ctx(["after"]))
    assert "input 'after'" in str(e.value)


def test_strip_unused_rejects_a_missing_output():
    graph = mid_relu_graph(np.random.default_rng(0))
    with pytest.raises(KfreezeError, match="output 'nope'"):
        passes.strip_unused(graph, ctx(["x"], ["nope"]))


def test_strip_unused_rejects_a_port_cut_when_the_outputs_read_another_port(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        a, b = tf.split(x, 2, axis=1, name="split")
        tf.identity(a + b, name="out")
    graph = g.as_graph_def()
    c = ctx([InputSpec("split:1", shape=(None, 2))])
    with pytest.raises(KfreezeError, match="cannot be cut there"):
        passes.strip_unused(passes.cut_inputs(graph, c), c)


def test_strip_unused_rejects_a_port0_cut_when_the_outputs_read_another_port():
    with tf.Graph().as_default() as g:
        ds = tf.data.Dataset.from_tensors((np.zeros([2, 4], np.float32), np.zeros([2], np.int32)))
        feats, labels = tf.compat.v1.data.make_one_shot_iterator(ds).get_next()
        tf.identity(feats * 2.0 + tf.expand_dims(tf.cast(labels, tf.float32), 1), name="out")
    graph = g.as_graph_def()
    c = ctx([InputSpec("IteratorGetNext", shape=(None, 4))])
    with pytest.raises(KfreezeError, match="IteratorGetNext:1|cannot be cut there"):
        passes.strip_unused(passes.cut_inputs(graph, c), c)


# -- static_reshape -------------------------------------------------------------

def flatten_graph(rng):
    """Keras-3-style Flatten: Reshape(x, Pack([StridedSlice(Shape(x)), 32]))."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4, 4, 2], name="x")
        h = tf.nn.relu(x)
        batch = tf.shape(h)[0]
        flat = tf.reshape(h, tf.stack([batch, 32]), name="flat")
        tf.identity(tf.matmul(flat, const(rng, 32, 3)), name="out")
    return g.as_graph_def()


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


# -- transform_graph ------------------------------------------------------------

def conv_bn_graph(rng, bn_op):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 6, 6, 2], name="x")
        conv = tf.nn.conv2d(x, const(rng, 3, 3, 2, 4), 1, "SAME", name="conv")
        y = bn_op(x=conv, scale=const(rng, 4, low=0.5, high=1.5), offset=const(rng, 4), mean=const(rng, 4),
                  variance=const(rng, 4, low=0.5, high=2.0), epsilon=1e-3, is_training=False, name="bn")[0]
        tf.nn.relu(y, name="out")
    return g.as_graph_def()


@pytest.mark.parametrize("bn_name", ["FusedBatchNorm", "FusedBatchNormV3"])
def test_transform_graph_folds_fused_batch_norm_into_conv(rng, bn_name):
    """TransformGraph folds V1; V3 (what tf.compat.v1.nn.fused_batch_norm emits) needs
    batch_norm_to_affine + fold_affine. Either way no batch norm is left."""
    graph = conv_bn_graph(rng, getattr(tf.raw_ops, bn_name))
    assert bn_name in ops(graph)
    c = ctx(["x"])
    out = passes.fold_affine(passes.batch_norm_to_affine(passes.transform_graph(graph, c), c), c)
    hist = ops(out)
    assert not any(op.startswith("FusedBatchNorm") for op in hist), hist
    assert hist.get("Conv2D") == 1 and hist.get("BiasAdd") == 1 and "Mul" not in hist
    assert "out" in by_name(out) and "x" in by_name(out)
    xv = rng.normal(size=[2, 6, 6, 2]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)


def test_batch_norm_to_affine_after_a_bias_add(rng):
    """Conv -> BiasAdd -> FusedBatchNormV3: TransformGraph's pattern misses it; ours folds it whole."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 6, 6, 2], name="x")
        conv = tf.nn.bias_add(tf.nn.conv2d(x, const(rng, 3, 3, 2, 4), 1, "SAME"), const(rng, 4))
        y = tf.compat.v1.nn.fused_batch_norm(conv, const(rng, 4, low=0.5, high=1.5), const(rng, 4),
                                             mean=const(rng, 4), variance=const(rng, 4, low=0.5, high=2.0),
                                             is_training=False)[0]
        tf.identity(y, name="out")
    graph = g.as_graph_def()
    c = ctx(["x"])
    out = passes.fold_affine(passes.batch_norm_to_affine(graph, c), c)
    assert ops(out) == {"Placeholder": 1, "Const": 2, "Conv2D": 1, "BiasAdd": 1, "Identity": 1}
    xv = rng.normal(size=[3, 6, 6, 2]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)


def test_batch_norm_to_affine_leaves_training_mode_alone(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4, 4, 2], name="x")
        y = tf.compat.v1.nn.fused_batch_norm(x, tf.ones([2]), tf.zeros([2]), is_training=True)[0]
        tf.identity(y, name="out")
    graph = g.as_graph_def()
    out = passes.batch_norm_to_affine(graph, ctx(["x"]))
    assert "FusedBatchNormV3" in ops(out)


def test_compat_v1_fused_batch_norm_emits_v3():
    """Context for the xfail above: the graph-mode API users call produces FusedBatchNormV3."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 2, 2, 2])
        tf.compat.v1.nn.fused_batch_norm(x, tf.ones([2]), tf.zeros([2]), mean=tf.zeros([2]),
                                         variance=tf.ones([2]), is_training=False)
    assert "FusedBatchNormV3" in ops(g.as_graph_def())


# -- grappler -------------------------------------------------------------------

def test_grappler_folds_constant_subexpressions(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        w = tf.matmul(const(rng, 3, 3), const(rng, 3, 3)) * tf.constant(2.0)   # all constant
        bias = tf.exp(tf.constant([0.1, 0.2, 0.3]))
        tf.identity(tf.matmul(x, w) + bias, name="out")
    graph = g.as_graph_def()
    before = ops(graph)
    assert before["MatMul"] == 2 and "Exp" in before

    out = passes.grappler(graph, ctx(["x"]))
    hist = ops(out)
    assert hist.get("MatMul") == 1 and "Exp" not in hist
    assert sum(hist.values()) < sum(before.values())
    nodes = by_name(out)
    assert "out" in nodes and nodes["x"].op == "Placeholder"
    assert not [n.op for n in out.node if n.op.startswith("_")]
    assert not out.library.function

    xv = rng.normal(size=[4, 3]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)


def test_grappler_keeps_the_output_name_when_it_is_a_foldable_identity(rng):
    graph = mid_relu_graph(rng)
    out = passes.grappler(graph, ctx(["x"]))
    assert by_name(out)["out"].op == "Identity"
    assert not [n.op for n in out.node if n.op.startswith("_")]
    xv = rng.normal(size=[2, 4]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)


# -- fold_affine ----------------------------------------------------------------

def test_fold_affine_conv_bias_mul_add(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 5, 5, 2], name="x")
        y = tf.nn.conv2d(x, const(rng, 3, 3, 2, 4), 1, "VALID", name="conv")
        y = tf.nn.bias_add(y, const(rng, 4), name="bias")
        y = tf.multiply(y, const(rng, 4, low=0.5, high=2.0), name="bn_mul")
        y = tf.add(y, const(rng, 4), name="bn_add")
        tf.nn.relu(y, name="out")
    graph = g.as_graph_def()
    assert {"Mul", "AddV2"} <= set(ops(graph))

    out = passes.fold_affine(graph, ctx(["x"]))
    hist = ops(out)
    assert hist.get("Conv2D") == 1 and hist.get("BiasAdd") == 1 and hist.get("Relu") == 1
    assert not {"Mul", "AddV2", "Add"} & set(hist)
    nodes = by_name(out)
    assert nodes["out"].input[0] == "bn_add" and nodes["bn_add"].op == "BiasAdd"
    assert nodes[nodes["bn_add"].input[0]].op == "Conv2D"
    assert nodes["bn_add"].attr["data_format"].s == b"NHWC"
    assert_topological(passes.sort_by_execution_order(out, ctx(["x"])))

    xv = rng.normal(size=[3, 5, 5, 2]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("transpose_b", [False, True])
def test_fold_affine_matmul_scalar_mul_then_vector_add(rng, transpose_b):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        w = const(rng, 3, 4) if transpose_b else const(rng, 4, 3)
        y = tf.matmul(x, w, transpose_b=transpose_b, name="dense")
        y = tf.multiply(tf.constant(1.5), y, name="scale")       # scalar, constant first
        tf.raw_ops.Add(x=y, y=const(rng, 3), name="out")          # v1 'Add'
    graph = g.as_graph_def()
    assert {"Mul", "Add"} <= set(ops(graph))

    out = passes.fold_affine(graph, ctx(["x"]))
    hist = ops(out)
    assert hist.get("MatMul") == 1 and hist.get("BiasAdd") == 1
    assert not {"Mul", "Add", "AddV2"} & set(hist)
    nodes = by_name(out)
    assert nodes["out"].op == "BiasAdd" and nodes[nodes["out"].input[0]].op == "MatMul"
    assert nodes[nodes["out"].input[0]].attr["transpose_b"].b == transpose_b

    xv = rng.normal(size=[5, 4]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)


def test_fold_affine_depthwise_conv_mul(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 5, 5, 3], name="x")
        y = tf.nn.depthwise_conv2d(x, const(rng, 3, 3, 3, 2), [1, 1, 1, 1], "SAME", name="dw")
        tf.multiply(y, const(rng, 1, 1, 1, 6), name="out")  # [1, 1, 1, C*multiplier]
    graph = g.as_graph_def()
    assert {"DepthwiseConv2dNative", "Mul"} <= set(ops(graph))

    out = passes.fold_affine(graph, ctx(["x"]))
    hist = ops(out)
    assert "Mul" not in hist
    assert by_name(out)["out"].op == "DepthwiseConv2dNative"

    xv = rng.normal(size=[2, 5, 5, 3]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)


def test_fold_affine_leaves_a_conv_with_two_consumers(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 5, 5, 2], name="x")
        w = const(rng, 3, 3, 2, 4)
        y = tf.nn.conv2d(x, w, 1, "SAME", name="conv")
        scaled = tf.multiply(y, const(rng, 4), name="scaled")
        tf.add(scaled, tf.nn.relu(y), name="out")
    graph = g.as_graph_def()
    out = passes.fold_affine(graph, ctx(["x"]))
    assert ops(out) == ops(graph)
    nodes = by_name(out)
    assert nodes["scaled"].op == "Mul" and nodes["conv"].op == "Conv2D"
    np.testing.assert_array_equal(const_value(out, nodes["conv"].input[1]),
                                  const_value(graph, by_name(graph)["conv"].input[1]))

    xv = rng.normal(size=[2, 5, 5, 2]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)


def test_fold_affine_leaves_a_mul_by_a_non_constant(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 5, 5, 2], name="x")
        gate = tf.compat.v1.placeholder(tf.float32, [None, 1, 1, 4], name="gate")
        y = tf.nn.conv2d(x, const(rng, 3, 3, 2, 4), 1, "SAME", name="conv")
        tf.multiply(y, gate, name="out")
    graph = g.as_graph_def()
    out = passes.fold_affine(graph, ctx(["x", "gate"]))
    assert ops(out) == ops(graph)
    assert by_name(out)["out"].op == "Mul"
    xv = rng.normal(size=[2, 5, 5, 2]).astype(np.float32)
    gv = rng.normal(size=[2, 1, 1, 4]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv, "gate:0": gv}), run(graph, {"x:0": xv, "gate:0": gv}),
                               rtol=RTOL, atol=ATOL)


def test_fold_affine_leaves_an_inner_node_that_is_an_output(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        y = tf.matmul(x, const(rng, 4, 3), name="logits")
        tf.multiply(y, 2.0, name="out")
    graph = g.as_graph_def()
    out = passes.fold_affine(graph, ctx(["x"], ["logits", "out"]))
    assert by_name(out)["logits"].op == "MatMul" and by_name(out)["out"].op == "Mul"


def test_fold_affine_leaves_nchw_conv_alone(rng):
    """W == C == 4: a [4] Mul scales the W axis of an NCHW conv, so folding it into the
    output channels would be wrong. (Structure only: TF on CPU cannot run an NCHW Conv2D.)"""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 2, 4, 4], name="x")
        y = tf.nn.conv2d(x, const(rng, 3, 3, 2, 4), 1, "SAME", data_format="NCHW", name="conv")
        tf.multiply(y, const(rng, 4), name="out")
    graph = g.as_graph_def()
    out = passes.fold_affine(graph, ctx(["x"]))
    assert ops(out) == ops(graph) and by_name(out)["out"].op == "Mul"
    np.testing.assert_array_equal(const_value(out, by_name(out)["conv"].input[1]),
                                  const_value(graph, by_name(graph)["conv"].input[1]))


@pytest.mark.parametrize("width, outer", [(5, "add"), (3, "mul")])
def test_fold_affine_respects_an_nchw_bias_add(rng, width, outer):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 3, 4, width], name="x")  # N C H W, C=3
        y = tf.nn.bias_add(tf.nn.relu(x), const(rng, 3), data_format="NCHW", name="bias")
        if outer == "add":
            tf.add(y, tf.constant(0.5), name="out")
        else:
            tf.multiply(y, tf.constant(2.0), name="out")
    graph = g.as_graph_def()
    xv = rng.normal(size=[2, 3, 4, width]).astype(np.float32)
    expected = run(graph, {"x:0": xv})
    out = passes.fold_affine(graph, ctx(["x"]))
    np.testing.assert_allclose(run(out, {"x:0": xv}), expected, rtol=RTOL, atol=ATOL)


# -- sort_by_execution_order ----------------------------------------------------

def test_sort_by_execution_order_is_topological_and_deterministic(rng):
    graph = flatten_graph(rng)
    shuffled = graph_pb2.GraphDef()
    shuffled.CopyFrom(graph)
    nodes = list(shuffled.node)
    nodes.reverse()  # every consumer now comes before its inputs
    del shuffled.node[:]
    shuffled.node.extend(nodes)
    with pytest.raises(AssertionError):
        assert_topological(shuffled)

    c = ctx(["x"])
    first = passes.sort_by_execution_order(shuffled, c)
    second = passes.sort_by_execution_order(shuffled, c)
    assert_topological(first)
    assert sorted(n.name for n in first.node) == sorted(n.name for n in graph.node)
    assert first.SerializeToString(deterministic=True) == second.SerializeToString(deterministic=True)

    xv = rng.normal(size=[2, 4, 4, 2]).astype(np.float32)
    np.testing.assert_allclose(run(first, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)


# -- check_portable -------------------------------------------------------------

def test_check_portable_rejects_internal_ops():
    graph = mid_relu_graph(np.random.default_rng(0))
    fused = graph.node.add()
    fused.CopyFrom(node_def_pb2.NodeDef(name="fused", op="_FusedConv2D", input=["x"]))
    with pytest.raises(KfreezeError, match="_FusedConv2D"):
        passes.check_portable(graph, ctx(["x"]))


def test_check_portable_rejects_unregistered_ops():
    graph = mid_relu_graph(np.random.default_rng(0))
    graph.node.add().CopyFrom(node_def_pb2.NodeDef(name="odd", op="NotARealTfOp", input=["x"]))
    with pytest.raises(KfreezeError, match="NotARealTfOp"):
        passes.check_portable(graph, ctx(["x"]))


def test_check_portable_passes_a_standard_graph_unchanged():
    graph = mid_relu_graph(np.random.default_rng(0))
    snapshot = graph.SerializeToString(deterministic=True)
    out = passes.check_portable(graph, ctx(["x"]))
    assert out.SerializeToString(deterministic=True) == snapshot


# -- the whole pipeline ---------------------------------------------------------

def small_net(rng):
    """uint8-fed conv + Keras-3-style batch norm (Mul/Add) + ReLU + dynamic Flatten + dense softmax,
    with an is_training flag and a side branch the outputs do not need."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 6, 6, 1], name="image")
        training = tf.compat.v1.placeholder_with_default(False, [], name="is_training")
        y = tf.nn.conv2d(x, const(rng, 3, 3, 1, 4), 1, "SAME", name="conv")
        y = tf.nn.bias_add(y, const(rng, 4), name="conv_bias")
        mean, var = const(rng, 4), const(rng, 4, low=0.5, high=2.0)
        gamma, beta = const(rng, 4, low=0.5, high=1.5), const(rng, 4)
        inv = tf.math.rsqrt(var + 1e-3) * gamma
        y = y * inv + (beta - mean * inv)
        y = tf.nn.relu(y, name="relu")
        drop = 1.0 - 0.5 * tf.cast(training, tf.float32)
        y = y * drop
        flat = tf.reshape(y, tf.stack([tf.shape(y)[0], 6 * 6 * 4]), name="flat")
        logits = tf.nn.bias_add(tf.matmul(flat, const(rng, 144, 3)), const(rng, 3), name="logits")
        tf.nn.softmax(logits, name="out")
        tf.reduce_mean(logits, name="unused")
    return g.as_graph_def()


def test_optimize_pipeline(rng):
    graph = small_net(rng)
    c = ctx([InputSpec("image", dtype="uint8", shape=(None, 6, 6, 1))])
    out, stats = optimize(graph, c)

    assert [s.name for s in stats] == [name for name, _ in passes_for(c)]
    assert [name for name, _ in passes_for(c)] == [name for name, _ in PASSES
                                                   if name not in ("opencv_compat", "float16_weights")]
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


# -- remove_dropout -------------------------------------------------------------

def _dropout_graph(rng, form, rate_value):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 6], name="x")
        h = tf.matmul(x, const(rng, 6, 4))
        if form == "v2":  # TF >= 1.13: SelectV2(GreaterEqual(uniform, rate), x / (1 - rate), 0)
            rate = tf.compat.v1.placeholder_with_default(rate_value, [], name="dropout_rate")
            h = tf.nn.dropout(h, rate=rate)
        else:  # TF < 1.13: x / keep_prob * floor(keep_prob + uniform)
            keep = tf.compat.v1.placeholder_with_default(1.0 - rate_value, [], name="keep_prob")
            mask = tf.floor(keep + tf.random.uniform(tf.shape(h)))
            h = h / keep * mask
        tf.nn.softmax(h, name="out")
    return g.as_graph_def()


@pytest.mark.parametrize("form", ["v2", "old"])
def test_remove_dropout_at_rate_zero(rng, form):
    graph = _dropout_graph(rng, form, 0.0)
    c = ctx(["x"])
    out = passes.remove_dropout(passes.grappler(passes.placeholder_defaults(graph, c), c), c)
    hist = ops(out)
    assert not {"RandomUniform", "SelectV2", "Floor", "GreaterEqual"} & set(hist), hist
    xv = rng.normal(size=[5, 6]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)


def _training_dropout_graph(rng, form):
    """Dropout as TF1 training code writes it, its keep/rate flag at a *training* value."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 6], name="x")
        h = tf.matmul(x, const(rng, 6, 4))
        if form == "rate_default_0.5":  # TF >= 1.13 tf.nn.dropout(rate=...)
            h = tf.nn.dropout(h, rate=tf.compat.v1.placeholder_with_default(0.5, [], name="dropout_rate"))
        elif form == "keep_prob_default_0.5":  # tf.nn.dropout(keep_prob=...): rate = 1 - keep_prob
            keep = tf.compat.v1.placeholder_with_default(0.5, [], name="keep_prob")
            h = tf.nn.dropout(h, rate=1.0 - keep)
        elif form == "keep_prob_placeholder":  # the MNIST tutorial: a plain placeholder fed 0.5 / 1.0
            keep = tf.compat.v1.placeholder(tf.float32, name="keep_prob")
            h = h / keep * tf.floor(keep + tf.random.uniform(tf.shape(h)))
        elif form == "cast_mask":  # TF 1.13-1.15: x * scale * cast(mask)
            rate = tf.compat.v1.placeholder_with_default(0.3, [], name="rate")
            mask = tf.cast(tf.random.uniform(tf.shape(h)) >= rate, tf.float32)
            h = h * (1.0 / (1.0 - rate)) * mask
        elif form == "constant_rate":  # hard-coded: no flag at all
            h = tf.nn.dropout(h, rate=0.25)
        elif form == "learning_phase":  # Keras 2: tf.cond on a bool learning phase, default True
            phase = tf.compat.v1.placeholder_with_default(True, [], name="keras_learning_phase")
            tf.compat.v1.disable_control_flow_v2()  # TF1 graphs hold Switch/Merge, not If
            try:
                h = tf.cond(phase, lambda: tf.nn.dropout(h, rate=0.5), lambda: tf.identity(h))
            finally:
                tf.compat.v1.enable_control_flow_v2()
        tf.nn.softmax(h, name="out")
    return g.as_graph_def()


INFERENCE_FEEDS = {"rate_default_0.5": {"dropout_rate:0": 0.0}, "keep_prob_default_0.5": {"keep_prob:0": 1.0},
                   "keep_prob_placeholder": {"keep_prob:0": 1.0}, "cast_mask": {"rate:0": 0.0},
                   "constant_rate": None, "learning_phase": {"keras_learning_phase:0": False}}


@pytest.mark.parametrize("form", list(INFERENCE_FEEDS))
def test_dropout_in_training_form_becomes_identity(rng, form):
    """Whatever the flag's default, the optimized graph computes the inference value: no random op left."""
    graph = _training_dropout_graph(rng, form)
    c = ctx(["x"])
    out, _ = optimize(graph, c)
    assert not [n.op for n in out.node if passes.is_random_op(n.op)], ops(out)
    assert not {"SelectV2", "Floor", "GreaterEqual", "Switch", "Merge"} & set(ops(out)), ops(out)
    xv = rng.normal(size=[5, 6]).astype(np.float32)
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(graph, name="")
        h = g.get_tensor_by_name("MatMul:0")
        with tf.compat.v1.Session(graph=g) as sess:
            expected = sess.run(tf.nn.softmax(h), {"x:0": xv})  # the model without dropout
    np.testing.assert_allclose(run(out, {"x:0": xv}), expected, rtol=RTOL, atol=ATOL)
    if INFERENCE_FEEDS[form]:
        np.testing.assert_allclose(run(graph, {"x:0": xv, **INFERENCE_FEEDS[form]}), expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("form", [f for f, v in INFERENCE_FEEDS.items() if v])
def test_training_flags_are_found_by_structure(rng, form):
    flags = passes.training_flags(_training_dropout_graph(rng, form))
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
    assert passes.training_flags(graph) == {"keras_learning_phase": False}
    out, _ = optimize(graph, ctx(["x"]))
    assert "keras_learning_phase" not in by_name(out) and "Switch" not in ops(out)
    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(run(out, {"x:0": xv}), xv - 0.5)


def test_training_flags_leave_other_flags_alone():
    assert passes.training_flags(flag_graph()) == {}  # keep_prob there only scales: no random mask


def test_check_portable_rejects_a_random_op_and_names_it():
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        tf.identity(x + tf.random.uniform([3], name="noise"), name="out")
    with pytest.raises(KfreezeError, match=r"random ops.*noise/RandomUniform \(RandomUniform\)"):
        passes.check_portable(g.as_graph_def(), ctx(["x"]))


@pytest.mark.parametrize("op", ["RandomStandardNormal", "TruncatedNormal", "Multinomial", "RandomShuffle",
                                "RandomUniformInt", "StatelessRandomUniformV2", "StatelessRandomNormalV2"])
def test_random_ops_are_recognised(op):
    assert passes.is_random_op(op)
    assert not passes.is_random_op("Relu") and not passes.is_random_op("MatMul")


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
    with pytest.raises(KfreezeError, match="input_shape"):  # the other dimensions must still fit
        passes.cut_inputs(g.as_graph_def(), ctx([InputSpec("reshape", shape=(1, 4, 5, 1))]))


# -- frame_constants -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gru_frozen():
    """A frozen GRU (a v1 while loop with its bias added inside the loop), and its Keras outputs."""
    from kfreeze import export, freeze
    from kfreeze.keras_io import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((5, 3), name="seq")
    model = keras.Model(inp, keras.layers.GRU(4, name="gru")(inp), name="g")
    cell = model.get_layer("gru").cell
    cell.bias.assign(np.random.default_rng(0).normal(0, 0.5, cell.bias.shape).astype("float32"))
    ex = export.export_model(model)
    values = {k: v for k, v in ex.values.items()}
    graph = graph_pb2.GraphDef()
    graph.CopyFrom(ex.graph)
    for node in graph.node:  # the checkpoint's values as constants, as freeze makes them
        if node.name in values:
            node.op = "Const"
            node.ClearField("attr")
            node.attr["dtype"].type = tf.as_dtype(values[node.name].dtype).as_datatype_enum
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(values[node.name]))
    frozen = tf.compat.v1.graph_util.extract_sub_graph(graph, ["gru"])
    x = np.random.default_rng(1).random((2, 5, 3), np.float32)
    return frozen, x, np.asarray(model(x))


def test_frame_constants_keeps_folded_constants_in_the_loop(gru_frozen):
    frozen, x, expected = gru_frozen
    ctx = Context((InputSpec("seq"),), ("gru",))
    without = [(n, f) for n, f in passes_for(ctx) if not n.startswith("frame_constants")]
    broken, _ = optimize(frozen, ctx, without)  # fold_affine's new bias lands in the root frame
    with pytest.raises(tf.errors.InvalidArgumentError, match="different frames"):
        run(broken, {"seq:0": x}, "gru:0")
    fixed, stats = optimize(frozen, ctx)
    np.testing.assert_allclose(run(fixed, {"seq:0": x}, "gru:0"), expected, rtol=1e-5, atol=1e-6)
    assert ops(fixed).get("Enter", 0) > 0  # still a loop, run by the session


def test_frame_constants_copies_a_constant_read_inside_and_outside_a_loop(gru_frozen):
    frozen, x, expected = gru_frozen
    loop = graphio.loop_nodes(frozen)
    reader = next(n for n in frozen.node if n.name in loop and n.op in ("MatMul", "BiasAdd"))
    shared = node_def_pb2.NodeDef(name="shared_zero", op="Const")
    zero = np.zeros([], np.float32)
    shared.attr["dtype"].type = tf.float32.as_datatype_enum
    shared.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(zero))
    graph = graph_pb2.GraphDef()
    graph.CopyFrom(frozen)
    graph.node.append(shared)
    # x + 0 inside the loop, and the output + 0 outside it
    add_in = node_def_pb2.NodeDef(name=f"{reader.name}/plus_zero", op="AddV2", input=[reader.name, "shared_zero"])
    add_in.attr["T"].type = tf.float32.as_datatype_enum
    for node in graph.node:
        for i, inp in enumerate(node.input):
            if inp == reader.name:
                node.input[i] = add_in.name
    graph.node.append(add_in)
    for node in graph.node:
        if node.name == "gru":
            node.name = "gru_raw"
    for node in graph.node:
        for i, inp in enumerate(node.input):
            if inp == "gru":
                node.input[i] = "gru_raw"
    out = node_def_pb2.NodeDef(name="gru", op="AddV2", input=["gru_raw", "shared_zero"])
    out.attr["T"].type = tf.float32.as_datatype_enum
    graph.node.append(out)
    ctx = Context((InputSpec("seq"),), ("gru",))
    fixed = passes.frame_constants(graph, ctx)
    copies = [n for n in fixed.node if n.name.startswith("shared_zero/in_loop")]
    assert len(copies) == 1 and copies[0].input[0].startswith("^")
    assert not by_name(fixed)["shared_zero"].input  # the outside reader keeps the root-frame constant
    np.testing.assert_allclose(run(fixed, {"seq:0": x}, "gru:0"), expected, rtol=1e-5, atol=1e-6)


def test_float16_weights_inside_a_loop_stay_in_its_frame(gru_frozen, monkeypatch):
    from kfreeze.optimize import precision

    frozen, x, expected = gru_frozen
    monkeypatch.setattr(precision, "MIN_ELEMENTS", 8)  # the tiny GRU's kernels count as weights
    ctx = Context((InputSpec("seq"),), ("gru",), precision="float16")
    graph, _ = optimize(frozen, ctx)
    loop = graphio.loop_nodes(graph)
    halves = [n for n in graph.node if n.op == "Const" and n.attr["dtype"].type == tf.float16.as_datatype_enum]
    assert any(n.name in loop or n.input for n in halves)  # some weight lives inside the loop
    np.testing.assert_allclose(run(graph, {"seq:0": x}, "gru:0"), expected, atol=5e-3)
