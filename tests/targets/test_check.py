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
