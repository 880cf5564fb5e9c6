"""Helpers for the legacy tests: sources written by tf_keras, and the parity check against the reference."""

from __future__ import annotations

import numpy as np
from kfreeze import legacy
from kfreeze.tfenv import tf  # noqa: F401  (quiet TF import first)

import tf_keras  # noqa: E402


def randomize(model: tf_keras.Model, seed: int = 0) -> tf_keras.Model:
    """Non-trivial weights everywhere (BN variances positive), so a wrong mapping shows in the outputs."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.set_weights([rng.uniform(0.5, 1.5, w.shape) if "variance" in w.name or "gamma" in w.name
                           else rng.normal(0, 0.5, w.shape) for w in layer.weights])
    return model


class Saved:
    """A tf_keras model saved both ways a legacy user has it: full-model .h5, and JSON + weights .h5."""

    def __init__(self, model: tf_keras.Model, tmp_path):
        self.full = tmp_path / f"{model.name}.h5"
        self.arch = tmp_path / f"{model.name}.json"
        self.weights = tmp_path / f"{model.name}_weights.h5"
        model.save(self.full)
        self.arch.write_text(model.to_json())
        model.save_weights(self.weights)


def nchw_inputs(model: tf_keras.Model, n: int = 3, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((n, *t.shape[1:]), dtype=np.float32) for t in model.inputs]


def parity(source, arch, inputs, layout=None, theano=False, reference_theano=None) -> float:
    """Max abs difference of the converted model (channels_last) and the independent reference."""
    converted = legacy.convert_source(source, arch, layout, theano)
    plan = converted.plan
    feeds = [legacy.to_channels_last(x) if cf else x for x, cf in zip(inputs, plan.inputs)]
    got = tf.nest.flatten(converted.model(feeds if len(feeds) > 1 else feeds[0]))
    ref = legacy.reference_outputs(source, arch, layout,
                                   theano if reference_theano is None else reference_theano, inputs)
    ref = [legacy.to_channels_last(r) if cf else r for r, cf in zip(ref, plan.outputs)]
    return max(float(np.max(np.abs(np.asarray(g) - r))) for g, r in zip(got, ref))
