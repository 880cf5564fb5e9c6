"""bench/runtimes.py and bench/report.py: the interleaving, the statistics, the per-model targets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import report  # noqa: E402
import runtimes  # noqa: E402


def test_interleaved_rotates_the_order_every_round():
    calls = []
    runners = {name: (lambda x, n=name: calls.append((n, x))) for name in ("tflite", "keras", "kfreeze")}
    times = runtimes.interleaved(runners, x="input", runs=3, warmup=1)
    assert {k: len(v) for k, v in times.items()} == {"keras": 3, "kfreeze": 3, "tflite": 3}
    rounds = [[n for n, _ in calls[i:i + 3]] for i in range(3, 12, 3)]  # after the warm-up round
    assert rounds == [["keras", "kfreeze", "tflite"], ["kfreeze", "tflite", "keras"], ["tflite", "keras", "kfreeze"]]
    assert {x for _, x in calls} == {"input"}


def test_stats_ratio_is_the_median_of_per_round_ratios():
    # round 2 is slowed for both (shared load): the paired ratio stays 0.5, the ratio of medians would not
    times = {"keras": [10.0, 100.0, 12.0], "kfreeze": [5.0, 50.0, 9.0]}
    s = runtimes.stats(times)
    assert s["keras"]["median_ms"] == 12.0 and s["keras"]["ratio_to_keras"] == 1.0
    assert s["kfreeze"]["median_ms"] == 9.0
    assert s["kfreeze"]["ratio_to_keras"] == pytest.approx(0.5)


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
