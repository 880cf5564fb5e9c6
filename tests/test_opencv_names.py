"""Tests for kfreeze/opencv_names.py: the rules, checked against OpenCV 4.x's own layer names."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from kfreeze import graphio, opencv_names
from kfreeze.tfenv import tf

RNG = np.random.default_rng(3)


def _c(*shape):
    return tf.constant(RNG.normal(size=shape).astype(np.float32))


def _x2():
    return tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")


def _x4():
    return tf.compat.v1.placeholder(tf.float32, [None, 5, 5, 3], name="x")


# name -> (builder, the layer name OpenCV gives output 'out')
CASES = {
    "matmul_biasadd": (lambda: tf.nn.bias_add(tf.matmul(_x2(), _c(4, 3), name="mm"), _c(3), name="out"), "mm"),
    "matmul_addv2": (lambda: tf.raw_ops.AddV2(x=tf.matmul(_x2(), _c(4, 3), name="mm"), y=_c(3), name="out"), "mm"),
    "conv_biasadd": (lambda: tf.nn.bias_add(tf.nn.conv2d(_x4(), _c(3, 3, 3, 2), 1, "SAME", name="cv"), _c(2),
                                            name="out"), "cv"),
    "conv_addv2": (lambda: tf.raw_ops.AddV2(x=tf.nn.conv2d(_x4(), _c(3, 3, 3, 2), 1, "SAME", name="cv"), y=_c(2),
                                            name="out"), "out"),
    "depthwise_biasadd": (lambda: tf.nn.bias_add(tf.nn.depthwise_conv2d(_x4(), _c(3, 3, 3, 1), [1, 1, 1, 1], "SAME",
                                                                        name="dw"), _c(3), name="out"), "dw"),
    "identity_of_relu": (lambda: tf.identity(tf.nn.relu(_x2(), name="r"), name="out"), "r"),
    "mean": (lambda: tf.reduce_mean(tf.nn.relu(_x4()), [1, 2], name="out"), "out"),
    "flatten": (lambda: tf.reshape(tf.nn.relu(_x4()), [-1, 75], name="out"), "out"),
    "reshape_rank4": (lambda: tf.reshape(tf.matmul(_x2(), _c(4, 16)), [-1, 2, 2, 4], name="out"), "out/nchw"),
    "mul_after_biasadd": (lambda: tf.multiply(tf.nn.bias_add(tf.matmul(_x2(), _c(4, 3), name="mm"), _c(3)), 1.0,
                                              name="out"), "out"),
}


@pytest.fixture(scope="module")
def graphs():
    built = {}
    for name, (build, _) in CASES.items():
        with tf.Graph().as_default() as g:
            build()
        built[name] = g.as_graph_def()
    return built


def test_layer_name_follows_the_importer_rules(graphs):
    assert {k: opencv_names.layer_name(g, "out") for k, g in graphs.items()} == {k: v for k, (_, v) in CASES.items()}


def test_the_rules_match_opencv(graphs, tmp_path):
    """Every predicted name is a layer in OpenCV's network, and the output's own name is none
    where OpenCV folds or drops the op (a child process: OpenCV can crash)."""
    paths = {}
    for name, g in graphs.items():
        paths[name] = str(tmp_path / f"{name}.pb")
        graphio.write_graph(g, paths[name])
    code = ("import json, sys, cv2\n"
            "print(json.dumps({k: list(cv2.dnn.readNetFromTensorflow(p).getLayerNames())"
            " for k, p in json.loads(sys.argv[1]).items()}))\n")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(paths)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    layers = json.loads(proc.stdout)
    for name, (_, want) in CASES.items():
        assert want in layers[name], (name, layers[name])
        # a folded op has no layer of its own name (a rank-4 Reshape has one, holding NHWC order)
        assert ("out" in layers[name]) == want.startswith("out"), (name, layers[name])


def test_no_layer_for_a_constant_an_input_or_a_second_port():
    with tf.Graph().as_default() as g:
        x = _x2()
        tf.identity(tf.constant([1.0]), name="c")
        tf.identity(x, name="passthrough")
        tf.split(x, 2, axis=1, name="split")
    graph = g.as_graph_def()
    assert [opencv_names.layer_name(graph, o) for o in ("c", "passthrough", "split:1", "x")] == [None] * 4
    assert opencv_names.layer_name(graph, "split") == "split"


def test_a_matmul_with_two_bias_adds_fuses_neither():
    with tf.Graph().as_default() as g:
        mm = tf.matmul(_x2(), _c(4, 3), name="mm")
        tf.nn.bias_add(mm, _c(3), name="a")
        tf.nn.bias_add(mm, _c(3), name="b")
    graph = g.as_graph_def()
    assert [opencv_names.layer_name(graph, o) for o in ("a", "b")] == ["a", "b"]
