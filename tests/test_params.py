import pytest

from kfreeze import params
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
    inputs: []
    outputs: [probs]
    input_shape: [1, 20, 20, 1]
verify: {samples: 4, seed: 3, atol: 1.0e-5}
""")
    spec = params.model_spec("digits", path)
    assert spec.source == "models/digits/model.keras"
    assert spec.inputs == [] and spec.outputs == ["probs"] and spec.input_shape == [1, 20, 20, 1]
    assert params.verify_spec(path) == params.VerifySpec(samples=4, seed=3, atol=1e-5)


def test_unknown_key_suggests_the_right_one(tmp_path):
    path = write(tmp_path, "models:\n  m:\n    source: a.keras\n    ouputs: [x]\n")
    with pytest.raises(KfreezeError, match=r"unknown key 'ouputs' \(did you mean 'outputs'\?\)"):
        params.model_spec("m", path)


def test_wrong_type_is_named(tmp_path):
    path = write(tmp_path, "models:\n  m:\n    source: a.keras\n    outputs: probs\n")
    with pytest.raises(KfreezeError, match=r"models.m.outputs: must be a list"):
        params.model_spec("m", path)


def test_model_name_dvc_cannot_use(tmp_path):
    path = write(tmp_path, "models:\n  My@Model:\n    source: a.keras\n")
    with pytest.raises(KfreezeError, match="a-z, 0-9"):
        params.model_spec("My@Model", path)


def test_unknown_model_lists_the_known_ones(tmp_path):
    path = write(tmp_path, "models:\n  digits:\n    source: a.keras\n")
    with pytest.raises(KfreezeError, match=r"no model 'digit'.*did you mean 'digits'"):
        params.model_spec("digit", path)


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "models:\n  m:\n    source: [a\n")
    with pytest.raises(KfreezeError, match=r"params.yaml:\d+: not valid YAML"):
        params.load(path)


def test_verify_defaults_and_bad_values(tmp_path):
    assert params.verify_spec(write(tmp_path, "models:\n  m: {source: a}\n")) == params.VerifySpec()
    with pytest.raises(KfreezeError, match="samples must be"):
        params.verify_spec(write(tmp_path, "models:\n  m: {source: a}\nverify: {samples: 0}\n"))


def test_dvc_yaml_declares_exactly_what_each_stage_reads():
    """The rerun rules rest on this: a stage must not read undeclared keys, nor declare unread ones."""
    import yaml

    stages = yaml.safe_load((params_root() / "dvc.yaml").read_text())["stages"]
    for stage, keys in params.STAGE_PARAMS.items():
        declared = [p for p in stages[stage]["do"].get("params", []) if p.startswith("models.")]
        assert declared == [f"models.${{key}}.{k}" for k in keys], stage
    verify_keys = [p for p in stages["verify"]["do"]["params"] if p.startswith("verify.")]
    assert verify_keys == [f"verify.{k}" for k in params.VERIFY_KEYS]


def params_root():
    from pathlib import Path
    return Path(__file__).resolve().parents[1]
