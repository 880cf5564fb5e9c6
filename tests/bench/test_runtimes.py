"""bench/runtimes.py: the interleaving and the statistics."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

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
