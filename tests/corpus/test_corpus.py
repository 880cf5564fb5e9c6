"""The corpus tier: each committed file of tests/corpus/files/ through ``kfreeze run`` as a user types it,
then optimized.pb run here and compared with the outputs the source framework computed when the file
was made (golden.npz; tests/corpus/README.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.corpus.make import FILES, ROOT, ROWS, make

pytestmark = [pytest.mark.slow, pytest.mark.matrix]

RTOL = 1e-4  # max|diff| / max|golden| (a row may say more: float16 compute)


def relative_error(got, golden) -> float:
    golden = np.asarray(golden, np.float64)
    return float(np.max(np.abs(np.asarray(got, np.float64) - golden)) / np.max(np.abs(golden)))


def run_optimized(out, x):
    """optimized.pb in a session of its own, fed and fetched by the names kfreeze recorded."""
    from kfreeze.tfenv import tf
    names = json.loads((out / "names.json").read_text())
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString((out / "optimized.pb").read_bytes())
    assert len(names["inputs"]) == 1 and len(names["outputs"]) == 1, names
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(graph, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            return sess.run(f"{names['outputs'][0]}:0", {f"{names['inputs'][0]}:0": x})


_RUNS: dict = {}  # row -> optimized.pb's outputs for golden x (the negative control reuses a run)


def convert(row, tmp_path, monkeypatch):
    from kfreeze.cli import app

    spec, folder = ROWS[row], FILES / row
    monkeypatch.chdir(ROOT)  # --custom-objects names a module relative to the project root, as a user's would
    args = [a.replace("{dir}", str(folder)) for a in spec.args]
    result = CliRunner().invoke(app, ["run", str(folder / spec.source), *args, "--samples", "4",
                                      "--out", str(tmp_path / "o")])
    if spec.refused:
        return result
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["passed"]
    for line in spec.says:
        assert line in result.output, line
    x = np.load(folder / "golden.npz")["x"]
    _RUNS[row] = run_optimized(tmp_path / "o", np.transpose(x, (0, 2, 3, 1)) if spec.nchw else x)  # NHWC graph
    return _RUNS[row]


@pytest.mark.parametrize("row", [row for row, spec in ROWS.items() if not spec.refused])
def test_corpus_row_converts_verifies_and_matches_the_source(row, tmp_path, monkeypatch):
    got, golden = convert(row, tmp_path, monkeypatch), np.load(FILES / row / "golden.npz")["y"]
    assert got.shape == golden.shape
    assert relative_error(got, golden) <= ROWS[row].rtol


def test_a_one_percent_error_fails_the_comparison(tmp_path, monkeypatch):
    """The check can fail: the converted outputs against a golden output moved by 1% of its largest value."""
    row = "h5_named_model"
    got = _RUNS.get(row)
    if got is None:  # run alone
        got = convert(row, tmp_path, monkeypatch)
    golden = np.load(FILES / row / "golden.npz")["y"]
    off = golden.copy()
    off.flat[0] += 0.01 * np.max(np.abs(golden))
    assert relative_error(got, golden) <= RTOL < relative_error(got, off)


def test_the_files_are_small_and_each_row_has_its_golden_outputs():
    """Written once: the maker leaves an existing row alone (only --force rewrites it)."""
    for row, spec in ROWS.items():
        assert make(row) is False, row
        folder = FILES / row
        assert (folder / spec.source).exists() and (folder / "golden.npz").is_file(), row
        assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 200_000, row


def test_the_segmentation_net_is_refused_for_opencv_in_one_line(tmp_path):
    """Its 4-D softmax is one OpenCV takes along the wrong axis: refused at optimize, naming it, rather
    than failed at verify by a number."""
    from kfreeze.cli import app

    result = CliRunner().invoke(app, ["run", str(FILES / "h5_segmentation" / "model.h5"), "--opencv",
                                      "--input-shape", "[1, 16, 16, 3]", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert "takes a Softmax over a feature map along its width" in line and "onnx" in line


@pytest.mark.parametrize("row", [row for row, spec in ROWS.items() if spec.refused])
def test_a_row_kfreeze_cannot_take_is_refused_up_front_with_what_works(row, tmp_path, monkeypatch):
    result = convert(row, tmp_path, monkeypatch)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert ROWS[row].refused in lines[0], lines[0]
    assert not (tmp_path / "o" / "frozen.pb").exists()
