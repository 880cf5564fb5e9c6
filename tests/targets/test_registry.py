"""The targets table (kfreeze/targets/registry.py) and what must agree with it: each module's interface,
a stage script, and dvc.yaml's two stages per target (params' tests hold their settings files)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kfreeze import params
from kfreeze.targets import registry

ROOT = Path(__file__).resolve().parents[2]


def test_params_targets_are_tf_and_the_registry_in_its_order():
    assert params.TARGETS == ("tf", *registry.EXTRA)
    assert registry.EXTRA[:2] == ("onnx", "tflite")  # canonical order: existing settings files keep their bytes


@pytest.mark.parametrize("entry", registry.REGISTRY, ids=lambda e: e.name)
def test_each_target_module_has_the_interface(entry):
    module = entry.load()
    for name in ("build", "run_folder", "op_count", "usage"):
        assert callable(getattr(module, name, None)), f"{entry.module}.{name}"
    assert all(key in params.KEYS[params.KERAS] and key in params.KEYS[params.TF1] for key in entry.reads)


@pytest.mark.parametrize("entry", registry.REGISTRY, ids=lambda e: e.name)
def test_each_target_has_its_stages_and_verify_depends_on_them(entry):
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    script = f"stages/target_{entry.name}.py"
    assert (ROOT / script).is_file()
    for suffix, each, verify in (("", "${models}", "verify"), ("_tf1", "${graphs}", "verify_tf1")):
        stage = stages[entry.name + suffix]
        assert stage["foreach"] == each and stage["do"]["cmd"] == f"python {script} -- ${{key}}"
        assert stage["do"]["outs"] == [f"build/${{key}}/{entry.name}"]
        assert {"build/${key}/optimized.pb", "build/${key}/names.json"} <= set(stage["do"]["deps"])
        assert f"build/${{key}}/{entry.name}" in stages[verify]["do"]["deps"]


@pytest.mark.parametrize("entry", registry.REGISTRY, ids=lambda e: e.name)
def test_a_target_not_requested_writes_only_its_marker(entry, tmp_path, monkeypatch):
    import json

    from kfreeze import pipeline
    from tests.entries import keras_entry, params_text

    (tmp_path / "params.yaml").write_text(params_text({"m": keras_entry("models/m/model.keras")}))
    monkeypatch.chdir(tmp_path)
    from kfreeze import params
    spec, vspec = params.model_spec("m"), params.verify_spec("params.yaml", "m")
    assert pipeline.target(entry.name, spec, vspec, Path("build/m")) == f"m: {entry.name} not requested " \
                                                                        "(params targets)"
    folder = tmp_path / "build" / "m" / entry.name
    assert [p.name for p in folder.iterdir()] == ["signature.json"]
    assert json.loads((folder / "signature.json").read_text()) == {"requested": False, "target": entry.name}
