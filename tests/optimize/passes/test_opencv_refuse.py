"""Tests for the ``opencv_refuse`` pass (kfreeze/optimize/passes/opencv_refuse.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.errors import KfreezeError
from kfreeze.optimize import optimize, passes, passes_for
from kfreeze.optimize.passes.opencv_refuse import LACKING
from kfreeze.tfenv import tf
from tests.optimize.helpers import ctx, run
from tests.optimize.opencv_check import opencv_fails, opencv_output, rel


def test_refuse_a_recurrent_loop_with_one_line(gru_frozen):
    graph = gru_frozen[0]
    assert "opencv_refuse" not in dict(passes_for(ctx()))
    with pytest.raises(KfreezeError) as e:
        passes.opencv_refuse(graph, ctx(inputs=("seq",), outputs=("gru",), opencv=True))
    line = str(e.value)
    assert "\n" not in line and "recurrent" in line and "onnx" in line and "opencv: false" in line
    assert any(op in line for op in ("While", "Enter", "Exit", "LoopCond", "NextIteration", "Switch", "Merge"))


def test_refuse_runs_after_the_rewrites_in_optimize(gru_frozen):
    with pytest.raises(KfreezeError, match="OpenCV's TensorFlow importer has no"):
        optimize(gru_frozen[0], ctx(inputs=("seq",), outputs=("gru",), opencv=True))
    optimize(gru_frozen[0], ctx(inputs=("seq",), outputs=("gru",)))  # the TF graph is fine without opencv


def _embedding():
    with tf.Graph().as_default() as g:
        ids = tf.compat.v1.placeholder(tf.int32, [1, 5], name="x")
        table = tf.constant(np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32))
        tf.identity(tf.gather(table, ids), name="out")
    return g.as_graph_def()


def test_refused_ops_really_fail_in_opencv():
    """The list is measured: a graph with GatherV2 (Embedding) fails in OpenCV, and is refused."""
    graph = _embedding()
    assert opencv_fails(graph, {"x": np.arange(5, dtype=np.int32)[None]})
    with pytest.raises(KfreezeError, match="GatherV2"):
        passes.opencv_refuse(graph, ctx(opencv=True))


def test_refuse_passes_a_graph_opencv_imports(rng):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4, 4, 3], name="x")
        tf.nn.relu(x * 2.0, name="out")
    graph = g.as_graph_def()
    assert passes.opencv_refuse(graph, ctx(opencv=True)) is graph
    assert "Relu" not in LACKING and "Conv2D" not in LACKING


def _layer_norm_like():
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4, 6], name="x")
        tf.identity(x - tf.reduce_mean(x, axis=-1, keepdims=True), name="out")
    return g.as_graph_def()


def test_refuse_a_reduction_opencv_cannot_parse():
    graph = _layer_norm_like()
    assert opencv_fails(graph, {"x": np.ones((1, 4, 6), np.float32)})
    with pytest.raises(KfreezeError, match="only on a 4-D tensor"):
        passes.opencv_refuse(graph, ctx(opencv=True))


def test_refuse_a_transpose_opencv_cannot_follow():
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4, 6, 3], name="x")
        y = tf.nn.conv2d(x, tf.constant(np.ones((1, 1, 3, 3), np.float32)), 1, "VALID")  # NHWC for OpenCV
        tf.transpose(y, [0, 1, 3, 2], name="out")
    graph = g.as_graph_def()
    assert "permutations" in opencv_fails(graph, {"x": np.ones((1, 4, 6, 3), np.float32)})
    with pytest.raises(KfreezeError, match="NHWC <-> NCHW"):
        passes.opencv_refuse(graph, ctx(opencv=True))


def test_refuse_a_strided_slice_opencv_reads_wrong():
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4, 5, 3], name="x")
        y = tf.nn.conv2d(x, tf.constant(np.ones((1, 1, 3, 3), np.float32)), 1, "VALID")
        tf.identity(y[:, 1], name="out")  # shrink_axis_mask: OpenCV keeps the axis (and slices the wrong one)
    graph = g.as_graph_def()
    with pytest.raises(KfreezeError, match="shrink_axis_mask"):
        passes.opencv_refuse(graph, ctx(opencv=True))


def test_refuse_a_concat_of_model_inputs():
    with tf.Graph().as_default() as g:
        a = tf.compat.v1.placeholder(tf.float32, [1, 6, 6, 3], name="a")
        b = tf.compat.v1.placeholder(tf.float32, [1, 6, 6, 2], name="b")
        tf.concat([a, b], -1, name="out")
    graph = g.as_graph_def()
    feeds = {"a": np.ones((1, 6, 6, 3), np.float32), "b": np.ones((1, 6, 6, 2), np.float32)}
    assert "Inconsistent shape" in opencv_fails(graph, feeds)
    with pytest.raises(KfreezeError, match="concatenates model inputs"):
        passes.opencv_refuse(graph, ctx(inputs=("a", "b"), opencv=True))


def test_refuse_an_outer_sum_of_two_tensors():
    """AdditiveAttention's scores: [1, m, 1, k] + [1, 1, n, k], which OpenCV's Eltwise cannot broadcast."""
    with tf.Graph().as_default() as g:
        q = tf.compat.v1.placeholder(tf.float32, [1, 4, 6], name="q")
        v = tf.compat.v1.placeholder(tf.float32, [1, 5, 6], name="v")
        tf.tanh(tf.expand_dims(q, 2) + tf.expand_dims(v, 1), name="out")
    graph = g.as_graph_def()
    feeds = {"q": np.ones((1, 4, 6), np.float32), "v": np.ones((1, 5, 6), np.float32)}
    assert opencv_fails(graph, feeds)
    with pytest.raises(KfreezeError, match=r"broadcasts \[1, 4, 1, 6\] against \[1, 1, 5, 6\]"):
        passes.opencv_refuse(graph, ctx(inputs=("q", "v"), opencv=True))


@pytest.mark.parametrize("layer", ["pad", "slice"])
def test_refuse_a_pad_or_slice_of_a_5d_tensor(layer):
    """ZeroPadding3D and Cropping3D: OpenCV applies the NDHWC paddings/begins to its NCDHW blob."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4, 4, 4, 2], name="x")
        y = tf.nn.conv3d(x, tf.constant(np.ones((1, 1, 1, 2, 2), np.float32)), [1] * 5, "VALID")
        if layer == "pad":
            tf.pad(y, [[0, 0], [1, 1], [1, 1], [1, 1], [0, 0]], name="out")
        else:
            tf.identity(y[:, 1:3, 1:3, 1:3, :], name="out")
    graph = g.as_graph_def()
    x = np.random.default_rng(0).normal(size=(1, 4, 4, 4, 2)).astype(np.float32)
    ref = run(graph, {"x:0": x}, "out:0")
    try:
        got = opencv_output(graph, {"x": x})
    except AssertionError:
        got = None  # OpenCV did not load or run it
    assert got is None or got.shape != ref.shape or not np.allclose(got, ref, atol=1e-4)  # what the refusal spares
    with pytest.raises(KfreezeError, match="5-D tensor's NDHWC"):
        passes.opencv_refuse(graph, ctx(opencv=True))
def test_refuse_a_softmax_over_a_feature_map():
    """Conv2D(activation='softmax'): OpenCV normalises the width of its NCHW blob, not the channels
    (found by tests/corpus's segmentation net); a softmax of a Dense output stays."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4, 5, 3], name="x")
        y = tf.nn.conv2d(x, tf.constant(np.random.default_rng(0).normal(size=(1, 1, 3, 2)), tf.float32), 1, "VALID")
        tf.nn.softmax(tf.nn.bias_add(y, tf.constant([0.1, -0.2])), name="out")
    graph = g.as_graph_def()
    feeds = {"x": np.random.default_rng(1).random((1, 4, 5, 3), dtype=np.float32)}
    ref = run(graph, {"x:0": feeds["x"]}, "out:0")
    assert rel(ref, np.transpose(opencv_output(graph, feeds), (0, 2, 3, 1))) > 0.1  # OpenCV is wrong here
    with pytest.raises(KfreezeError, match="Softmax over a feature map"):
        passes.opencv_refuse(graph, ctx(opencv=True))
    with tf.Graph().as_default() as g:
        v = tf.compat.v1.placeholder(tf.float32, [1, 3], name="x")
        tf.nn.softmax(tf.matmul(v, tf.ones((3, 2))), name="out")
    dense = g.as_graph_def()
    assert passes.opencv_refuse(dense, ctx(opencv=True)) is dense
