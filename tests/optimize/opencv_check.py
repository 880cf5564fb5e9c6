"""OpenCV dnn (4.x) on a graph, in a fresh memory-limited child (tests/opencv/runner.py), for the
tests of the ``opencv_*`` passes: the numbers TF and OpenCV give for one output."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from kfreeze.verify.run import opencv_layer
from tests.opencv.coverage import REL_TOL, run_opencv
from tests.optimize.helpers import run

cv2 = pytest.importorskip("cv2")


def opencv_output(graph, feeds: dict[str, np.ndarray], output: str = "out") -> np.ndarray:
    """``output`` as OpenCV computes it (verify's conventions: NCHW in and out); AssertionError with
    OpenCV's reason when it cannot load or run the graph."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.pb"
        path.write_bytes(graph.SerializeToString())
        layer = opencv_layer(graph, output)
        results, error = run_opencv(path, feeds, [layer], Path(tmp))
    assert error is None, f"OpenCV: {error}"
    return results[layer]


def rel(ref, got) -> float:
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    assert got.size == ref.size, f"OpenCV gave shape {got.shape}, TF {ref.shape}"
    return float(np.max(np.abs(got.reshape(ref.shape) - ref))) / (float(np.max(np.abs(ref))) or 1.0)


def assert_opencv_matches(graph, feeds: dict[str, np.ndarray], reference=None, output: str = "out") -> None:
    """OpenCV computes ``output`` of ``graph`` as TF does (or as ``reference``), within REL_TOL."""
    ref = run(graph, {f"{k}:0": v for k, v in feeds.items()}, f"{output}:0") if reference is None else reference
    err = rel(ref, opencv_output(graph, feeds, output))
    assert err <= REL_TOL, f"OpenCV differs from TF: rel {err:.2e}"


def opencv_fails(graph, feeds: dict[str, np.ndarray], output: str = "out") -> str:
    """OpenCV's reason for not loading/running ``graph``, or '' when it runs it."""
    try:
        opencv_output(graph, feeds, output)
    except AssertionError as e:
        return str(e)
    return ""
