"""Keras 1 recurrent models by hand: fixture files written as Keras 1.2.2 wrote them, and a numpy forward pass.

The forward pass follows Keras 1.2.2's keras/layers/recurrent.py step functions, with its per-gate
weights (W_i, U_i, b_i, ...) as the file stores them, and shares no code with kfreeze: it is the
independent reference the converted model is checked against.
"""

from __future__ import annotations

import json

import h5py
import numpy as np

GATES = {"LSTM": "icfo", "GRU": "zrh"}  # Keras 1.2.2's trainable_weights order (i, c, f, o for LSTM)


def hard_sigmoid(x):
    return np.clip(0.2 * x + 0.5, 0.0, 1.0)  # Keras 1 (Theano and TensorFlow backends) and Keras 2


ACT = {"tanh": np.tanh, "hard_sigmoid": hard_sigmoid, "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
       "linear": lambda x: x, "relu": lambda x: np.maximum(x, 0)}


def rnn_weights(rng, cls: str, n_in: int, units: int, fused: bool = False) -> dict[str, np.ndarray]:
    """Per-gate weights keyed by Keras 1 suffix ('W_i' ...); SimpleRNN has only W, U, b."""
    if cls == "SimpleRNN":
        gates = [""]
    else:
        gates = list(GATES[cls])
    w = {}
    for g in gates:
        sfx = f"_{g}" if g else ""
        w[f"W{sfx}"] = rng.normal(0, 0.6, (n_in, units))
        w[f"U{sfx}"] = rng.normal(0, 0.6, (units, units))
        w[f"b{sfx}"] = rng.normal(0, 0.4, units)
    return {k: v.astype(np.float32) for k, v in w.items()}


def stored(prefix: str, cls: str, w: dict, fused: bool = False) -> dict[str, np.ndarray]:
    """The datasets Keras 1 wrote: per gate ('consume_less' cpu/mem), or fused W, U, b in i, f, c, o / z, r, h
    order ('consume_less': 'gpu'), named '<layer>_<weight>:0' as the TensorFlow backend named variables."""
    if cls == "SimpleRNN" or not fused:
        order = ["W", "U", "b"] if cls == "SimpleRNN" else [f"{k}_{g}" for g in GATES[cls] for k in "WUb"]
        return {f"{prefix}_{k}:0": w[k] for k in order}
    fused_order = "ifco" if cls == "LSTM" else "zrh"
    return {f"{prefix}_{k}:0": np.concatenate([w[f"{k}_{g}"] for g in fused_order], axis=-1) for k in "WUb"}


def _scan(x, mask, go_backwards, step, state):
    """Keras 1 K.rnn: masked steps keep the state and repeat the previous output."""
    steps = range(x.shape[1])[::-1] if go_backwards else range(x.shape[1])
    outs, prev = [], np.zeros_like(state[0])
    for t in steps:
        new = step(x[:, t], state)
        keep = mask[:, t, None] if mask is not None else np.ones((len(x), 1), bool)
        state = [np.where(keep, n, s) for n, s in zip(new, state)]
        prev = np.where(keep, new[0], prev)
        outs.append(prev)
    return np.stack(outs, 1), prev


def lstm(x, w, units, activation="tanh", inner="hard_sigmoid", return_sequences=False, go_backwards=False,
         mask=None):
    act, inn = ACT[activation], ACT[inner]

    def step(xt, state):
        h, c = state
        i = inn(xt @ w["W_i"] + w["b_i"] + h @ w["U_i"])
        f = inn(xt @ w["W_f"] + w["b_f"] + h @ w["U_f"])
        c = f * c + i * act(xt @ w["W_c"] + w["b_c"] + h @ w["U_c"])
        o = inn(xt @ w["W_o"] + w["b_o"] + h @ w["U_o"])
        return [o * act(c), c]

    zeros = np.zeros((len(x), units))
    seq, last = _scan(x, mask, go_backwards, step, [zeros, zeros])
    return seq if return_sequences else last


def gru(x, w, units, activation="tanh", inner="hard_sigmoid", return_sequences=False, go_backwards=False,
        mask=None):
    act, inn = ACT[activation], ACT[inner]

    def step(xt, state):
        h = state[0]
        z = inn(xt @ w["W_z"] + w["b_z"] + h @ w["U_z"])
        r = inn(xt @ w["W_r"] + w["b_r"] + h @ w["U_r"])
        hh = act(xt @ w["W_h"] + w["b_h"] + (r * h) @ w["U_h"])
        return [z * h + (1 - z) * hh]

    seq, last = _scan(x, mask, go_backwards, step, [np.zeros((len(x), units))])
    return seq if return_sequences else last


def simple_rnn(x, w, units, activation="tanh", return_sequences=False, go_backwards=False, mask=None):
    def step(xt, state):
        return [ACT[activation](xt @ w["W"] + w["b"] + state[0] @ w["U"])]

    seq, last = _scan(x, mask, go_backwards, step, [np.zeros((len(x), units))])
    return seq if return_sequences else last


def write_keras1(path, config: dict, weights: dict[str, dict[str, np.ndarray]], arch=None,
                 backend: str | None = "tensorflow") -> None:
    """A Keras 1.2.2 file: with model_config (model.save) or, when ``arch`` is given, weights only
    (save_weights) and the JSON beside it. ``weights``: layer name -> {dataset name: value}, in file order."""
    layers = config["config"] if isinstance(config["config"], list) else config["config"]["layers"]
    names = [l["config"]["name"] for l in layers]
    with h5py.File(path, "w") as f:
        if arch is None:
            f.attrs["keras_version"] = b"1.2.2"
            f.attrs["model_config"] = json.dumps(config).encode()
            group = f.create_group("model_weights")
        else:
            group = f
            arch.write_text(json.dumps(config))
        group.attrs["layer_names"] = [n.encode() for n in names]
        if backend is not None:  # Keras 1 files before 1.2 wrote no backend attribute
            group.attrs["backend"] = backend.encode()
        group.attrs["keras_version"] = b"1.2.2"
        for name in names:
            g = group.create_group(name)
            values = weights.get(name, {})
            g.attrs["weight_names"] = [n.encode() for n in values]
            for n, v in values.items():
                g.create_dataset(n, data=v)


def relative_error(got, ref) -> float:
    ref = np.asarray(ref, np.float64)
    return float(np.max(np.abs(np.asarray(got, np.float64) - ref)) / np.max(np.abs(ref)))
