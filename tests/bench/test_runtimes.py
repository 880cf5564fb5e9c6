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


def test_openvino_and_tflite_runners_run_kfreeze_s_targets(tmp_path):
    """The benchmark's OpenVINO and TFLite int8 columns are kfreeze's own targets, run as they are verified
    (OpenVINO at f32), and time what they compute."""
    import numpy as np

    from kfreeze import targets
    from kfreeze.targets import tflite
    from tests.targets import graphs

    graph = graphs.gray_conv()  # one input, batch 1, as the benchmark's models
    out = graph.write(tmp_path / "m")
    targets.write(out, "openvino", targets.build("openvino", out, "here"))
    feeds = graphs.feeds_for(graph, samples=1)
    ref = graphs.run_tf(graph, feeds)["probs"]
    got = runtimes.openvino_runner(targets.model_file(out, "openvino"), 1)(feeds["image"])
    assert got.shape == ref.shape and float(np.max(np.abs(got - ref))) < 1e-5
    calibration = graphs.feeds_for(graph, samples=8, seed=1)
    (tmp_path / "int8.tflite").write_bytes(tflite.build(graph.graph, graph.inputs, graph.outputs, "here", "int8",
                                                        (calibration, True)).data)
    got = runtimes.tflite_runner(tmp_path / "int8.tflite", 1)(feeds["image"])
    assert got.shape == ref.shape and float(np.max(np.abs(got - ref))) < 0.05  # int8: close, not exact


def test_the_latency_order_has_the_target_runtimes():
    assert runtimes.ORDER.index("tflite_int8") > runtimes.ORDER.index("tflite")
    assert "openvino" in runtimes.ORDER and runtimes.ORDER[-1] == "opencv"
