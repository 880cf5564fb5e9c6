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
