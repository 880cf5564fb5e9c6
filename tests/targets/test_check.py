"""Verify's check of a sibling: parity with verify's tolerances, OpenCV recorded, a corrupted file fails."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from kfreeze import targets
from kfreeze.errors import KfreezeError
from kfreeze.targets.check import check_target
from kfreeze.verify import probability_outputs
from tests.targets import graphs

ATOL, RTOL = 1e-4, 1e-5


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """BUILD/<name>/ with optimized.pb (two inputs, two outputs, fixed batch 1), onnx/ and tflite/."""
    graph = graphs.conv_two_heads(batch=1)
    out = graph.write(tmp_path_factory.mktemp("build") / "m")
    for target in targets.EXTRA:
        targets.write(out, target, targets.build(target, out, "here"))
    feeds = graphs.feeds_for(graph, samples=3)
    from kfreeze.verify import run_batched, run_graph
    reference = run_batched(lambda f: run_graph(graph.graph, f, graph.outputs), feeds, 1)
    return graph, out, feeds, reference


def _check(built, target, out=None):
    graph, folder, feeds, reference = built
    return check_target(target, out or folder, feeds, reference, probability_outputs(graph.graph, graph.outputs),
                        ATOL, RTOL, 1)


@pytest.mark.slow
@pytest.mark.parametrize("target", targets.EXTRA)
def test_a_faithful_sibling_passes_and_is_measured(built, target):
    metrics, failures = _check(built, target)
    assert failures == [] and metrics["passed"]
    assert metrics["max_rel_diff"] < 1e-5 and set(metrics["outputs"]) == {"fmap", "probs"}
    # another runtime rounds differently; the SavedModel runs optimized.pb's own graph in TF (measured: equal)
    assert (metrics["max_rel_diff"] > 0) == (target != "saved_model")
    assert metrics["bytes"] == targets.model_file(built[1], target).stat().st_size and metrics["ops"] > 3
    assert metrics["top1_agree"] == {"fmap": None, "probs": 1.0}
    if target == "onnx":  # OpenCV's readNetFromONNX, recorded: loads this one and agrees
        assert metrics["opencv_error"] is None and metrics["opencv_max_abs_diff"] < 1e-5


def _copy_build(built, tmp_path):
    import shutil
    shutil.copytree(built[1], tmp_path / "m")
    return tmp_path / "m"


def test_a_corrupted_onnx_weight_fails_naming_target_and_output(built, tmp_path):
    out = _copy_build(built, tmp_path)
    path = targets.model_file(out, "onnx")
    model = onnx.load(path)
    weight = max(model.graph.initializer, key=lambda t: (int(np.prod(t.dims)), t.name))  # the conv kernel
    value = onnx.numpy_helper.to_array(weight).copy()
    value.flat[np.argmax(np.abs(value))] *= 1.5
    weight.CopyFrom(onnx.numpy_helper.from_array(value, weight.name))
    path.write_bytes(model.SerializeToString())
    metrics, failures = _check(built, "onnx", out)
    assert not metrics["passed"] and failures
    assert failures[0].startswith("target onnx (onnx/model.onnx): output 'fmap' differs from the source model by")


def test_a_corrupted_tflite_weight_fails(built, tmp_path):
    out = _copy_build(built, tmp_path)
    path = targets.model_file(out, "tflite")
    kernel = [n for n in built[0].graph.node if n.op == "Const"][0]  # the conv kernel, stored as it is (OHWI)
    from kfreeze.tfenv import tf
    value = tf.make_ndarray(kernel.attr["value"].tensor)
    needle = np.float32(value.flat[np.argmax(np.abs(value))]).tobytes()
    data = path.read_bytes()
    assert data.count(needle) == 1
    path.write_bytes(data.replace(needle, np.float32(np.frombuffer(needle, np.float32)[0] * 1.5).tobytes()))
    metrics, failures = _check(built, "tflite", out)
    assert not metrics["passed"] and failures[0].startswith("target tflite (tflite/model.tflite): output 'fmap'")


def test_a_truncated_file_fails_in_one_line(built, tmp_path):
    out = _copy_build(built, tmp_path)
    path = targets.model_file(out, "onnx")
    path.write_bytes(path.read_bytes()[:200])
    metrics, failures = _check(built, "onnx", out)
    assert metrics["error"] and len(failures) == 1 and "\n" not in failures[0]
    assert failures[0].startswith("target onnx (onnx/model.onnx): ONNX Runtime cannot run it:")


def test_a_target_not_built_is_an_error(built, tmp_path):
    out = _copy_build(built, tmp_path)
    targets.write(out, "tflite", None)
    assert targets.read_signature(out, "tflite") == {"requested": False, "target": "tflite"}
    with pytest.raises(KfreezeError, match="tflite is in targets but model.tflite was not built"):
        _check(built, "tflite", out)


@pytest.fixture(scope="module")
def dynamic(tmp_path_factory):
    """The same graph with its batch left dynamic, every target built; verify's 3 samples in one run."""
    graph = graphs.conv_two_heads()
    out = graph.write(tmp_path_factory.mktemp("build") / "m")
    for target in targets.EXTRA:
        targets.write(out, target, targets.build(target, out, "here"))
    feeds = graphs.feeds_for(graph, samples=3)
    return graph, out, feeds, graphs.run_tf(graph, feeds)


@pytest.mark.parametrize("target", targets.EXTRA)
def test_a_dynamic_batch_sibling_is_also_run_at_batch_1(dynamic, target):
    graph, out, feeds, reference = dynamic
    metrics, failures = check_target(target, out, feeds, reference, probability_outputs(graph.graph, graph.outputs),
                                     ATOL, RTOL, None)
    assert failures == [] and metrics["passed"]
    assert metrics["other_batch"]["batch"] == 1 and metrics["other_batch"]["passed"]
    assert metrics["other_batch"]["max_abs_diff"] < 1e-5


@pytest.mark.parametrize("target", targets.EXTRA)
def test_a_fixed_batch_sibling_is_run_at_its_batch_only(built, target):
    metrics, _ = _check(built, target)
    assert "other_batch" not in metrics


def test_the_other_batch_size_is_1_or_2_and_needs_the_samples():
    from kfreeze.targets.check import other_batch

    dyn = {"inputs": [{"shape": [None, 4]}, {"shape": [None, 6, 6, 2]}]}
    assert other_batch(dyn, 16, 16) == 1 and other_batch(dyn, 1, 16) == 2 and other_batch(dyn, 1, 1) is None
    assert other_batch({"inputs": [{"shape": [None, 4]}, {"shape": [1, 6, 6, 2]}]}, 16, 16) is None
    assert other_batch({"inputs": [{"shape": []}]}, 16, 16) is None  # a scalar input has no batch
    assert other_batch({}, 16, 16) is None


def _batch_folded() -> graphs.Graph:
    """A dynamic-batch placeholder whose graph has the batch 3 baked into a Reshape: right at verify's batch."""
    from kfreeze.tfenv import tf

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        tf.reshape(tf.nn.relu(x * 2.0 + 1.0), [3, 4], name="y")
    return graphs.Graph(g.as_graph_def(), ["x"], ["y"])


@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_a_sibling_that_only_runs_at_verify_s_batch_fails_in_one_line(tmp_path, target):
    graph = _batch_folded()
    out = graph.write(tmp_path / "m")
    targets.write(out, target, targets.build(target, out, "here"))
    assert targets.read_signature(out, target)["inputs"][0]["shape"] == [None, 4]
    feeds = graphs.feeds_for(graph, samples=3)
    metrics, failures = check_target(target, out, feeds, graphs.run_tf(graph, feeds), {"y": False}, ATOL, RTOL, None)
    assert metrics["max_abs_diff"] < 1e-5  # at batch 3 it is right
    assert not metrics["passed"] and metrics["other_batch"]["passed"] is False and metrics["other_batch"]["error"]
    assert len(failures) == 1 and "\n" not in failures[0]
    file = targets.FILES[target]
    assert failures[0].startswith(f"target {target} ({target}/{file}): at batch 1 "
                                  "(its batch is dynamic; verify ran it at 3): ")


def test_a_sibling_whose_outputs_change_with_the_batch_fails_naming_the_output(tmp_path, monkeypatch):
    """A runtime that answers for a row differently when fed alone (here: simulated on the ONNX file)."""
    graph = graphs.conv_two_heads()
    out = graph.write(tmp_path / "m")
    targets.write(out, "onnx", targets.build("onnx", out, "here"))
    from kfreeze.targets import onnx as onnx_target
    real = onnx_target.run_folder

    def drifting(folder, feeds, outputs, signature):
        got = real(folder, feeds, outputs, signature)
        if len(feeds["image"]) == 1:
            got["probs"] = got["probs"] + 0.01
        return got
    monkeypatch.setattr(onnx_target, "run_folder", drifting)
    feeds = graphs.feeds_for(graph, samples=3)
    metrics, failures = check_target("onnx", out, feeds, graphs.run_tf(graph, feeds),
                                     probability_outputs(graph.graph, graph.outputs), ATOL, RTOL, None)
    assert metrics["max_abs_diff"] < 1e-5 and not metrics["passed"]
    assert metrics["other_batch"] == {"batch": 1, "passed": False, "max_abs_diff": pytest.approx(0.01, rel=1e-3)}
    assert failures == [failures[0]] and failures[0].startswith(
        "target onnx (onnx/model.onnx): at batch 1 (its batch is dynamic; verify ran it at 3): output 'probs' "
        "differs from the same file's at batch 3 by 0.01")


@pytest.mark.parametrize("target", targets.EXTRA)
def test_open_height_and_width_stay_open_and_run_at_other_sizes(tmp_path, target):
    """Keras' exporters keep a dimension the model leaves open; so does every target (ONNX in NCHW)."""
    import numpy as np

    graph = graphs.conv_any_size()
    out = graph.write(tmp_path / "m")
    targets.write(out, target, targets.build(target, out, "here"))
    signature = targets.read_signature(out, target)
    assert signature["inputs"][0]["shape"] == ([None, 2, None, None] if target == "onnx" else [None, None, None, 2])
    rng = np.random.default_rng(0)
    for shape in [(1, 6, 6, 2), (2, 9, 7, 2)]:
        feeds = {"image": rng.normal(size=shape).astype(np.float32)}
        got = targets.get(target).load().run_folder(targets.folder(out, target), feeds, graph.outputs, signature)
        assert got["fmap"].shape == (*shape[:3], 4) and got["probs"].shape == (shape[0], 3)
        assert graphs.rel_err(graphs.run_tf(graph, feeds), got) < 1e-5
