"""The onnx and tflite stages and verify's verdict on them, in a throwaway project."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kfreeze import params, pipeline
from kfreeze.errors import KfreezeError
from tests.conformance import harness, zoo
from tests.targets import graphs

ROOT = Path(__file__).resolve().parents[2]


def _project(tmp_path, targets):
    """params.yaml with model 'm' and BUILD/m/ holding a small optimized.pb (no Keras stages needed)."""
    from tests.entries import params_text, keras_entry
    (tmp_path / "params.yaml").write_text(params_text({"m": keras_entry("models/m/model.keras", targets=targets)}))
    graphs.dense().write(tmp_path / "build" / "m")
    return tmp_path


def test_a_target_not_requested_writes_a_marker_without_tensorflow(tmp_path):
    project = _project(tmp_path, ["tf"])
    code = ("import sys; from pathlib import Path; from kfreeze import pipeline; "
            "from kfreeze import params; spec = params.model_spec('m'); vspec = params.verify_spec('params.yaml', 'm'); "
            "print(pipeline.target('onnx', spec, vspec, Path('build/m'))); print('tensorflow' in sys.modules)")
    child = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True,
                           env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert child.stdout.splitlines() == ["m: onnx not requested (params targets)", "False"], child.stderr
    assert [p.name for p in (project / "build" / "m" / "onnx").iterdir()] == ["signature.json"]


def test_requested_targets_are_written_with_their_signature_same_bytes_twice(tmp_path, monkeypatch):
    project = _project(tmp_path, ["tf", "onnx", "tflite"])
    monkeypatch.chdir(project)
    first = {}
    for _ in range(2):
        spec, vspec = params.model_spec("m"), params.verify_spec("params.yaml", "m")
        for target in ("onnx", "tflite"):
            line = pipeline.target(target, spec, vspec, Path("build/m"))
            assert line.startswith(f"m: wrote {target}/model.{target} (") and "inputs [('x', [None, 5])]" in line
            data = (project / "build" / "m" / target / f"model.{target}").read_bytes()
            assert first.setdefault(target, data) == data
    sig = json.loads((project / "build" / "m" / "onnx" / "signature.json").read_text())
    assert sig["requested"] and sig["opset"] == 17 and sig["layout"] == "NCHW" and sig["file"] == "model.onnx"


@pytest.fixture(scope="module")
def keras_run(tmp_path_factory):
    """A conv + batch-norm Keras model through every stage with targets [tf, onnx, tflite]."""
    row = next(r for r in zoo.ROWS if r.id == "functional")
    return harness.run_model(tmp_path_factory.mktemp("p"), row.id, zoo.build(row), targets=harness.TARGETS)


@pytest.mark.slow
def test_verify_checks_each_target_against_the_keras_model(keras_run):
    assert set(keras_run.targets) == {"onnx", "tflite"} and keras_run.metrics["passed"]
    for target, got in keras_run.targets.items():
        assert got["passed"] and got["max_rel_diff"] < 1e-5, target
    assert keras_run.targets["onnx"]["opencv_error"] is None  # recorded: OpenCV loads this model.onnx


@pytest.mark.slow
def test_a_corrupted_sibling_fails_verify_in_one_line_naming_the_file_and_output(keras_run, tmp_path):
    import shutil

    import onnx
    import numpy as np

    shutil.copytree(keras_run.project, tmp_path / "p")
    project, name = tmp_path / "p", keras_run.name
    path = project / "build" / name / "onnx" / "model.onnx"
    model = onnx.load(path)
    weight = max(model.graph.initializer, key=lambda t: (int(np.prod(t.dims)), t.name))
    value = onnx.numpy_helper.to_array(weight) * 1.5
    weight.CopyFrom(onnx.numpy_helper.from_array(value.astype(np.float32), weight.name))
    path.write_bytes(model.SerializeToString())
    with pytest.raises(KfreezeError) as e:
        harness.run_stages(project, name, ("verify",))
    assert str(e.value.where) == f"build/{name}/onnx/model.onnx"
    assert e.value.problem.startswith("target onnx (onnx/model.onnx): output 'logits' differs from the source model")
    assert not (project / "metrics" / f"{name}.json").exists()
    report = json.loads((project / "build" / name / "verify_failed.json").read_text())
    assert report["targets"]["onnx"]["passed"] is False and report["targets"]["tflite"]["passed"] is True
