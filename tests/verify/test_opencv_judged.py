"""With opencv: true, verify judges OpenCV: a graph OpenCV cannot run fails the stage; one it runs passes."""

import json

import pytest
from typer.testing import CliRunner

from kfreeze.cli import app
from kfreeze.keras_io import keras
from tests.conftest import build_tiny

pytestmark = pytest.mark.slow  # three kfreeze runs, about 35 s


def _run(tmp_path, model, *flags):
    model.save(tmp_path / "m.keras")
    result = CliRunner().invoke(app, ["run", str(tmp_path / "m.keras"), "--out", str(tmp_path / "out"), *flags])
    return result


def test_opencv_true_fails_when_opencv_cannot_run_the_graph(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4), keras.layers.Dense(2)])
    result = _run(tmp_path, model, "--opencv")
    assert result.exit_code == 1
    assert "OpenCV" in result.stderr and "\n" not in result.stderr.strip()
    assert not (tmp_path / "out" / "metrics.json").exists() or not json.loads(
        (tmp_path / "out" / "metrics.json").read_text())["passed"]


def test_opencv_false_records_the_same_failure_and_passes(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4), keras.layers.Dense(2)])
    result = _run(tmp_path, model)
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["passed"] and metrics["opencv_error"] and metrics["opencv_passed"] is None


def test_opencv_true_passes_when_opencv_matches(tmp_path):
    result = _run(tmp_path, build_tiny(), "--opencv")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["passed"] and metrics["opencv_passed"] and metrics["opencv_error"] is None
    assert metrics["opencv_max_abs_diff"] <= metrics["atol_used"] + metrics["rtol_used"]
