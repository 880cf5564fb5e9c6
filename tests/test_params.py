import dataclasses

import pytest

from kfreeze import params, settings
from kfreeze.errors import KfreezeError


def write(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_model_spec_reads_the_contract_keys(tmp_path):
    path = write(tmp_path, """
models:
  digits:
    source: models/digits/model.keras
    arch: null
    layout: null
    theano_kernels: null
    custom_objects: []
    trust_code: false
    inputs: []
    outputs: [probs]
    input_shape: [1, 20, 20, 1]
    opencv: false
    precision: float32
graphs:
  digits_tf1:
    graph: models/digits_tf1/graph.pbtxt
    checkpoint: models/digits_tf1/model.ckpt-600
    inputs: [IteratorGetNext]
    outputs: [softmax_tensor]
    input_shape: [1, 20, 20, 1]
    input_dtype: uint8
    opencv: false
    precision: float16
    trust_code: false
verify: {samples: 4, seed: 3, atol: 1.0e-5}
""")
    spec = params.model_spec("digits", path)
    assert spec.source == "models/digits/model.keras"
    assert spec.inputs == [] and spec.outputs == ["probs"] and spec.input_shape == [1, 20, 20, 1]
    assert params.verify_spec(path) == params.VerifySpec(samples=4, seed=3, atol=1e-5)
    assert params.verify_spec(path).atol_for("float16") == 5e-3
    tf1 = params.model_spec("digits_tf1", path)
    assert not tf1.is_keras and tf1.checkpoint == "models/digits_tf1/model.ckpt-600" and tf1.input_dtype == "uint8"


FULL = "    arch: null\n    layout: null\n    theano_kernels: null\n    custom_objects: []\n    trust_code: false\n    inputs: []\n    outputs: []\n    input_shape: null\n    opencv: false\n    precision: float32\n"


def test_unknown_key_suggests_the_right_one(tmp_path):
    path = write(tmp_path, "graphs: {}\nmodels:\n  m:\n    source: models/m/a.keras\n    ouputs: [x]\n")
    with pytest.raises(KfreezeError, match=r"unknown key 'ouputs' \(did you mean 'outputs'\?\)"):
        params.model_spec("m", path)


def test_wrong_type_is_named(tmp_path):
    path = write(tmp_path, "graphs: {}\nmodels:\n  m:\n    source: models/m/a.keras\n    outputs: probs\n")
    with pytest.raises(KfreezeError, match=r"models.m.outputs: must be a list"):
        params.model_spec("m", path)


def test_model_name_dvc_cannot_use(tmp_path):
    path = write(tmp_path, "graphs: {}\nmodels:\n  My@Model:\n    source: models/m/a.keras\n" + FULL)
    with pytest.raises(KfreezeError, match="a-z, 0-9"):
        params.model_spec("My@Model", path)


def test_unknown_model_lists_the_known_ones(tmp_path):
    path = write(tmp_path, "graphs: {}\nmodels:\n  digits:\n    source: models/m/a.keras\n" + FULL)
    with pytest.raises(KfreezeError, match=r"no model 'digit'.*did you mean 'digits'"):
        params.model_spec("digit", path)


@pytest.mark.parametrize("given, run", [
    ("models/x/model.keras", "kfreeze run models/x/model.keras"),
    ("net.h5", "kfreeze run net.h5"),
    ("build/x/frozen.pb", "kfreeze run --graph build/x/frozen.pb --checkpoint CKPT"),
])
def test_a_file_given_as_the_model_name_points_to_run_and_add(tmp_path, given, run):
    path = write(tmp_path, "graphs: {}\nmodels:\n  digits:\n    source: models/m/a.keras\n" + FULL)
    with pytest.raises(KfreezeError) as e:
        params.model_spec(given, path)
    line = e.value.line()
    assert line.startswith(f"{given}: is a file path; this command takes a model name") and "\n" not in line
    assert f"use '{run}'" in line and "kfreeze add NAME" in line


def test_an_entry_takes_the_defaults_for_what_it_leaves_out(tmp_path):
    path = write(tmp_path, "graphs: {}\nmodels:\n  m:\n    source: models/m/a.keras\n    opencv: true\n")
    spec = params.model_spec("m", path)
    assert spec.opencv is True and spec.inputs == [] and spec.precision == "float32" and spec.input_shape is None
    path = write(tmp_path, "models: {}\ngraphs:\n  g:\n    graph: models/g/g.pbtxt\n")
    spec = params.model_spec("g", path)  # no checkpoint: a graph frozen already, or a SavedModel folder
    assert spec.checkpoint is None and spec.signature is None
    path = write(tmp_path, "models: {}\ngraphs:\n  g:\n    checkpoint: models/g/ckpt\n")
    with pytest.raises(KfreezeError, match=r"graphs.g: missing key\(s\) graph"):
        params.model_spec("g", path)


def test_a_signature_is_a_key_or_null(tmp_path):
    path = write(tmp_path, "models: {}\ngraphs:\n  g:\n    graph: models/g/sm\n    signature: ''\n")
    with pytest.raises(KfreezeError, match=r"graphs.g.signature: must be a signature key or null"):
        params.model_spec("g", path)


def test_files_must_live_in_the_models_folder(tmp_path):
    path = write(tmp_path, "graphs: {}\nmodels:\n  m:\n    source: /data/m.keras\n" + FULL)
    with pytest.raises(KfreezeError, match=r"models.m.source: '/data/m.keras' is not inside models/m/"):
        params.model_spec("m", path)
    path = write(tmp_path, "graphs: {}\nmodels:\n  m:\n    source: models/m/../x.keras\n" + FULL)
    with pytest.raises(KfreezeError, match="not inside models/m/"):
        params.model_spec("m", path)


def test_layout_values(tmp_path):
    path = write(tmp_path, "graphs: {}\nmodels:\n  m:\n    source: models/m/a.h5\n" +
                 FULL.replace("layout: null", "layout: nchw"))
    with pytest.raises(KfreezeError, match="channels_first, channels_last or null"):
        params.model_spec("m", path)


def test_a_key_of_the_other_section_is_explained(tmp_path):
    path = write(tmp_path, "graphs: {}\nmodels:\n  m:\n    graph: g.pb\n" + FULL)
    with pytest.raises(KfreezeError, match=r"'graph' entry belongs under 'graphs:'"):
        params.model_spec("m", path)


def test_both_sections_are_required(tmp_path):
    path = write(tmp_path, "models:\n  m:\n    source: models/m/a.keras\n" + FULL)
    with pytest.raises(KfreezeError, match=r"no 'graphs:' section; add 'graphs: \{\}'"):
        params.model_spec("m", path)


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "models:\n  m:\n    source: [a\n")
    with pytest.raises(KfreezeError, match=r"params.yaml:\d+: not valid YAML"):
        params.load(path)


def test_verify_defaults_and_bad_values(tmp_path):
    assert params.verify_spec(write(tmp_path, "graphs: {}\nmodels:\n  m: {source: a}\n")) == params.VerifySpec()
    with pytest.raises(KfreezeError, match="samples: must be between 1"):
        params.verify_spec(write(tmp_path, "graphs: {}\nmodels:\n  m: {source: a}\nverify: {samples: 0}\n"))


def test_dvc_yaml_stages_depend_on_their_settings_files():
    """The rerun rules rest on this: one resolve stage writes every model's settings, each stage
    depends on its own file in there, and no stage declares params (DVC would refuse an entry that
    leaves a key to its default)."""
    import yaml

    stages = yaml.safe_load((params_root() / "dvc.yaml").read_text())["stages"]
    assert set(stages["resolve"]["deps"]) == {"params.yaml", "models", "kfreeze"}
    assert stages["resolve"]["outs"] == ["build/settings"]
    # Names are checked by a stage with no name on its command line, before any stage built from one.
    assert "$" not in stages["resolve"]["cmd"]
    for section, per_stage in params.STAGE_PARAMS.items():
        for stage in per_stage:
            assert stages[stage]["foreach"] == f"${{{section}}}", stage
            assert stages[stage]["do"]["deps"][0] == f"build/settings/${{key}}/{stage}.json", stage
            assert "models/${key}" not in stages[stage]["do"]["deps"], stage  # its files' hashes are in settings
            # the package's hash resolve writes, not the folder: one folder hash per `dvc status` (issue 24)
            assert "build/settings/kfreeze.json" in stages[stage]["do"]["deps"], stage
            assert "kfreeze" not in stages[stage]["do"]["deps"], stage
    assert not [s for s, v in stages.items() if "params" in v or "params" in v.get("do", {})]
    per_model = {s for per_stage in params.STAGE_PARAMS.values() for s in per_stage}
    assert set(stages) - per_model == {"summary", "resolve"}


def test_resolve_writes_every_model_and_drops_the_removed(tmp_path, monkeypatch):
    """One process for all models; an entry edit changes that model's files only."""
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        (tmp_path / "models" / name).mkdir(parents=True)
    path = write(tmp_path, "graphs: {}\nmodels:\n  a: {source: models/a/m.keras}\n  b: {source: models/b/m.keras}\n")
    written = settings.write_all(path, "build")
    assert sorted(written) == ["a", "b"] and written["a"] == list(params.STAGE_PARAMS["models"])
    path = write(tmp_path, "graphs: {}\nmodels:\n  a: {source: models/a/m.keras, outputs: [p]}\n")
    assert {n: sorted(w) for n, w in settings.write_all(path, "build").items()} == {"a": ["freeze", "optimize", "verify"]}
    # and the kfreeze package's hash, which every per-model stage depends on (not on the folder)
    assert sorted(p.name for p in (tmp_path / "build" / "settings").iterdir()) == ["a", "kfreeze.json"]
    with pytest.raises(KfreezeError, match="reserved"):
        settings.write_all(write(tmp_path, "graphs: {}\nmodels:\n  settings: {source: models/settings/m}\n"),
                           "build")


def test_code_digest_follows_the_package_files_not_caches(tmp_path):
    """build/settings/kfreeze.json: what every per-model stage depends on instead of the kfreeze folder."""
    pkg = tmp_path / "kfreeze"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    first = settings.code_digest(pkg)
    assert first["files"] == 2
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    (pkg / ".a.py.tmp").write_text("partial")
    assert settings.code_digest(pkg) == first  # what .dvcignore skips
    target = tmp_path / "build" / "settings" / "kfreeze.json"
    assert settings.write_code_digest(target, pkg) and not settings.write_code_digest(target, pkg)
    (pkg / "sub" / "b.py").write_text("y = 3\n")
    assert settings.code_digest(pkg) != first and settings.write_code_digest(target, pkg)


def test_a_stage_reads_its_settings_file_and_nothing_else(tmp_path):
    """What dvc.lock records (the settings file's hash) is what the stage built with: an edit of
    params.yaml reaches a stage only through resolve."""
    path = write(tmp_path, "graphs: {}\nmodels:\n  m:\n    source: models/m/a.keras\n    input_shape: [1, 8, 8, 1]\n")
    (tmp_path / "models" / "m").mkdir(parents=True)
    settings.write_settings("m", path, tmp_path / "b", tmp_path / "models")
    write(tmp_path, "graphs: {}\nmodels:\n  m:\n    source: models/m/a.keras\n    input_shape: [1, 16, 16, 1]\n")
    spec, vspec = settings.read(tmp_path / "b", "m", "optimize")
    assert spec.input_shape == [1, 8, 8, 1] and spec.precision == "float32"
    assert spec.where("input_shape") == "params.yaml: models.m.input_shape"
    with pytest.raises(RuntimeError, match="stage optimize read 'source'"):
        spec.source
    with pytest.raises(RuntimeError, match="stage optimize read 'atol'"):
        vspec.atol
    spec, vspec = settings.read(tmp_path / "b", "m", "verify")
    assert vspec.input_range == (0.0, 1.0) and vspec.atol == 1.0e-4 and spec.source == "models/m/a.keras"
    with pytest.raises(KfreezeError, match=r"b/settings/m/freeze.json: no settings for this stage; run 'kfreeze "
                                           r"resolve m' first"):
        settings.read(tmp_path / "b", "m", "freeze") if (tmp_path / "b/settings/m/freeze.json").unlink() is None \
            else None


def test_settings_files_are_canonical_and_per_stage(tmp_path):
    path = write(tmp_path, "graphs: {}\nmodels:\n  m:\n    source: models/m/a.keras\n    outputs: [p]\n")
    resolved = settings.stage_settings("m", path)
    assert resolved["freeze"] == {"model": {"trust_code": False, "inputs": [], "outputs": ["p"]}, "verify": {}}
    assert "outputs" not in resolved["convert"]["model"] and resolved["verify"]["verify"]["atol"] == 1.0e-4
    models = tmp_path / "models"
    (models / "m").mkdir(parents=True)
    (models / "m" / "a.keras").write_bytes(b"weights")
    assert settings.write_settings("m", path, tmp_path / "b", models) == list(resolved)
    assert settings.write_settings("m", path, tmp_path / "b", models) == []  # unchanged bytes: nothing rewritten
    # 'dvc add models/m/a.keras' adds a.keras.dvc and .gitignore: no stage's settings change
    (models / "m" / "a.keras.dvc").write_text("outs: ...")
    (models / "m" / ".gitignore").write_text("/a.keras\n")
    assert settings.write_settings("m", path, tmp_path / "b", models) == []
    # new weights: exactly the stages that read the model's files
    (models / "m" / "a.keras").write_bytes(b"retrained")
    assert settings.write_settings("m", path, tmp_path / "b", models) == ["convert", "verify"]


def test_every_key_has_a_reader_and_the_specs_have_every_key():
    for section, keys in params.KEYS.items():
        for name, key in keys.items():
            assert key.stages, f"{section}.{name} is read by no stage"
            assert key.default is None or params._is_type(key.default, key.types), f"{section}.{name}"
    fields = {f.name for f in dataclasses.fields(params.ModelSpec)}
    assert fields == {"name", "section", "origin", *params.KEYS[params.KERAS], *params.KEYS[params.TF1]}
    assert {f.name for f in dataclasses.fields(params.VerifySpec)} == set(params.KEYS[params.VERIFY])


def test_the_example_params_yaml_is_minimal_and_lists_every_default():
    """Entries hold only what differs from the defaults; the comments show every key with its default."""
    import yaml
    path = params_root() / "params.yaml"
    data = params.load(path)
    for section in params.MODEL_SECTIONS:
        for name, entry in data[section].items():
            keys = params.KEYS[section]
            assert [k for k in entry if not keys[k].required and entry[k] == keys[k].default] == [], name
    assert not data.get("verify")
    text = path.read_text()
    for section, keys in params.KEYS.items():
        for key, spec in keys.items():
            shown = [line for line in text.splitlines() if line.startswith(f"#   {key}: ")]
            assert shown, key
            if not spec.required:
                values = [yaml.safe_load(line.split(": ", 1)[1].split("  #")[0]) for line in shown]
                assert all(v == spec.default or v == spec.convert(spec.default) for v in values), (key, values)


def params_root():
    from pathlib import Path
    return Path(__file__).resolve().parents[1]


VERIFY_BASE = "graphs: {}\nmodels:\n  m: {source: a}\nverify: "


@pytest.mark.parametrize("section, key", [
    ("{samples: true}", "samples"), ("{samples: 16.0}", "samples"), ("{samples: 0}", "samples"),
    ("{samples: 100001}", "samples"), ("{seed: -1}", "seed"), ("{seed: false}", "seed"), ("{seed: 1.5}", "seed"),
    ("{atol: .nan}", "atol"), ("{atol_float16: .nan}", "atol_float16"), ("{rtol: .inf}", "rtol"),
    ("{atol: 0}", "atol"), ("{rtol: -1.0e-5}", "rtol"), ("{rtol_float16: true}", "rtol_float16"),
    ("{atol: '1e-4'}", "atol"), ("{input_range: [1, 0]}", "input_range"), ("{input_range: [0]}", "input_range"),
    ("{input_range: [0, .inf]}", "input_range"), ("{data: ../x.npz}", "data"), ("{data: /etc/x.npz}", "data"),
    ("{data: 3}", "data"),
])
def test_every_verify_key_is_checked_exactly(tmp_path, section, key):
    with pytest.raises(KfreezeError, match=rf"verify\.{key}:"):
        params.verify_spec(write(tmp_path, VERIFY_BASE + section + "\n"))


def test_verify_new_keys_are_read(tmp_path):
    spec = params.verify_spec(write(tmp_path, VERIFY_BASE + "{rtol: 1.0e-3, input_range: [0, 255], data: s.npz}\n"))
    assert (spec.rtol, spec.input_range, spec.data) == (1e-3, (0.0, 255.0), "s.npz")
    assert spec.rtol_for("float16") == 5e-3 and spec.rtol_for("float32") == 1e-3


def test_targets_are_checked_with_a_suggestion_and_kept_in_canonical_order(tmp_path):
    base = "graphs: {}\nmodels:\n  m:\n    source: models/m/a.keras\n    targets: "
    with pytest.raises(KfreezeError, match=r"models.m.targets: unknown target 'onxx' \(did you mean 'onnx'\?\)"):
        params.model_spec("m", write(tmp_path, base + "[tf, onxx]\n"))
    with pytest.raises(KfreezeError, match="models.m.targets: must be a list of targets"):
        params.model_spec("m", write(tmp_path, base + "onnx\n"))
    assert params.model_spec("m", write(tmp_path, base + "[tflite, onnx, onnx]\n")).targets == ["tf", "onnx", "tflite"]
    assert params.model_spec("m", write(tmp_path, "graphs: {}\nmodels:\n  m: {source: models/m/a}\n")).targets == ["tf"]


@pytest.mark.parametrize("section, entry, sfx", [
    ("models", "source: models/m/a.keras", ""),
    ("graphs", "graph: models/m/g.pbtxt\n    checkpoint: models/m/ckpt", "_tf1")])
def test_adding_a_target_changes_only_its_own_stage_and_verify_settings(tmp_path, section, entry, sfx):
    """What keeps 'adding tflite reruns only tflite and verify': the onnx stage's file holds only onnx."""
    other = "graphs" if section == "models" else "models"
    text = f"{other}: {{}}\n{section}:\n  m:\n    {entry}\n    targets: "
    before = settings.stage_settings("m", write(tmp_path, text + "[tf, onnx]\n"))
    after = settings.stage_settings("m", write(tmp_path, text + "[tf, onnx, tflite]\n"))
    assert {stage for stage in after if before[stage] != after[stage]} == {f"tflite{sfx}", f"verify{sfx}"}
    assert after[f"onnx{sfx}"]["model"]["targets"] == ["onnx"] and before[f"tflite{sfx}"]["model"]["targets"] == []
    assert after[f"verify{sfx}"]["model"]["targets"] == ["tf", "onnx", "tflite"]
    (tmp_path / "models" / "m").mkdir(parents=True, exist_ok=True)
    settings.write_settings("m", tmp_path / "params.yaml", tmp_path / "b", tmp_path / "models")
    assert settings.read(tmp_path / "b", "m", "tflite")[0].targets == ["tflite"]


@pytest.mark.parametrize("section, source", [("models", "source: models/m/m.keras"),
                                             ("graphs", "graph: models/m/g.pb\n    checkpoint: models/m/ckpt")])
def test_float16_with_opencv_is_refused_before_any_stage(tmp_path, section, source):
    """OpenCV 4.6, 4.14 and 5.0 cannot load float16 weights: said at resolve, with what to use instead."""
    other = "graphs" if section == "models" else "models"
    path = write(tmp_path, f"{other}: {{}}\n{section}:\n  m:\n    {source}\n    opencv: true\n    precision: float16\n")
    with pytest.raises(KfreezeError) as e:
        params.model_spec("m", path)
    assert e.value.where.endswith(f"{section}.m.precision")
    assert "float16" in e.value.problem and "OpenCV" in e.value.problem and "float32" in e.value.fix


def test_a_model_entry_overrides_the_projects_verify_keys(tmp_path):
    """A text model and an image model in one project: each its own input range and data file."""
    path = write(tmp_path, "verify: {samples: 8, input_range: [0, 1]}\ngraphs: {}\nmodels:\n"
                 "  text:\n    source: models/text/t.keras\n    verify: {input_range: [0, 255], data: s.npz}\n"
                 "  image:\n    source: models/image/i.keras\n")
    text, image = params.verify_spec(path, "text"), params.verify_spec(path, "image")
    assert (text.samples, text.input_range, text.data) == (8, (0.0, 255.0), "s.npz")
    assert (image.samples, image.input_range, image.data) == (8, (0.0, 1.0), None)
    assert settings.stage_settings("text", path)["verify"]["verify"]["input_range"] == [0.0, 255.0]
    assert settings.stage_settings("image", path)["verify"]["verify"]["input_range"] == [0.0, 1.0]
    bad = write(tmp_path, "graphs: {}\nmodels:\n  m:\n    source: models/m/m.keras\n    verify: {samles: 3}\n")
    with pytest.raises(KfreezeError, match=r"models.m.verify: unknown key 'samles' \(did you mean 'samples'\?\)"):
        params.model_spec("m", bad)


def test_convert_sees_input_shape_only_with_opencv(tmp_path):
    """convert unrolls recurrent layers over input_shape's time axis for OpenCV only: without opencv a
    shape edit must not rerun it (its settings hold no shape)."""
    entry = "graphs: {}\nmodels:\n  m:\n    source: models/m/a.keras\n    input_shape: [1, 12, 8]\n"
    plain = settings.stage_settings("m", write(tmp_path, entry))
    assert plain["convert"]["model"]["input_shape"] is None and plain["optimize"]["model"]["input_shape"] == [1, 12, 8]
    opencv = settings.stage_settings("m", write(tmp_path, entry + "    opencv: true\n"))
    assert opencv["convert"]["model"]["input_shape"] == [1, 12, 8] and opencv["convert"]["model"]["opencv"] is True
