"""bench/report.py and run.py's row merging: the per-model targets from the measured rows."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import report  # noqa: E402
import run  # noqa: E402


def _row(kfreeze_ratio, opencv_ratios, rss_mb, weight_bytes=100 * report.MIB):
    latency = {str(t): {"runtimes": {"kfreeze": {"ratio_to_keras": kfreeze_ratio, "median_ms": 1.0},
                                     **({"opencv": {"ratio_to_keras": r, "median_ms": 1.0}} if r else {})}}
               for t, r in zip(report.THREADS, opencv_ratios)}
    return {"latency": latency, "weight_bytes": weight_bytes, "rss_export_mb": rss_mb / 2, "rss_verify_mb": rss_mb}


def test_model_targets_met_and_not_met():
    limit = 3 * 100 + report.RSS_SLACK_MB
    good = report.model_targets(_row(0.6, (0.9, 1.0), limit))
    assert {k: v["met"] for k, v in good.items()} == {"kfreeze_vs_keras": True, "opencv_vs_keras": True,
                                                      "rss_vs_limit": True}
    bad = report.model_targets(_row(0.71, (0.9, 1.2), limit + 1))
    assert {k: v["met"] for k, v in bad.items()} == {"kfreeze_vs_keras": False, "opencv_vs_keras": False,
                                                     "rss_vs_limit": False}
    assert bad["opencv_vs_keras"]["value"] == 1.2  # the worse thread count counts


def test_model_targets_without_opencv_are_not_applicable():
    t = report.model_targets(_row(0.5, (None, None), 10))
    assert t["opencv_vs_keras"] == {"value": None, "met": None}


def test_each_phase_keeps_its_own_peak_rss():
    row = {}
    run._merge(row, "keras", {"rss_mb": 900.0, "params": 3})
    run._merge(row, "pipeline", {"rss_verify_mb": 2000.0, "rss_export_mb": 1000.0})
    run._merge(row, "eval", {"rss_mb": 2500.0})
    assert row["keras_rss_mb"] == 900.0 and row["eval_rss_mb"] == 2500.0
    assert report._stage_rss(row) == {"export": 1000.0, "verify": 2000.0}  # stages only


def test_the_tf_default_phase_is_kept_apart_from_the_thread_counts():
    row = {}
    run._merge(row, "latency1", {"threads": 1, "tf_default": False, "runtimes": {"kfreeze": {"median_ms": 2.0}}})
    run._merge(row, "tfdefault1", {"threads": 1, "tf_default": True, "runtimes": {"kfreeze": {"median_ms": 1.0}}})
    assert sorted(row["latency"]) == ["1", report.TF_DEFAULT]
    assert report._lat(row, 1, "kfreeze")["median_ms"] == 2.0  # the per-thread tables and targets: latency1


def test_the_tf_default_phase_runs_without_kfreeze_s_switches(monkeypatch):
    for k in run.PINNED_ENV:
        monkeypatch.setenv(k, "x")
    env = run.child_env({"A": "1"}, run.PINNED_ENV)
    assert not set(run.PINNED_ENV) & set(env) and env["A"] == "1" and str(run.ROOT) in env["PYTHONPATH"]
    assert set(run.PINNED_ENV) <= set(run.child_env())


def _lat(ms, ratio=None):
    return {"median_ms": ms, "p25_ms": ms, "p75_ms": ms, **({"ratio_to_keras": ratio} if ratio else {})}


def test_markdown_has_the_int8_openvino_and_tf_default_rows():
    info = {"versions": {"openvino": "2026.4.1"}, "peak": {"gflops_per_core": 100.0, "flop_per_cycle": 32, "why": "w",
                                                          "family": 1, "model": 2, "simd": ["avx2"], "mhz": 3000.0},
            "cpu": "cpu", "cores": 2, "memory_gb": 8, "gpu": "none", "os": "linux", "python": "3.11",
            "date": "d", "tf_env": {"TF_ENABLE_ONEDNN_OPTS": "0"}}
    pinned = {"threads": 1, "tf_env": {"TF_ENABLE_ONEDNN_OPTS": "0"},
              "runtimes": {"keras": _lat(10.0), "kfreeze": _lat(8.0, 0.8), "tflite_int8": _lat(3.0, 0.3),
                           "openvino": _lat(4.0, 0.4)}}
    default = {"threads": 1, "tf_default": True, "tf_env": {"TF_ENABLE_ONEDNN_OPTS": None},
               "runtimes": {"keras": _lat(9.0), "kfreeze": _lat(6.0, 0.66)}}
    row = {"model": "M", "ops_ours": 10, "ops_grappler": 12, "parity_tflite_int8": 0.012, "parity_openvino": 2e-7,
           "bytes_tflite_int8": 1_500_000, "bytes_openvino": 5_000_000, "time_tflite_int8_s": 4.0,
           "time_openvino_s": 1.5, "latency": {"1": pinned, report.TF_DEFAULT: default}}
    text = report.markdown([row], report.summarize([row], info), info, [], 5)
    assert "| TFLite int8 (kfreeze target) | OpenVINO f32 (kfreeze target) |" in text
    assert "3.0 (3.0–3.0) **×0.30** | 4.0 (4.0–4.0) **×0.40**" in text
    assert "| 1.2e-02 | 2.0e-07 |" in text and "| 1.5 | 5.0 |" in text and "| 4.0 | 1.5 |" in text
    assert "## Latency in a TensorFlow process with TF's defaults (oneDNN on)" in text
    assert "| M | 9.0 (9.0–9.0) | 6.0 (6.0–6.0) **×0.66** | TF_ENABLE_ONEDNN_OPTS unset | 10.0 (10.0–10.0) | 8.0" in text
    assert "with TF_ENABLE_ONEDNN_OPTS=0." in text  # the header's latency environment leaves the default phase out
