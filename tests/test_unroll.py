"""Tests for kfreeze/unroll.py: recurrent layers unrolled at convert when opencv is on."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze import unroll
from kfreeze.keras_io import keras

L = keras.layers


def _unrolled_flags(model) -> list:
    flags = []

    def walk(config):
        if isinstance(config, dict):
            if "unroll" in config:
                flags.append(config["unroll"])
            for v in config.values():
                walk(v)
        elif isinstance(config, list):
            for v in config:
                walk(v)
    walk(model.get_config())
    return flags


def _same(a, b, shape):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    np.testing.assert_allclose(np.asarray(b(x)), np.asarray(a(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer", [lambda: L.LSTM(4), lambda: L.GRU(3), lambda: L.Bidirectional(L.SimpleRNN(3))],
                         ids=["LSTM", "GRU", "Bidirectional"])
def test_a_fixed_time_axis_is_unrolled_with_the_same_numbers(layer):
    inp = keras.Input((5, 3), name="x")
    model = keras.Model(inp, layer()(inp))
    out = unroll.unroll(model)
    assert out is not model and _unrolled_flags(out) and all(_unrolled_flags(out))
    _same(model, out, (2, 5, 3))


def test_input_shape_fixes_a_free_time_axis():
    inp = keras.Input((None, 3), name="x")
    model = keras.Model(inp, L.LSTM(4)(inp))
    out = unroll.unroll(model, [1, 6, 3])
    assert all(_unrolled_flags(out)) and tuple(out.inputs[0].shape) == (None, 6, 3)  # the batch stays free
    _same(model, out, (1, 6, 3))
    named = unroll.unroll(model, {"x": [1, 4, 3]})
    assert tuple(named.inputs[0].shape) == (None, 4, 3)


def test_a_free_time_axis_or_no_recurrent_layer_leaves_the_model():
    inp = keras.Input((None, 3), name="x")
    model = keras.Model(inp, L.GRU(4)(inp))
    assert unroll.unroll(model) is model and unroll.unroll(model, [1, None, 3]) is model
    dense = keras.Sequential([keras.Input((4,)), L.Dense(2)])
    assert unroll.unroll(dense, [1, 4]) is dense
