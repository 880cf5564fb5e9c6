"""The command line: help texts, and one clear line on stderr for bad input."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import build_tiny
from tests.entries import keras_entry, params_text

ROOT = Path(__file__).resolve().parents[1]


def kfreeze(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "kfreeze.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_help_lists_every_stage(tmp_path):
    result = kfreeze("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("convert", "export", "freeze", "optimize", "verify", "nodes"):
        assert command in result.stdout
    sub = kfreeze("freeze", "--help", cwd=tmp_path)
    assert "frozen.pb" in sub.stdout and "--debug" in sub.stdout


@pytest.fixture
def project(tmp_path):
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    build_tiny().save(tmp_path / "models" / "tiny" / "model.keras")
    (tmp_path / "params.yaml").write_text(params_text(
        {"tiny": keras_entry("models/tiny/model.keras"), "gone": keras_entry("models/gone/missing.keras")}, samples=4))
    return tmp_path


def one_error_line(result):
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.slow
def test_missing_source_is_one_line(project):
    assert kfreeze("resolve", "gone", cwd=project).returncode == 0
    line = one_error_line(kfreeze("convert", "gone", cwd=project))
    assert line == "error: models/gone/missing.keras: model file not found; check the path"
    assert not (project / "build" / "gone" / "model").exists()


def test_a_dvc_stage_reads_only_its_settings_file(project):
    """stages/<stage>.py, as dvc.yaml runs it: without the file resolve writes, it says so."""
    result = subprocess.run([sys.executable, str(ROOT / "stages" / "convert.py"), "--", "tiny"], cwd=project,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = one_error_line(result)
    assert line == ("error: build/settings/tiny/convert.json: no settings for this stage; run 'kfreeze resolve "
                    "tiny' first ('dvc repro' runs it)")


@pytest.mark.slow
def test_debug_shows_the_traceback(project):
    assert kfreeze("resolve", "gone", cwd=project).returncode == 0
    result = kfreeze("convert", "gone", "--debug", cwd=project)
    assert result.returncode == 1 and "Traceback" in result.stderr


@pytest.mark.slow
def test_all_stages_then_a_wrong_output_name(project):
    for stage in ("resolve", "convert", "export", "freeze", "optimize", "verify"):
        result = kfreeze(stage, "tiny", cwd=project)
        assert result.returncode == 0, result.stderr
    assert (project / "metrics" / "tiny.json").is_file()
    before = (project / "build" / "tiny" / "frozen.pb").read_bytes()
    params = (project / "params.yaml").read_text().replace("outputs: []", "outputs: [prob]", 1)
    (project / "params.yaml").write_text(params)
    assert kfreeze("resolve", "tiny", cwd=project).returncode == 0
    line = one_error_line(kfreeze("freeze", "tiny", cwd=project))
    assert "output node 'prob' is not in the graph" in line
    assert "closest names: probs" in line
    assert (project / "build" / "tiny" / "frozen.pb").read_bytes() == before  # untouched


@pytest.mark.slow
def test_nodes_lists_inputs_and_outputs(project):
    for stage in ("resolve", "convert", "export"):
        assert kfreeze(stage, "tiny", cwd=project).returncode == 0
    result = kfreeze("nodes", "build/tiny/graph.pbtxt", cwd=project)
    assert result.returncode == 0, result.stderr
    inputs, outputs = result.stdout.split("outputs:")
    assert inputs.splitlines()[1].split()[0] == "image"
    assert outputs.splitlines()[1].split()[0] == "probs"
