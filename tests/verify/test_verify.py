import sys

import numpy as np
import pytest

from kfreeze import graphio, verify
from kfreeze.errors import KfreezeError
from kfreeze.tfenv import tf


def test_inputs_are_seeded_and_shaped():
    infos = [verify.TensorInfo("image", "float32", (None, 4, 4, 1)), verify.TensorInfo("ids", "int32", (1, 3))]
    a = verify.make_inputs(infos, samples=5, seed=7)
    b = verify.make_inputs(infos, samples=5, seed=7)
    c = verify.make_inputs(infos, samples=5, seed=8)
    assert a["image"].shape == (5, 4, 4, 1) and a["ids"].shape == (5, 3) and a["ids"].dtype == np.int32
    np.testing.assert_array_equal(a["image"], b["image"])
    assert not np.array_equal(a["image"], c["image"])


def test_compare_relative_error_and_top1_only_for_probabilities():
    ref = {"p": np.array([[0.9, 0.1], [0.2, 0.8]]), "r": np.array([[1.0, 5.0], [2.0, 3.0]])}
    got = {"p": np.array([[0.4, 0.6], [0.2, 0.8]]), "r": np.array([[1.5, 5.0], [2.0, 3.0]])}
    result = verify.compare(ref, got, {"p": True, "r": False}, atol=1e-4, rtol=1e-5)
    assert result["p"]["max_abs_diff"] == pytest.approx(0.5) and result["p"]["top1_agree"] == 0.5
    assert result["r"]["top1_agree"] is None  # a regression output with two columns has no top-1
    assert result["r"]["rel_diff"] == pytest.approx(0.5 / 5.0)
    assert not result["p"]["passed"] and not result["r"]["passed"]


def test_tolerance_scales_with_the_output_magnitude():
    """Large logits differ by float32 rounding, not by a wrong graph; tiny diffs on tiny outputs still fail."""
    ref = np.linspace(-3e4, 3e4, 8).reshape(4, 2)
    big = verify.compare({"y": ref}, {"y": ref + 0.05}, atol=1e-4, rtol=1e-5)["y"]
    assert big["passed"] and big["tolerance"] == pytest.approx(1e-4 + 1e-5 * 3e4)
    small = verify.compare({"y": ref * 1e-4}, {"y": ref * 1e-4 + 5e-4}, atol=1e-4, rtol=1e-5)["y"]
    assert not small["passed"]


@pytest.mark.parametrize("side", ["reference", "optimized graph"])
def test_nan_or_inf_fails_and_names_the_side(side):
    ref, got = np.ones((3, 2)), np.ones((3, 2))
    (ref if side == "reference" else got)[1, 1] = np.nan if side == "reference" else np.inf
    result = verify.compare({"y": ref}, {"y": got}, {"y": True}, atol=1e-4, rtol=1e-5)["y"]
    assert result["passed"] is False and result["nonfinite"] == [side] and result["max_abs_diff"] is None


def test_a_constant_output_is_flagged():
    """MobileNetV3's saturated softmax: exactly 0.001 everywhere, whatever the input."""
    ref = np.full((16, 1000), 0.001)
    result = verify.compare({"p": ref}, {"p": ref.copy()}, {"p": True}, atol=1e-4, rtol=1e-5)["p"]
    assert result["passed"] and result["constant"] is True and result["spread"] == 0.0
    varied = verify.compare({"p": np.random.default_rng(0).random((16, 3))}, {"p": np.zeros((16, 3))},
                            atol=1e-4, rtol=1e-5)["p"]
    assert varied["constant"] is False


def _prob_graph():
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        y = tf.matmul(x, tf.ones([4, 3]), name="linear")
        tf.identity(tf.nn.softmax(y), name="probs")
        tf.nn.sigmoid(y, name="gate")
        tf.identity(y, name="regression")
    return g.as_graph_def()


def test_probability_outputs_are_read_from_the_graph():
    assert verify.probability_outputs(_prob_graph(), ["probs", "gate", "regression", "linear"]) == \
        {"probs": True, "gate": True, "regression": False, "linear": False}


def test_one_sigmoid_unit_agrees_on_the_thresholded_class():
    ref, got = np.array([[0.2], [0.7], [0.9]]), np.array([[0.6], [0.7], [0.9]])
    assert verify.compare({"g": ref}, {"g": got}, {"g": True})["g"]["top1_agree"] == pytest.approx(2 / 3)


def test_input_range_and_integer_inputs():
    infos = [verify.TensorInfo("img", "float32", (None, 8)), verify.TensorInfo("u8", "uint8", (None, 50)),
             verify.TensorInfo("ids", "int32", (None, 50))]
    wide = verify.make_inputs(infos, 64, 0, (0.0, 255.0))
    assert wide["img"].max() > 100 and wide["img"].min() >= 0 and wide["u8"].max() > 200
    default = verify.make_inputs(infos, 64, 0)
    assert default["img"].max() < 1 and default["ids"].max() <= 9  # small integers stay valid indices
    assert verify.make_inputs(infos, 4, 0, (-1000.0, 1000.0))["u8"].dtype == np.uint8


def test_run_batched_pads_to_a_fixed_batch_and_keeps_the_rows_fed():
    calls = []

    def fn(feeds):
        calls.append(len(feeds["x"]))
        return {"y": feeds["x"] * 2}
    out = verify.run_batched(fn, {"x": np.arange(5.0)}, batch=4)
    assert calls == [4, 4]
    np.testing.assert_array_equal(out["y"], np.arange(5.0) * 2)


def test_run_batched_runs_scalar_or_no_feeds_once():
    """No batch axis to split (a scalar input, or no input at all): one call, whatever the batch."""
    assert verify.sample_count({}) is None and verify.sample_count({"x": np.float32(3)}) is None
    assert verify.sample_count({"x": np.zeros((5, 2))}) == 5
    calls = []

    def fn(feeds):
        calls.append(sorted(feeds))
        return {"y": np.float32(2) * feeds.get("x", np.float32(1))}
    assert verify.run_batched(fn, {"x": np.float32(3)}, batch=4)["y"] == 6
    assert verify.run_batched(fn, {}, batch=4)["y"] == 2
    assert calls == [["x"], []]


def _npz_infos():
    return [verify.TensorInfo("image", "float32", (None, 2, 2, 1))]


def test_data_npz_is_validated(tmp_path):
    good = tmp_path / "s.npz"
    np.savez(good, image=np.ones((3, 2, 2, 1), np.float32))
    assert verify.load_data(good, _npz_infos(), ["image"], 2)["image"].shape == (2, 2, 2, 1)
    cases = {"missing": ({"other": np.ones((3, 2, 2, 1))}, "no array for input 'image'"),
             "shape": ({"image": np.ones((3, 2, 3, 1))}, "shape"),
             "dtype": ({"image": np.array([["a"]])}, "dtype"),
             "nan": ({"image": np.full((1, 2, 2, 1), np.nan)}, "NaN")}
    for name, (arrays, message) in cases.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, **arrays)
        with pytest.raises(KfreezeError, match=message):
            verify.load_data(path, _npz_infos(), ["image"], 4)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, image=np.array([object()], dtype=object))
    with pytest.raises(KfreezeError, match="cannot be read"):
        verify.load_data(pickled, _npz_infos(), ["image"], 4)


def test_data_path_must_stay_in_the_model_folder(tmp_path, monkeypatch):
    from kfreeze.params import ModelSpec, VerifySpec
    (tmp_path / "models" / "m").mkdir(parents=True)
    outside = tmp_path / "secret.npz"
    np.savez(outside, image=np.ones((1, 2, 2, 1), np.float32))
    (tmp_path / "models" / "m" / "s.npz").symlink_to(outside)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KfreezeError, match="outside"):
        verify.data_path(ModelSpec("m"), VerifySpec(data="s.npz"))


def test_run_batched_splits_for_a_fixed_batch():  # noqa: D103
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
    assert layers[1] == "MatMul|logits"  # BiasAdd fused into the MatMul layer by OpenCV
    result = verify.run_opencv(path, feeds, layers)
    assert result.error is None
    assert result.layers == {layers[0]: "Softmax", layers[1]: "MatMul"}  # the names net.forward was called with
    tf_out = verify.run_graph(graph, feeds, ["probs", "raw"])
    np.testing.assert_allclose(result.outputs[layers[0]], tf_out["probs"], atol=1e-5)
    np.testing.assert_allclose(result.outputs[layers[1]], tf_out["raw"], atol=1e-4)


def test_opencv_failure_is_a_recorded_result(tmp_path):
    path = tmp_path / "junk.pb"
    path.write_bytes(b"\x0a\x03abc")
    result = verify.run_opencv(path, {"x": np.zeros((1, 4), np.float32)}, ["y"])
    assert result.outputs is None and result.error and "\n" not in result.error


def _child_runs(monkeypatch, script):
    """OpenCV's child replaced by ``script`` (run by kfreeze.child as the real one would be)."""
    from kfreeze import child
    real = child.subprocess.Popen
    monkeypatch.setattr(child.subprocess, "Popen", lambda cmd, **kw: real([sys.executable, str(script)], **kw))


def test_opencv_crash_is_recorded_with_its_signal(tmp_path, monkeypatch):
    """A segfault in the child (as OpenCV 5.0 does on some graphs) becomes the error string."""
    crash = tmp_path / "crash.py"
    crash.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    _child_runs(monkeypatch, crash)
    (tmp_path / "g.pb").write_bytes(b"")
    result = verify.run_opencv(tmp_path / "g.pb", {"x": np.zeros((1, 4), np.float32)}, ["y"])
    assert result.outputs is None
    assert result.error.startswith("OpenCV crashed (SIGSEGV, signal 11)")


def test_opencv_that_allocates_without_bound_is_stopped_at_the_memory_bound(tmp_path, monkeypatch):
    """OpenCV 4.6 allocated 18.9 GB on a Bidirectional LSTM graph: the child's address space is capped."""
    hog = tmp_path / "hog.py"
    hog.write_text("blocks = []\nwhile True:\n    blocks.append(bytearray(2**28))\n")
    _child_runs(monkeypatch, hog)
    monkeypatch.setenv("KFREEZE_MEMORY_LIMIT_GB", "1")
    (tmp_path / "g.pb").write_bytes(b"")
    result = verify.run_opencv(tmp_path / "g.pb", {"x": np.zeros((1, 4), np.float32)}, ["y"])
    assert result.outputs is None
    assert result.error == "OpenCV needed more than the memory bound of 1.0 GiB (KFREEZE_MEMORY_LIMIT_GB sets another)"


def test_opencv_names_no_layer_it_lacks(tmp_path):
    """A name OpenCV's network lacks is a recorded error naming it, not a guess."""
    graph, path = _graph(tmp_path)
    result = verify.run_opencv(path, {"x": np.zeros((1, 4), np.float32)}, ["logits"])
    assert result.outputs is None and result.error == "OpenCV's network has no layer named 'logits'"


def test_opencv_problem_is_plain_for_a_recurrent_graph(monkeypatch):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        tf.compat.v1.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, y * 2.0), [tf.constant(0), x])
    raw = "OpenCV(4.14.0) tf_graph_simplifier.cpp:1051: error: (-215:Assertion failed) in function 'removePhaseSwitches'"
    plain = verify.opencv_problem(raw, g.as_graph_def())
    assert "recurrent loops are not supported by OpenCV dnn" in plain and "deploy it with TensorFlow" in plain
    assert "ONNX" not in plain and "removePhase" not in plain  # no advice that leads to another failure
    metrics = {"opencv_error": raw, "opencv_problem": plain}
    monkeypatch.delenv("KFREEZE_DEBUG", raising=False)
    assert verify.opencv_failure(metrics) == plain
    monkeypatch.setenv("KFREEZE_DEBUG", "1")
    assert verify.opencv_failure(metrics) == f"{plain} [OpenCV: {raw}]"
    assert verify.opencv_problem("bad", _prob_graph()) == "OpenCV could not run this graph: bad"


def test_nan_at_the_same_places_on_both_sides_passes_and_is_counted():
    """asin outside [-1, 1]: TF, ONNX and TFLite agree on NaN there; the finite rest is still compared."""
    ref = np.array([[0.5, np.nan, -np.inf], [0.25, 1.0, np.nan]])
    same = verify.compare({"y": ref}, {"y": ref.copy()}, atol=1e-4, rtol=1e-5)["y"]
    assert same["passed"] and same["nonfinite_agree"] == 3 and same["max_abs_diff"] == 0.0
    off = ref.copy()
    off[0, 0] = 0.6  # a finite value wrong: still caught
    assert not verify.compare({"y": ref}, {"y": off}, atol=1e-4, rtol=1e-5)["y"]["passed"]
    moved = ref.copy()
    moved[0, 1], moved[0, 0] = 0.5, np.nan  # NaN somewhere else: not agreement
    assert verify.compare({"y": ref}, {"y": moved}, atol=1e-4, rtol=1e-5)["y"]["nonfinite"]
    signs = ref.copy()
    signs[0, 2] = np.inf  # -inf became +inf
    assert verify.compare({"y": ref}, {"y": signs}, atol=1e-4, rtol=1e-5)["y"]["nonfinite"]
    nothing = np.full((2, 3), np.nan)  # all NaN (a NaN weight): nothing to compare, a failure
    assert verify.compare({"y": nothing}, {"y": nothing.copy()}, atol=1e-4, rtol=1e-5)["y"]["nonfinite"]


def test_an_open_dimension_besides_the_batch_is_fed_at_a_fixed_size():
    """Keras' export keeps (None, None, 3) open; verify feeds the open length at DYNAMIC_SIZE."""
    from kfreeze.verify.inputs import DYNAMIC_SIZE, TensorInfo
    feeds = verify.make_inputs([TensorInfo("x", "float32", (None, None, 3))], 4, 0)
    assert feeds["x"].shape == (4, DYNAMIC_SIZE, 3)


def test_inputs_fixed_at_different_first_dimensions_share_no_batch():
    """A [6, 2] input and a [1, 1, 6, 2] one (TF's fold_batch_norms tests side by side): no common batch."""
    assert verify.fixed_batch([(6, 2), (None, 3)]) == 6
    assert verify.fixed_batch([(6, 2), (6, 1, 1)]) == 6
    assert verify.fixed_batch([(6, 2), (1, 1, 6, 2)]) is None
    assert verify.fixed_batches([(6, 2), (None, 3), (), (1, 1, 6, 2)]) == [6, 1]


@pytest.mark.slow
def test_the_default_tf_child_keeps_every_row_of_inputs_with_their_own_batches(tmp_path):
    """Batch 0 runs all rows at once: an output with more rows than the first input keeps them all."""
    from kfreeze.tfenv import tf
    with tf.Graph().as_default() as g:
        a = tf.compat.v1.placeholder(tf.float32, [1, 2], name="a")
        b = tf.compat.v1.placeholder(tf.float32, [6, 2], name="b")
        tf.identity(b * a, name="out")
    path = tmp_path / "g.pb"
    path.write_bytes(g.as_graph_def().SerializeToString())
    feeds = {"a": np.float32([[2.0, 3.0]]), "b": np.arange(12, dtype=np.float32).reshape(6, 2)}
    got, error = verify.run_default_tf(path, feeds, ["out"], None)
    assert error is None, error
    np.testing.assert_allclose(got["out"], feeds["b"] * feeds["a"])


PERMUTED = """
node { name: "x" op: "Placeholder" attr { key: "dtype" value { type: DT_FLOAT } } %s }
node { name: "perm" op: "Const" attr { key: "dtype" value { type: DT_INT32 } }
       attr { key: "value" value { tensor { dtype: DT_INT32 tensor_shape { dim { size: 2 } } int_val: 0 int_val: 0 } } } }
node { name: "y" op: "Transpose" input: "x" input: "perm" attr { key: "T" value { type: DT_FLOAT } }
       attr { key: "Tperm" value { type: DT_INT32 } } }
"""


def test_a_graph_tensorflow_refuses_to_run_is_one_line_naming_the_node():
    """A damaged constant PNG, a permutation [0, 0]: TF's InvalidArgumentError (many lines) was an internal
    error in verify (issue 25); a shape the import refuses is one line too."""
    from google.protobuf import text_format
    from tensorflow.core.framework import graph_pb2

    from kfreeze.errors import KfreezeError
    from kfreeze.verify.run import run_graph
    from tests.test_bounds import png_header

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        image = tf.io.decode_png(tf.constant(png_header(4, 4) + b"not deflate data"), name="dec")
        tf.identity(x + tf.reduce_sum(tf.cast(image, tf.float32)), name="y")
    feeds = {"x": np.zeros((2, 3), np.float32)}
    with pytest.raises(KfreezeError, match=r"^g: running the graph failed at node 'dec' \(InvalidArgumentError\): "
                                           r"Invalid PNG") as e:
        run_graph(g.as_graph_def(), feeds, ["y"], where="g")
    assert "\n" not in e.value.line()
    graph = text_format.Parse(PERMUTED % "", graph_pb2.GraphDef())
    with pytest.raises(KfreezeError, match=r"failed at node 'y' \(InvalidArgumentError\): 1 is missing from"):
        run_graph(graph, feeds, ["y"], where="g")
    g = tf.Graph()  # a Reshape to 7 elements of a [2, 3] input, which TF's import refuses
    with g.as_default():
        tf.reshape(tf.compat.v1.placeholder(tf.float32, None, name="x"), [7], name="y")
    graph = g.as_graph_def()
    graph.node[0].attr["shape"].shape.CopyFrom(tf.TensorShape([2, 3]).as_proto())
    with pytest.raises(KfreezeError, match=r"^g: TensorFlow cannot import the graph: .*6 elements.*shape \[7\]"):
        run_graph(graph, feeds, ["y"], where="g")


def test_a_graph_computing_in_float16_is_told_from_a_float32_one():
    """A Keras mixed_float16 model freezes to float16 ops between Casts: verify judges it by the float16
    tolerances (TF's defaults, oneDNN, round float16 otherwise than the session; found by tests/corpus)."""
    def graph(half):
        with tf.Graph().as_default() as g:
            x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
            w = tf.constant(np.ones((3, 2)), tf.float16 if half else tf.float32)
            y = tf.matmul(tf.cast(x, tf.float16), w) if half else tf.matmul(x, w)
            tf.cast(y, tf.float32, name="y")
        return g.as_graph_def()
    assert verify.computes_in_half(graph(True)) and not verify.computes_in_half(graph(False))
