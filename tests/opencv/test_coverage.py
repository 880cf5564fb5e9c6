"""Tests for the OpenCV coverage tool (tests/opencv/coverage.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.opencv import coverage
from tests.opencv.coverage import Row

pytest.importorskip("cv2")


def test_summary_counts_passed_refused_and_failed():
    rows = [Row("A", "f", tf_ok=True, opencv_load=True, opencv_match=True, opencv_rel=1e-7),
            Row("B", "f", tf_ok=True, refused=True, reason="no X op"),
            Row("C", "g", tf_ok=True, reason="OpenCV: boom"),
            Row("D", "g", reason="convert: no")]
    text = coverage.document(rows, 1.0)
    assert "**1 of 3 layer classes that freeze in TF (33%)" in text and "1 refused" in text
    assert "| **all** | 4 | 1 | 1 | 1 | 1 |" in text
    assert "| B | f | yes | refused | - | no X op |" in text


def test_runner_reports_a_graph_it_cannot_read(tmp_path: Path):
    graph = tmp_path / "bad.pb"
    graph.write_bytes(b"not a graph")
    results, error = coverage.run_opencv(graph, {"x": np.zeros((1, 3), np.float32)}, ["out"], tmp_path)
    assert results is None and error


@pytest.mark.slow
def test_measure_one_class_each_way(tmp_path, monkeypatch):
    """Dense and an LSTM (unrolled at convert) load and match; a ConvLSTM2D is refused with its reason."""
    from tests.opencv.zoo import MODELS

    monkeypatch.setenv("KFREEZE_DEBUG", "1")
    dense = coverage.measure("Dense", *MODELS["Dense"], tmp_path)
    assert dense.passed and dense.opencv_rel <= coverage.REL_TOL
    lstm = coverage.measure("LSTM", *MODELS["LSTM"], tmp_path)
    assert lstm.passed and lstm.opencv_rel <= coverage.REL_TOL
    conv_lstm = coverage.measure("ConvLSTM2D", *MODELS["ConvLSTM2D"], tmp_path)
    assert conv_lstm.refused and "Unpack" in conv_lstm.reason
