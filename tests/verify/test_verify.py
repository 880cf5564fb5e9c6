import sys

import numpy as np
import pytest

from kfreeze import graphio, verify
from kfreeze.tfenv import tf


def test_inputs_are_seeded_and_shaped():
    infos = [verify.TensorInfo("image", "float32", (None, 4, 4, 1)), verify.TensorInfo("ids", "int32", (1, 3))]
    a = verify.make_inputs(infos, samples=5, seed=7)
    b = verify.make_inputs(infos, samples=5, seed=7)
    c = verify.make_inputs(infos, samples=5, seed=8)
    assert a["image"].shape == (5, 4, 4, 1) and a["ids"].shape == (5, 3) and a["ids"].dtype == np.int32
    np.testing.assert_array_equal(a["image"], b["image"])
    assert not np.array_equal(a["image"], c["image"])


def test_compare_reports_diff_and_top1():
    ref = {"p": np.array([[0.9, 0.1], [0.2, 0.8]]), "r": np.array([[1.0], [2.0]])}
    got = {"p": np.array([[0.4, 0.6], [0.2, 0.8]]), "r": np.array([[1.5], [2.0]])}
    result = verify.compare(ref, got)
    assert result["p"] == {"max_abs_diff": pytest.approx(0.5), "top1_agree": 0.5}
    assert result["r"] == {"max_abs_diff": pytest.approx(0.5), "top1_agree": None}


def test_run_batched_splits_for_a_fixed_batch():
    calls = []

    def fn(feeds):
        calls.append(len(feeds["x"]))
        return {"y": feeds["x"] * 2}
    out = verify.run_batched(fn, {"x": np.arange(4.0)}, batch=1)
    assert calls == [1, 1, 1, 1]
    np.testing.assert_array_equal(out["y"], np.arange(4.0) * 2)


def _graph(tmp_path):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        w = tf.constant(np.arange(12, dtype=np.float32).reshape(4, 3))
        y = tf.nn.bias_add(tf.matmul(x, w), tf.constant([1.0, 2.0, 3.0]), name="logits")
        tf.identity(tf.nn.softmax(y), name="probs")
        tf.identity(y, name="raw")
    path = tmp_path / "g.pb"
    graphio.write_graph(g.as_graph_def(), path)
    return g.as_graph_def(), path


def test_opencv_matches_tensorflow_and_follows_identities(tmp_path):
    graph, path = _graph(tmp_path)
    feeds = {"x": np.random.default_rng(0).random((3, 4), dtype=np.float32)}
    layers = [verify.opencv_layer(graph, o) for o in ("probs", "raw")]
    assert layers[1] == "logits|MatMul"  # BiasAdd fused into the MatMul layer by OpenCV
    result = verify.run_opencv(path, feeds, layers)
    assert result.error is None
    tf_out = verify.run_graph(graph, feeds, ["probs", "raw"])
    np.testing.assert_allclose(result.outputs[layers[0]], tf_out["probs"], atol=1e-5)
    np.testing.assert_allclose(result.outputs[layers[1]], tf_out["raw"], atol=1e-4)


def test_opencv_failure_is_a_recorded_result(tmp_path):
    path = tmp_path / "junk.pb"
    path.write_bytes(b"\x0a\x03abc")
    result = verify.run_opencv(path, {"x": np.zeros((1, 4), np.float32)}, ["y"])
    assert result.outputs is None and result.error and "\n" not in result.error


def test_opencv_crash_is_recorded_with_its_signal(tmp_path, monkeypatch):
    """A segfault in the child (as OpenCV 5.0 does on some graphs) becomes the error string."""
    crash = tmp_path / "crash.py"
    crash.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    real_run = verify.subprocess.run

    def run(cmd, **kwargs):
        return real_run([sys.executable, str(crash)], **kwargs)
    monkeypatch.setattr(verify.subprocess, "run", run)
    result = verify.run_opencv(tmp_path / "g.pb", {"x": np.zeros((1, 4), np.float32)}, ["y"])
    assert result.outputs is None
    assert result.error == "OpenCV crashed with SIGSEGV (signal 11)"
