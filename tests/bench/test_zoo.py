"""bench/zoo.py: the benchmark's models have trained-looking batch norms and input-dependent logits."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import zoo  # noqa: E402


def test_batch_norms_look_trained_and_logits_depend_on_the_input():
    model = zoo.build("MobileNetV2", 32, seed=0)
    bns = [la for la in model.layers if la.__class__.__name__ == "BatchNormalization"]
    assert bns
    for bn in bns:  # weights=None would leave mean 0, variance 1, gamma 1, beta 0
        assert np.ptp(np.asarray(bn.moving_variance)) > 0 and np.ptp(np.asarray(bn.gamma)) > 0
        assert np.any(np.asarray(bn.moving_mean) != 0) and np.any(np.asarray(bn.beta) != 0)
    x = np.random.default_rng(1).random((4, 32, 32, 3), dtype=np.float32)
    logits = np.asarray(model(x, training=False), np.float64)
    assert logits.shape == (4, 1000)
    assert 1e-2 < np.max(np.abs(logits)) < 1e3  # neither vanished (weights=None: ~1e-17) nor exploded
    assert np.mean(np.std(logits, axis=0)) > 0.05 * np.mean(np.std(logits, axis=1))  # depends on the input


def test_relative_error():
    ref = np.array([[2.0, -4.0]])
    assert zoo.relative_error(ref, ref) == 0.0
    assert zoo.relative_error([[2.0, -3.0]], ref) == 0.25
