"""precision: int8: model.tflite quantized on verify.data, judged by int8 tolerances and top-1 agreement;
refused up front without verify.data or with targets that have no int8 path; optimized.pb stays float32."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from kfreeze import params, settings
from kfreeze.errors import KfreezeError
from tests.entries import keras_entry, params_text


def _images(rng, n):
    """4 classes: the bright quadrant of a noisy 16x16x3 image (activations of a trained net, not noise)."""
    y = rng.integers(0, 4, n)
    x = rng.normal(0.3, 0.2, (n, 16, 16, 3)).astype(np.float32)
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, r * 8:(r + 1) * 8, q * 8:(q + 1) * 8] += 0.5
    return x, y


def _classifier():
    """A conv + batch-norm + dense classifier (about 108k weights, mostly the dense layer's: the file's size is
    the weights', not the format's) trained 3 epochs (2 s), softmax output."""
    import keras

    keras.utils.set_random_seed(0)
    x, y = _images(np.random.default_rng(0), 1500)
    model = keras.Sequential([
        keras.Input((16, 16, 3), name="image"), keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.BatchNormalization(), keras.layers.MaxPooling2D(), keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(4, activation="softmax", name="probs")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def frozen():
    """(the Keras model, its frozen GraphDef with placeholder 'image' and output 'probs', held-out inputs)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from kfreeze.tfenv import tf

    model = _classifier()
    fn = tf.function(lambda image: tf.identity(model(image, training=False), name="probs"))
    concrete = fn.get_concrete_function(tf.TensorSpec([None, 16, 16, 3], tf.float32, name="image"))
    graph = convert_variables_to_constants_v2(concrete).graph.as_graph_def()
    image = next(n.name for n in graph.node if n.op == "Placeholder")
    out = next(n.name for n in reversed(graph.node) if n.op == "Identity" and n.name.startswith("probs"))
    x, _ = _images(np.random.default_rng(1), 64)
    return model, graph, image, out, x


def test_int8_file_is_smaller_close_agrees_on_top1_and_same_bytes_twice(frozen):
    from kfreeze.targets import tflite

    model, graph, image, out, x = frozen
    calib = {image: x[:16]}
    f32 = tflite.convert(graph, [image], [out], "float32", "here")
    q = tflite.convert(graph, [image], [out], "int8", "here", calib)
    assert q.data == tflite.convert(graph, [image], [out], "int8", "here", {image: x[:16].copy()}).data
    assert q.signature["weights"] == "int8" and q.signature["calibration_samples"] == 16
    assert q.signature["float_ops"] == []  # every op has an int8 kernel
    assert [i["dtype"] for i in q.signature["inputs"]] == ["float32"] == [o["dtype"] for o in q.signature["outputs"]]
    assert len(f32.data) / len(q.data) > 3.0, (len(f32.data), len(q.data))
    ref = model.predict(x, verbose=0)
    got = tflite.run(q.data, {image: x}, [out])[out]
    rel = float(np.abs(got - ref).max() / np.abs(ref).max())
    vspec = params.VerifySpec()
    assert rel < vspec.atol_int8 + vspec.rtol_int8, rel
    assert (got.argmax(1) == ref.argmax(1)).mean() >= vspec.top1_int8
    from ai_edge_litert.interpreter import Interpreter
    ops = {d["op_name"] for d in Interpreter(model_content=q.data)._get_ops_details()}
    assert {"QUANTIZE", "DEQUANTIZE", "CONV_2D", "FULLY_CONNECTED"} <= ops  # int8 inside, float32 at the edges


def test_int8_without_calibration_inputs_is_refused(frozen):
    from kfreeze.targets import tflite

    _, graph, image, out, _ = frozen
    with pytest.raises(KfreezeError, match="needs calibration inputs"):
        tflite.convert(graph, [image], [out], "int8", "here")


def _sibling_folder(tmp_path, graph, image, out, sibling):
    from kfreeze import graphio, targets

    graphio.write_json(tmp_path / "names.json", {"inputs": [image], "outputs": [out]})
    targets.write(tmp_path, "tflite", sibling)
    return tmp_path


def test_the_int8_check_passes_a_good_file_and_fails_a_badly_calibrated_one(frozen, tmp_path):
    """The negative control: calibrated on inputs 100x too small, the activations' scales are wrong
    and saturate; the same check that passes the good file fails it, by tolerance and by top-1."""
    from kfreeze.targets import tflite
    from kfreeze.targets.check import check_target

    model, graph, image, out, x = frozen
    ref = {out: model.predict(x, verbose=0)}
    vspec = params.VerifySpec()
    tol = (vspec.atol_int8, vspec.rtol_int8)
    good = tflite.convert(graph, [image], [out], "int8", "here", {image: x[:16]})
    bad = tflite.convert(graph, [image], [out], "int8", "here", {image: x[:16] * 0.01})
    metrics, failures = check_target("tflite", _sibling_folder(tmp_path / "good", graph, image, out, good),
                                     {image: x}, ref, {out: True}, *tol, None, vspec.top1_int8)
    assert metrics["passed"] and not failures and metrics["top1_required"] == 0.9 and metrics["atol_used"] == tol[0]
    assert metrics["top1_agree"][out] >= 0.9
    metrics, failures = check_target("tflite", _sibling_folder(tmp_path / "bad", graph, image, out, bad),
                                     {image: x}, ref, {out: True}, *tol, None, vspec.top1_int8)
    assert not metrics["passed"] and metrics["top1_agree"][out] < 0.9
    assert any("differs from the source model" in f for f in failures)
    assert any("verify.top1_int8 = 0.9" in f for f in failures), failures


# Refused up front (the resolve stage, no TensorFlow), one line naming the key.

def _params(tmp_path, data="x.npz", **keys):
    entry = keras_entry("models/m/model.keras", **{"precision": "int8", "targets": ["tf", "tflite"], **keys})
    (tmp_path / "models" / "m").mkdir(parents=True, exist_ok=True)
    (tmp_path / "models" / "m" / "model.keras").write_bytes(b"k")
    path = tmp_path / "params.yaml"
    path.write_text(params_text({"m": entry}, data=data))
    return path


def test_int8_without_verify_data_is_refused_at_resolve(tmp_path):
    path = _params(tmp_path, data=None)
    with pytest.raises(KfreezeError) as e:
        settings.write_settings("m", path, tmp_path / "build", tmp_path / "models")
    assert e.value.where.endswith("models.m.precision") and "verify.data is not set" in e.value.problem
    assert "\n" not in e.value.line()


@pytest.mark.parametrize("targets,says", [(["tf"], "targets has no tflite"),
                                          (["tf", "onnx", "tflite"], "onnx cannot be int8"),
                                          (["tf", "tflite", "openvino"], "openvino cannot be int8"),
                                          (["tf", "tflite", "saved_model"], "saved_model cannot be int8")])
def test_int8_with_targets_that_cannot_be_int8_is_refused(tmp_path, targets, says):
    path = _params(tmp_path, targets=targets)
    with pytest.raises(KfreezeError) as e:
        params.model_spec("m", path)
    assert e.value.where.endswith("models.m.precision") and says in e.value.problem
    assert "\n" not in e.value.line()


def test_int8_settings_optimize_stays_float32_and_tflite_follows_the_data_file(tmp_path):
    path = _params(tmp_path)
    (tmp_path / "models" / "m" / "x.npz").write_bytes(b"one")
    build = tmp_path / "build"
    settings.write_settings("m", path, build, tmp_path / "models")
    read = lambda stage: json.loads(settings.settings_file(build, "m", stage).read_text())  # noqa: E731
    assert read("optimize")["model"]["precision"] == "float32"  # the same optimized.pb as float32
    assert read("tflite")["model"]["precision"] == read("verify")["model"]["precision"] == "int8"
    assert read("tflite")["verify"] == {"data": "x.npz", "samples": 16}
    (tmp_path / "models" / "m" / "x.npz").write_bytes(b"two")  # new calibration inputs: tflite reruns
    assert settings.write_settings("m", path, build, tmp_path / "models") == ["convert", "verify", "tflite"]
    assert read("verify")["verify"]["atol_int8"] == 0.05 and read("verify")["verify"]["top1_int8"] == 0.9


@pytest.mark.slow
def test_a_keras_classifier_through_the_stages_int8_tflite_verified(tmp_path):
    """convert .. optimize, tflite with precision int8 calibrated on verify.data's rows after verify's own, then
    verify: passes,
    records the int8 tolerances and top-1 agreement; optimized.pb is the float32 one."""
    from tests.conformance import harness

    model = _classifier()
    project = harness.write_project(tmp_path, "cls", model, targets=["tf", "tflite"], precision="int8")
    x, _ = _images(np.random.default_rng(1), 232)  # verify's 32 rows, then 200 to calibrate on
    np.savez(project / "models" / "cls" / "x.npz", image=x)
    doc = yaml.safe_load((project / "params.yaml").read_text())
    doc["verify"].update(data="x.npz", samples=32)
    (project / "params.yaml").write_text(yaml.safe_dump(doc))
    harness.run_stages(project, "cls", ("convert", "export", "freeze", "optimize", "tflite", "verify"))
    metrics = json.loads((project / "metrics" / "cls.json").read_text())
    assert metrics["passed"] and metrics["precision"] == "int8" and metrics["atol_used"] == 1.0e-4
    tfl = metrics["targets"]["tflite"]
    assert tfl["passed"] and tfl["weights"] == "int8" and tfl["atol_used"] == 0.05 and tfl["top1_required"] == 0.9
    assert tfl["calibration_samples"] == 200 and tfl["calibration_held_out"] is True
    from kfreeze.targets.usage import verify_note
    line = verify_note(metrics)
    assert "tflite max_rel_diff" in line and "top-1 agreement 1 >= 0.9; calibrated on 200 held-out rows" in line, line
    assert tfl["float_ops"] == []
    assert all(v >= 0.9 for v in tfl["top1_agree"].values()), tfl["top1_agree"]
    assert tfl["bytes"] * 3 < Path(project / "build" / "cls" / "optimized.pb").stat().st_size
    print(f"int8: {tfl['bytes']} bytes vs optimized.pb {metrics['bytes_optimized']}, max_rel_diff "
          f"{tfl['max_rel_diff']:.3g}, top1 {tfl['top1_agree']}")


def test_calibration_rows_leave_verify_s_own_rows_out_when_there_are_more(frozen, tmp_path):
    from kfreeze import targets

    _, graph, image, _, x = frozen
    np.savez(tmp_path / "x.npz", image=x)  # 64 rows
    rows, held_out = targets.calibration_rows(graph, [image], ["image"], tmp_path / "x.npz", 16)
    assert held_out and np.array_equal(rows[image], x[16:])
    rows, held_out = targets.calibration_rows(graph, [image], ["image"], tmp_path / "x.npz", 64)
    assert not held_out and np.array_equal(rows[image], x)  # nothing left over: all of them, recorded


def test_a_float_model_s_tflite_settings_do_not_follow_verify_data(tmp_path):
    path = _params(tmp_path, precision="float32")
    build = tmp_path / "build"
    settings.write_settings("m", path, build, tmp_path / "models")
    assert json.loads(settings.settings_file(build, "m", "tflite").read_text())["verify"] == {}


def test_an_op_without_an_int8_kernel_stays_float32_and_is_recorded():
    """The converter does not refuse it (TFLITE_BUILTINS_INT8): it computes it in float32 between a DEQUANTIZE
    and a QUANTIZE. The signature and verify's line name it."""
    from kfreeze.targets import tflite
    from kfreeze.tfenv import tf

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 5], name="x")
        w = tf.constant(np.random.default_rng(0).normal(size=(5, 5)).astype(np.float32))
        tf.identity(tf.math.cumsum(tf.matmul(x, w), axis=1), name="y")
    rows = np.random.default_rng(1).normal(size=(20, 5)).astype(np.float32)
    q = tflite.convert(g.as_graph_def(), ["x"], ["y"], "int8", "here", {"x": rows})
    assert q.signature["float_ops"] == ["CUMSUM"]
    assert "in float32: CUMSUM" in tflite.note({"weights": "int8", "atol_used": 0.05, "rtol_used": 0.05,
                                                 "calibration_samples": 20, "float_ops": ["CUMSUM"]})


def test_the_tflite_stage_itself_refuses_int8_without_verify_data(tmp_path, monkeypatch):
    """kfreeze run has no resolve stage: the tflite step says it, before converting anything."""
    from kfreeze import params, pipeline

    _params(tmp_path, data=None)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KfreezeError, match="verify.data is not set"):
        pipeline.target("tflite", params.model_spec("m"), params.verify_spec("params.yaml", "m"), Path("build/m"))
