"""Unit tests for the structural passes (kfreeze/optimize/rewrites.py), the opencv
compatibility pass and float16 weights: structure of the result, and the same numbers."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze import graphio
from kfreeze.optimize import Context, InputSpec, compat, optimize, passes_for, precision, rewrites
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2

ATOL = 1e-5


def run(graph: graph_pb2.GraphDef, feeds: dict, fetch: str = "out:0"):
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(graph, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            return sess.run(fetch, feed_dict=feeds)


def ops(graph) -> dict[str, int]:
    return graphio.op_histogram(graph)


def nodes(graph):
    return {n.name: n for n in graph.node}


def ctx(inputs=("x",), outputs=("out",), **kw) -> Context:
    return Context(tuple(InputSpec(i) for i in inputs), tuple(outputs), **kw)


def f32(rng, *shape, low=None, high=None):
    v = rng.normal(size=shape) if low is None else rng.uniform(low, high, size=shape)
    return tf.constant(v.astype(np.float32))


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def same_numbers(a, b, x, atol=ATOL):
    np.testing.assert_allclose(run(a, {"x:0": x}), run(b, {"x:0": x}), rtol=1e-5, atol=atol)


# -- fold_input_scale ---------------------------------------------------------------

def _scale_graph(rng, scale, tail):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 6, 6, 4], name="x")
        y = tf.multiply(x, tf.constant(scale.astype(np.float32)), name="bn_mul")
        if tail == "relu_conv":
            y = tf.nn.conv2d(tf.nn.relu(y), f32(rng, 3, 3, 4, 5), 1, "SAME", name="conv")
        elif tail == "conv":
            y = tf.nn.conv2d(y, f32(rng, 3, 3, 4, 5), 2, "VALID", name="conv")
        elif tail == "depthwise":
            y = tf.nn.depthwise_conv2d(y, f32(rng, 3, 3, 4, 2), [1, 1, 1, 1], "SAME", name="conv")
        elif tail == "relu_mean_matmul":
            y = tf.matmul(tf.reduce_mean(tf.nn.relu(y), axis=[1, 2]), f32(rng, 4, 3), name="conv")
        elif tail == "avgpool_conv":
            y = tf.nn.conv2d(tf.nn.avg_pool2d(y, 2, 2, "SAME"), f32(rng, 1, 1, 4, 5), 1, "VALID", name="conv")
        tf.identity(y, name="out")
    return g.as_graph_def()


@pytest.mark.parametrize("tail", ["relu_conv", "conv", "depthwise", "relu_mean_matmul", "avgpool_conv"])
def test_fold_input_scale_moves_the_mul_into_the_weights(rng, tail):
    graph = _scale_graph(rng, rng.uniform(0.5, 2.0, size=[4]), tail)
    out = rewrites.fold_input_scale(graph, ctx())
    assert "bn_mul" not in nodes(out) and "Mul" not in ops(out)
    assert ops(out).get("Relu", 0) == ops(graph).get("Relu", 0)
    same_numbers(out, graph, rng.normal(size=[1, 6, 6, 4]).astype(np.float32))


def test_fold_input_scale_needs_a_positive_scale_to_cross_relu(rng):
    scale = rng.uniform(0.5, 2.0, size=[4])
    scale[1] = -1.0
    graph = _scale_graph(rng, scale, "relu_conv")
    assert rewrites.fold_input_scale(graph, ctx()) is graph
    # without the Relu a negative scale folds too
    out = rewrites.fold_input_scale(_scale_graph(rng, scale, "conv"), ctx())
    assert "Mul" not in ops(out)


def test_fold_input_scale_leaves_a_broadcasting_mul(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 6, 6, 1], name="x")
        y = x * tf.constant(np.array([1.0, 2.0, 3.0, 4.0], np.float32))  # 1 channel -> 4
        tf.identity(tf.nn.conv2d(y, f32(rng, 1, 1, 4, 2), 1, "VALID"), name="out")
    graph = g.as_graph_def()
    assert rewrites.fold_input_scale(graph, ctx()) is graph


def test_fold_input_scale_leaves_a_mul_with_two_consumers(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 6, 6, 4], name="x")
        y = x * tf.constant(np.full([4], 2.0, np.float32))
        tf.identity(tf.nn.conv2d(y, f32(rng, 1, 1, 4, 4), 1, "VALID") + y, name="out")
    graph = g.as_graph_def()
    assert rewrites.fold_input_scale(graph, ctx()) is graph


# -- fold_pad_into_conv ---------------------------------------------------------------

def _pad_graph(rng, pads, kernel, stride, depthwise=False, size=8, fill=None):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, size, size, 3], name="x")
        paddings = [[0, 0], pads[0], pads[1], [0, 0]]
        y = tf.pad(x, paddings, constant_values=fill) if fill is not None else tf.pad(x, paddings)
        if depthwise:
            y = tf.nn.depthwise_conv2d(y, f32(rng, kernel, kernel, 3, 1), [1, stride, stride, 1], "VALID")
        else:
            y = tf.nn.conv2d(y, f32(rng, kernel, kernel, 3, 4), stride, "VALID")
        tf.identity(y, name="out")
    return g.as_graph_def()


@pytest.mark.parametrize("pads,kernel,stride,depthwise,padding", [
    (([0, 1], [0, 1]), 3, 2, False, b"SAME"),      # Keras correct_pad: exactly TF's SAME
    (([0, 1], [0, 1]), 3, 2, True, b"SAME"),
    (([3, 3], [3, 3]), 7, 2, False, b"EXPLICIT"),  # ResNet's conv1_pad: not SAME
    (([1, 1], [1, 1]), 3, 1, False, b"SAME"),
    (([2, 0], [0, 1]), 3, 1, True, b"EXPLICIT"),
])
def test_fold_pad_into_conv(rng, pads, kernel, stride, depthwise, padding):
    graph = _pad_graph(rng, pads, kernel, stride, depthwise)
    out = rewrites.fold_pad_into_conv(graph, ctx())
    assert "Pad" not in ops(out) and "PadV2" not in ops(out)
    conv = next(n for n in out.node if n.op in ("Conv2D", "DepthwiseConv2dNative"))
    assert conv.attr["padding"].s == padding
    if padding == b"EXPLICIT":
        assert list(conv.attr["explicit_paddings"].list.i) == [0, 0, *pads[0], *pads[1], 0, 0]
    same_numbers(out, graph, rng.normal(size=[1, 8, 8, 3]).astype(np.float32))


def test_fold_pad_into_conv_leaves_a_nonzero_fill(rng):
    graph = _pad_graph(rng, ([1, 1], [1, 1]), 3, 1, fill=1.0)
    assert rewrites.fold_pad_into_conv(graph, ctx()) is graph


def test_fold_pad_into_conv_leaves_a_pad_before_max_pool():
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 3], name="x")
        tf.identity(tf.nn.max_pool2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), 3, 2, "VALID"), name="out")
    graph = g.as_graph_def()
    assert rewrites.fold_pad_into_conv(graph, ctx()) is graph


# -- keepdims_mean ----------------------------------------------------------------------

def test_keepdims_mean_replaces_mean_and_reshape(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 5, 5, 6], name="x")
        se = tf.reshape(tf.reduce_mean(x, axis=[1, 2]), [-1, 1, 1, 6], name="se_reshape")
        tf.identity(tf.nn.conv2d(se, f32(rng, 1, 1, 6, 2), 1, "VALID"), name="out")
    graph = g.as_graph_def()
    out = rewrites.keepdims_mean(graph, ctx())
    assert "Reshape" not in ops(out) and ops(out)["Mean"] == 1
    mean = nodes(out)["se_reshape"]
    assert mean.op == "Mean" and mean.attr["keep_dims"].b
    same_numbers(out, graph, rng.normal(size=[1, 5, 5, 6]).astype(np.float32))


def test_keepdims_mean_leaves_a_reshape_that_moves_data(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 5, 5, 6], name="x")
        tf.identity(tf.reshape(tf.reduce_mean(x, axis=[1, 2]), [-1, 2, 3, 1]), name="out")
    graph = g.as_graph_def()
    assert rewrites.keepdims_mean(graph, ctx()) is graph


# -- remove_noops ---------------------------------------------------------------------------

def test_remove_noops_drops_ops_that_change_nothing(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [2, 3, 4], name="x")
        y = tf.identity(x * 2.0, name="ident")
        y = tf.cast(y, tf.float32)  # tf.cast to the same type is already a no-op in Python: build it by hand
        y = tf.raw_ops.Cast(x=y, DstT=tf.float32, name="cast")
        y = tf.transpose(y, [0, 1, 2], name="transpose")
        y = tf.pad(y, [[0, 0], [0, 0], [0, 0]], name="pad")
        y = tf.reshape(y, [2, 3, 4], name="same_reshape")
        tf.nn.relu(y, name="out")
    graph = g.as_graph_def()
    out = rewrites.remove_noops(graph, ctx())
    assert not {"Identity", "Cast", "Transpose", "Pad", "Reshape"} & set(ops(out)), ops(out)
    same_numbers(out, graph, rng.normal(size=[2, 3, 4]).astype(np.float32))


def test_remove_noops_merges_a_reshape_chain(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 2, 3, 4], name="x")
        y = tf.reshape(x, [-1, 24])
        y = tf.expand_dims(y, 1)
        y = tf.squeeze(y, [1])
        y = tf.reshape(y, [-1, 6, 4], name="last")
        tf.nn.relu(y, name="out")
    graph = g.as_graph_def()
    out = rewrites.remove_noops(rewrites.remove_noops(graph, ctx()), ctx())
    assert ops(out).get("Reshape", 0) == 1 and not {"Squeeze", "ExpandDims"} & set(ops(out)), ops(out)
    assert nodes(out)["last"].op == "Reshape"
    x = rng.normal(size=[3, 2, 3, 4]).astype(np.float32)
    same_numbers(out, graph, x)


def test_remove_noops_keeps_an_output_identity_and_a_real_transpose(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [2, 3], name="x")
        tf.identity(tf.transpose(x), name="out")
    graph = g.as_graph_def()
    out = rewrites.remove_noops(graph, ctx())
    assert ops(out) == ops(graph)


# -- dedupe_constants / dense_constants -------------------------------------------------------

def test_dedupe_constants_merges_equal_values_only(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 2, 2, 3], name="x")
        a = tf.concat([x, x], axis=3, name="cat_a")
        b = tf.concat([a, x], axis=3, name="cat_b")
        c = tf.concat([b[:, 0], b[:, 1]], axis=2, name="cat_c")  # another axis value
        tf.identity(c, name="out")
    graph = rewrites.dense_constants(g.as_graph_def(), ctx())
    out = rewrites.dedupe_constants(graph, ctx())
    axis_a = nodes(out)["cat_a"].input[2]
    assert nodes(out)["cat_b"].input[2] == axis_a  # both read the first by name
    assert nodes(out)["cat_c"].input[2] != axis_a
    assert ops(out)["Const"] < ops(graph)["Const"]
    same_numbers(out, graph, rng.normal(size=[1, 2, 2, 3]).astype(np.float32))


def test_dense_constants_writes_tensor_content(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [2, 5], name="x")
        tf.add(x, tf.constant(0.5, shape=[5]), name="out")  # a splat: float_val holds one 0.5
    graph = g.as_graph_def()
    splat = next(n for n in graph.node if n.op == "Const")
    assert not splat.attr["value"].tensor.tensor_content
    out = rewrites.dense_constants(graph, ctx())
    const = nodes(out)[splat.name].attr["value"].tensor
    assert const.tensor_content and not const.float_val
    np.testing.assert_array_equal(tf.make_ndarray(const), np.full([5], 0.5, np.float32))
    same_numbers(out, graph, rng.normal(size=[2, 5]).astype(np.float32))
    assert rewrites.dense_constants(out, ctx()) is out


# -- name_outputs -----------------------------------------------------------------------------

def test_name_outputs_gives_the_output_name_to_its_producer(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4], name="x")
        tf.identity(tf.nn.softmax(tf.matmul(x, f32(rng, 4, 3)), name="softmax"), name="out")
    graph = g.as_graph_def()
    out = rewrites.name_outputs(graph, ctx())
    assert "Identity" not in ops(out) and "softmax" not in nodes(out)
    assert nodes(out)["out"].op == "Softmax"
    same_numbers(out, graph, rng.normal(size=[1, 4]).astype(np.float32))


def test_name_outputs_keeps_identity_of_an_input_or_a_shared_tensor(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4], name="x")
        r = tf.nn.relu(x)
        tf.identity(r, name="out")
        tf.identity(r * 2.0, name="out2")
        tf.identity(x, name="out3")
    graph = g.as_graph_def()
    c = ctx(outputs=("out", "out3"))
    assert rewrites.name_outputs(graph, c) is graph


# -- opencv_compat / float16_weights ----------------------------------------------------------------

def test_opencv_compat_spells_addv2_as_add(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4], name="x")
        tf.nn.relu(tf.raw_ops.AddV2(x=x, y=x * 2.0), name="out")
    graph = g.as_graph_def()
    assert compat.opencv_compat(graph, ctx()) is graph  # off by default
    out = compat.opencv_compat(graph, ctx(opencv=True))
    assert "AddV2" not in ops(out) and ops(out)["Add"] == 1
    same_numbers(out, graph, rng.normal(size=[1, 4]).astype(np.float32))


def test_float16_weights_halves_the_weights_behind_a_cast(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 16], name="x")
        y = tf.nn.conv2d(x, tf.constant(rng.normal(size=[3, 3, 16, 32]).astype(np.float32), name="kernel"), 1, "SAME")
        y = tf.nn.bias_add(y, tf.constant(rng.normal(size=[32]).astype(np.float32), name="bias"))
        tf.nn.relu(y, name="out")
    graph = g.as_graph_def()
    assert precision.float16_weights(graph, ctx()) is graph  # float32 by default
    out = precision.float16_weights(graph, ctx(precision="float16"))
    n = nodes(out)
    assert n["kernel"].op == "Cast" and list(n["kernel"].input) == ["kernel/float16"]
    assert n["kernel/float16"].attr["dtype"].type == tf.float16.as_datatype_enum
    assert n["bias"].op == "Const"  # 32 elements: below MIN_ELEMENTS
    assert len(graphio.graph_bytes(out)) < 0.6 * len(graphio.graph_bytes(graph))
    x = rng.normal(size=[1, 8, 8, 16]).astype(np.float32)
    ref, got = run(graph, {"x:0": x}), run(out, {"x:0": x})
    assert np.max(np.abs(got - ref)) <= 2e-3 * np.max(np.abs(ref))
    assert np.max(np.abs(got - ref)) > 0  # the weights really are rounded


def test_context_rejects_an_unknown_precision():
    with pytest.raises(ValueError, match="precision"):
        Context((InputSpec("x"),), ("out",), precision="int8")


# -- the whole list ---------------------------------------------------------------------------------

def test_optional_passes_run_only_when_asked():
    names = [n for n, _ in passes_for(ctx())]
    assert "opencv_compat" not in names and "float16_weights" not in names
    names = [n for n, _ in passes_for(ctx(opencv=True, precision="float16"))]
    assert {"opencv_compat", "float16_weights"} <= set(names)
    assert names[-2:] == ["sort_by_execution_order", "check_portable"]


def test_optimize_is_deterministic_and_beats_grappler_on_a_keras_like_block(rng):
    """Pad -> conv -> BN-as-Mul -> Relu -> concat -> BN -> Relu -> 1x1 conv, as DenseNet and ResNet emit it."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 3], name="x")
        y = tf.nn.conv2d(tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]]), f32(rng, 3, 3, 3, 4), 2, "VALID")
        y = tf.nn.relu(y * f32(rng, 4, low=0.5, high=1.5))
        y = tf.concat([y, y * 0.5], axis=3)
        y = tf.nn.relu(y * f32(rng, 8, low=0.5, high=1.5))
        y = tf.nn.conv2d(y, f32(rng, 1, 1, 8, 2), 1, "VALID")
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
    same_numbers(out, graph, rng.uniform(size=[1, 8, 8, 3]).astype(np.float32))


def test_fold_input_scale_is_off_in_opencv_mode(rng):
    graph = _scale_graph(rng, rng.uniform(0.5, 2.0, size=[4]), "relu_conv")
    assert rewrites.fold_input_scale(graph, ctx(opencv=True)) is graph


def test_dense_constants_leaves_scalars_alone():
    """OpenCV reads scalar axes (ConcatV2, Mean) from int_val; re-encoding them breaks its importer."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 2, 2, 3], name="x")
        tf.identity(tf.concat([x, x], axis=3), name="out")
    graph = g.as_graph_def()
    assert rewrites.dense_constants(graph, ctx()) is graph
