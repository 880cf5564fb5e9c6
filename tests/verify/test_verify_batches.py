"""Verify's batches: sized by activation memory, all run on one imported graph and session."""

import json

import pytest

from kfreeze import pipeline
from kfreeze import verify as verify_lib
from kfreeze.verify import run as run_mod
from tests.conftest import tiny_project


def test_chunk_keeps_activations_within_the_budget():
    mib = 2**20
    assert verify_lib._chunk(100 * mib, 16) == 2  # ResNet50-like: a few samples per run
    assert verify_lib._chunk(10 * verify_lib.ACTIVATION_BUDGET, 16) == 1  # never zero
    assert verify_lib._chunk(1000, 16) == 16  # a tiny model: all at once, as before


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A free-batch tiny model through convert..optimize, in process."""
    return tiny_project(tmp_path_factory.mktemp("batches"), samples=5)


def _verify(root, monkeypatch):
    monkeypatch.chdir(root)
    pipeline.resolve("tiny", "params.yaml", root / "build")
    for stage in ("convert", "export", "freeze", "optimize"):
        if not (root / "build" / "tiny" / "optimized.pb").exists():
            pipeline.from_settings(stage, "tiny", root / "build")
    pipeline.from_settings("verify", "tiny", root / "build", root / "metrics")
    return json.loads((root / "metrics" / "tiny.json").read_text())


@pytest.mark.slow
def test_one_sample_per_run_imports_the_graph_once_and_agrees(built, monkeypatch):
    whole = _verify(built, monkeypatch)
    sessions = []
    real = run_mod.tf.compat.v1.Session
    monkeypatch.setattr(run_mod.tf.compat.v1, "Session", lambda *a, **k: sessions.append(1) or real(*a, **k))
    monkeypatch.setattr(verify_lib, "ACTIVATION_BUDGET", 1)  # one sample per run
    split = _verify(built, monkeypatch)
    assert len(sessions) == 1  # one imported graph and session for the 5 runs, not one per run
    assert split["passed"] and whole["passed"] and split["samples"] == whole["samples"] == 5
    assert split["max_abs_diff"] == pytest.approx(whole["max_abs_diff"], abs=1e-6)
    assert split["opencv_error"] is None and split["opencv_max_abs_diff"] < 1e-4
