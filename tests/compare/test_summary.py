"""The summary stage: plots/models.csv and plots/parity.json from metrics/*.json, what
`dvc metrics diff` prints with them, and the plots page rendering offline."""

from __future__ import annotations

import json
import math
import re
import shutil

import pytest
import yaml

from kfreeze.compare import summary
from tests.compare.repo_helpers import ROOT, commit, sh

# The verify metrics as of today (no relative error)...
OLD_FORMAT = {"max_abs_diff": 2.2351741790771484e-08, "opencv_max_abs_diff": 2.9802322387695312e-08,
              "ops_frozen": 44, "ops_optimized": 12, "bytes_frozen": 5206, "bytes_optimized": 2281,
              "outputs": {"probs": {"max_abs_diff": 2.2351741790771484e-08, "top1_agree": 1.0}}}
# ...and with per-output rel_diff, rtol and nulls (an OpenCV failure, an unknown key).
NEW_FORMAT = {"max_abs_diff": 0.0, "max_rel_diff": 0.0, "rtol": 1e-5, "opencv_max_abs_diff": None,
              "opencv_error": "OpenCV crashed (SIGSEGV)", "ops_frozen": 30, "ops_optimized": 14,
              "bytes_frozen": None, "something_new": [1, 2],
              "outputs": {"cls": {"max_abs_diff": 0.0, "rel_diff": 0.0}}}


def test_digits():
    assert summary.digits(1e-8) == 8.0
    assert summary.digits(2.2351741790771484e-08) == round(-math.log10(2.2351741790771484e-08), 2) == 7.65
    assert summary.digits(0.5) == 0.3
    assert summary.digits(0.0) == summary.EXACT_DIGITS == 16.0
    assert summary.digits(1e-300) == 16.0  # never above the exact match
    for unusable in (None, "n/a", True, float("nan"), float("inf"), -1.0):
        assert summary.digits(unusable) is None


def test_rows_tolerate_missing_extra_and_null_keys(tmp_path):
    (tmp_path / "alpha.json").write_text(json.dumps(OLD_FORMAT))
    (tmp_path / "beta.json").write_text(json.dumps(NEW_FORMAT))
    (tmp_path / "gamma.json").write_text(json.dumps({"outputs": {"y": {"rel_diff": 1e-3}, "z": {"rel_diff": 1e-6}}}))
    (tmp_path / "delta.json").write_text(json.dumps({"outputs": {"y": {"rel_diff": 1e-3}, "z": {"rel_diff": None}}}))
    rows = {r["model"]: r for r in summary.summary_rows(tmp_path)}
    assert list(rows) == ["alpha", "beta", "delta", "gamma"]
    expected = {"abs_digits": 7.65, "opencv_abs_digits": 7.53, "max_rel_diff": None, "rel_digits": None,
                "ops_optimized": 12}
    assert {k: rows["alpha"][k] for k in expected} == expected
    assert rows["beta"]["abs_digits"] == 16.0 and rows["beta"]["rel_digits"] == 16.0
    assert rows["beta"]["opencv_abs_digits"] is None and rows["beta"]["bytes_frozen"] is None
    assert "something_new" not in rows["beta"]
    assert rows["gamma"]["max_rel_diff"] == 1e-3 and rows["gamma"]["rel_digits"] == 3.0  # largest output
    assert rows["delta"]["max_rel_diff"] is None  # one output without a value: no maximum claimed
    assert rows["gamma"]["ops_optimized"] is None


def test_a_constant_output_is_never_drawn_as_exact(tmp_path):
    """An output that hardly depends on the input agrees trivially: no digits, not 16 (EXACT)."""
    (tmp_path / "flat.json").write_text(json.dumps({**NEW_FORMAT, "constant_outputs": ["cls"]}))
    (tmp_path / "live.json").write_text(json.dumps({**NEW_FORMAT, "constant_outputs": []}))
    rows = {r["model"]: r for r in summary.summary_rows(tmp_path)}
    assert rows["flat"]["abs_digits"] is None and rows["flat"]["rel_digits"] is None
    assert rows["flat"]["max_abs_diff"] == 0.0  # the raw value stays
    assert rows["live"]["abs_digits"] == summary.EXACT_DIGITS


def test_csv_and_parity_json_are_deterministic_and_keep_times(tmp_path):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "b.json").write_text(json.dumps({**OLD_FORMAT, "verify_seconds": 1.5}))
    (metrics / "a.json").write_text(json.dumps(NEW_FORMAT))
    summary.write_summary(metrics, tmp_path / "p" / "models.csv", tmp_path / "p" / "parity.json")
    text = (tmp_path / "p" / "models.csv").read_text()
    lines = text.splitlines()
    assert lines[0] == ",".join(summary.COLUMNS) + ",verify_seconds"
    assert lines[1].startswith("a,30,14,,")
    cells = [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]
    shown = ("abs_digits", "rel_digits", "opencv_abs_digits", "verify_seconds")
    assert [cells[0][k] for k in shown] == ["16.0", "16.0", "", ""]  # exact in TF; OpenCV failed; no time
    assert [cells[1][k] for k in shown] == ["7.65", "", "7.53", "1.5"]
    assert {cells[0][c] for cs in summary.TARGET_COLUMNS.values() for c in cs} == {""}  # no targets built
    parity = json.loads((tmp_path / "p" / "parity.json").read_text())
    none = {"onnx_rel_digits": None, "tflite_rel_digits": None}
    assert parity == {"a": {"abs_digits": 16.0, "opencv_abs_digits": None, "rel_digits": 16.0, **none},
                      "b": {"abs_digits": 7.65, "opencv_abs_digits": 7.53, "rel_digits": None, **none}}
    before = (tmp_path / "p" / "parity.json").read_bytes()
    summary.write_summary(metrics, tmp_path / "p" / "models.csv", tmp_path / "p" / "parity.json")
    assert (tmp_path / "p" / "parity.json").read_bytes() == before and (tmp_path / "p" / "models.csv").read_text() == text


def test_target_columns_come_from_the_targets_metrics(tmp_path):
    targets = {"onnx": {"bytes": 5000, "ops": 11, "max_rel_diff": 1e-7, "opencv_max_abs_diff": 2e-6,
                        "outputs": {"probs": {"rel_diff": 1e-7}}},
               "tflite": {"bytes": 5400, "ops": 7, "max_rel_diff": None, "outputs": {"probs": {"rel_diff": 1e-3}}}}
    (tmp_path / "m.json").write_text(json.dumps({**OLD_FORMAT, "targets": targets}))
    row = summary.summary_rows(tmp_path)[0]
    assert {k: row[k] for k in (*summary.TARGET_COLUMNS["onnx"], *summary.TARGET_COLUMNS["tflite"])} == {
        "bytes_onnx": 5000, "ops_onnx": 11, "onnx_max_rel_diff": 1e-7, "onnx_rel_digits": 7.0,
        "opencv_onnx_max_abs_diff": 2e-6, "bytes_tflite": 5400, "ops_tflite": 7,
        "tflite_max_rel_diff": 1e-3, "tflite_rel_digits": 3.0}  # a null maximum: the largest output's


def test_dvc_yaml_summary_stage_and_plots_read_columns_that_exist():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    stage = dvc["stages"]["summary"]
    assert stage["cmd"] == "python -m kfreeze.compare.summary metrics plots/models.csv plots/parity.json"
    assert stage["metrics"] == [{"plots/parity.json": {"cache": False}}]
    fields = [p[name]["x"] for p in dvc["plots"] for name in p]
    assert {"ops_optimized", "bytes_optimized", "abs_digits", "rel_digits", "opencv_abs_digits"} <= set(fields)
    assert set(fields) <= set(summary.COLUMNS)


@pytest.fixture(scope="module")
def metrics_repo(tmp_path_factory):
    """Two commits of one model's metrics (parity 2.2e-08 -> 2.98e-08), the summary run on each,
    and the project's own plots section, in a git + DVC repository."""
    repo = tmp_path_factory.mktemp("metrics_repo")
    sh("git", "init", "-q", "-b", "main", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    sh("dvc", "config", "core.analytics", "false", cwd=repo)
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"metrics": ["metrics/alpha.json", "plots/parity.json"],
                                                   "plots": plots}, sort_keys=False))
    (repo / "metrics").mkdir()
    for diff in (2.2351741790771484e-08, 2.9802322387695312e-08):
        (repo / "metrics" / "alpha.json").write_text(json.dumps({**OLD_FORMAT, "max_abs_diff": diff,
                                                                 "max_rel_diff": diff * 4, "targets": TARGETS}))
        summary.write_summary(repo / "metrics", repo / "plots" / "models.csv", repo / "plots" / "parity.json")
        commit(repo, f"parity {diff}")
    return repo


TARGETS = {"onnx": {"bytes": 5000, "max_rel_diff": 1e-7}, "tflite": {"bytes": 5400, "max_rel_diff": 1e-6}}


def _row(output: str, metric: str) -> list[str]:
    return next(line.split() for line in output.splitlines() if f" {metric} " in f" {line} ")


def test_metrics_diff_shows_parity(metrics_repo):
    """DVC rounds to 5 decimal places: the raw parity prints 0.0 both sides; the digits show the
    change; --precision 12 shows the raw values (what the README recommends)."""
    out = sh("dvc", "metrics", "diff", "HEAD~1", "HEAD", "--all", cwd=metrics_repo)
    assert _row(out, "max_abs_diff")[2:] == ["0.0", "0.0", "0.0"]
    assert _row(out, "alpha.abs_digits")[2:] == ["7.65", "7.53", "-0.12"]
    out = sh("dvc", "metrics", "diff", "HEAD~1", "HEAD", "--precision", "12", "--all", cwd=metrics_repo)
    assert _row(out, "max_abs_diff")[2:4] == ["2.2352e-08", "2.9802e-08"]


@pytest.mark.slow
def test_plots_page_renders_offline(metrics_repo, tmp_path):
    """The offline template inlines vega: no script is fetched, the bundle defines vegaEmbed before
    the plots call it, and every plot's spec, as DVC wrote it into the page, renders to SVG with
    the same libraries, showing each model's value."""
    import vl_convert

    from kfreeze.compare.plots_html import VEGA_LITE_VERSION, write_template

    template = write_template(metrics_repo / ".dvc" / "tmp" / "plots_offline.html")
    sh("dvc", "config", "--local", "plots.html_template", "tmp/plots_offline.html", cwd=metrics_repo)
    sh("dvc", "plots", "show", "-o", tmp_path / "out", cwd=metrics_repo)
    html = (tmp_path / "out" / "index.html").read_text()
    assert len(html) > 500_000 and "vegaEmbed=" in html
    assert not re.search(r"<script[^>]*\bsrc=", html) and "cdn.jsdelivr" not in html
    specs = re.findall(r"var spec = (.*?);\s*vegaEmbed\('#([^']+)'", html, re.S)
    assert [name for _, name in specs] == ["op_counts", "graph_bytes", "parity_tf", "parity_relative",
                                            "parity_opencv", "parity_onnx", "parity_tflite"]
    assert html.index("window.vegaEmbed=") < html.index("var spec = ")
    expected = {"op_counts": "ops_optimized: 12", "graph_bytes": "bytes_optimized: 2281",
                "parity_tf": "abs_digits: 7.53",
                "parity_relative": f"rel_digits: {round(-math.log10(2.9802322387695312e-08 * 4), 2)}",
                "parity_opencv": "opencv_abs_digits: 7.53",
                "parity_onnx": "onnx_rel_digits: 7", "parity_tflite": "tflite_rel_digits: 6"}
    for spec, name in specs:
        svg = vl_convert.vegalite_to_svg(json.loads(spec), vl_version=VEGA_LITE_VERSION)
        assert f"{expected[name]}; model: alpha" in svg, name
    assert template.read_text().count("{plot_divs}") == 1 and "{scripts}" not in template.read_text()


def test_an_optional_targets_columns_appear_only_when_a_model_built_it(tmp_path):
    """openvino, saved_model...: four columns and a parity entry once some model has the target; a project
    that builds none keeps the summary it had (same columns, same bytes)."""
    (tmp_path / "a.json").write_text(json.dumps(OLD_FORMAT))
    without = summary.csv_text(summary.summary_rows(tmp_path))
    assert without.splitlines()[0] == ",".join(summary.COLUMNS)
    assert "openvino" in summary.OPTIONAL_TARGETS and "saved_model" in summary.OPTIONAL_TARGETS
    targets = {"openvino": {"bytes": 8000, "ops": 9, "max_rel_diff": 2e-7, "outputs": {"probs": {"rel_diff": 2e-7}}}}
    (tmp_path / "b.json").write_text(json.dumps({**OLD_FORMAT, "targets": targets}))
    rows = summary.summary_rows(tmp_path)
    lines = summary.csv_text(rows).splitlines()
    assert lines[0] == ",".join([*summary.COLUMNS, "bytes_openvino", "ops_openvino", "openvino_max_rel_diff",
                                 "openvino_rel_digits"])
    cells = [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]
    assert [cells[0]["bytes_openvino"], cells[1]["bytes_openvino"], cells[1]["openvino_rel_digits"]] == [
        "", "8000", "6.7"]
    parity = json.loads(summary.parity_json(rows))
    assert parity["a"]["openvino_rel_digits"] is None and parity["b"]["openvino_rel_digits"] == 6.7
    assert "saved_model_rel_digits" not in parity["b"]
