"""Recurrent legacy models: Keras 1 configs and per-gate weights, Keras 2 RNN .h5 files, architecture files."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import keras1_rnn as k1
from legacy_helpers import Saved, parity, randomize
from kfreeze import legacy
from kfreeze.errors import KfreezeError
from kfreeze.tfenv import tf  # noqa: F401

import keras  # noqa: E402
import tf_keras  # noqa: E402

L = tf_keras.layers
RECURRENT_K1 = {"init": "glorot_uniform", "inner_init": "orthogonal", "activation": "tanh",
                "inner_activation": "hard_sigmoid", "W_regularizer": None, "U_regularizer": None,
                "b_regularizer": None, "dropout_W": 0.0, "dropout_U": 0.0, "go_backwards": False, "stateful": False,
                "unroll": False, "consume_less": "cpu", "input_length": None, "trainable": True}
SIMPLE_K1 = {k: v for k, v in RECURRENT_K1.items() if k != "inner_activation"}  # Keras 1 SimpleRNN has none
DENSE_K1 = {"init": "glorot_uniform", "activation": "linear", "W_regularizer": None, "b_regularizer": None,
            "activity_regularizer": None, "W_constraint": None, "b_constraint": None, "bias": True, "trainable": True}


def keras1_sequential(seed=0):
    """Embedding(mask_zero) -> LSTM(sequences, per-gate 'cpu') -> GRU(backwards, 'mem') -> Dense, as Keras 1.2.2."""
    rng = np.random.default_rng(seed)
    config = {"class_name": "Sequential", "keras_version": "1.2.2", "config": [
        {"class_name": "Embedding", "config": {
            "name": "embedding_1", "input_dim": 12, "output_dim": 4, "init": "uniform", "input_length": 7,
            "mask_zero": True, "W_regularizer": None, "activity_regularizer": None, "W_constraint": None,
            "dropout": 0.0, "trainable": True, "batch_input_shape": [None, 7], "input_dtype": "int32"}},
        {"class_name": "LSTM", "config": {**RECURRENT_K1, "name": "lstm_1", "output_dim": 5, "forget_bias_init": "one",
                                          "return_sequences": True, "input_dim": 4}},
        {"class_name": "GRU", "config": {**RECURRENT_K1, "name": "gru_1", "output_dim": 4, "return_sequences": False,
                                         "go_backwards": True, "consume_less": "mem", "input_dim": 5}},
        {"class_name": "Dense", "config": {**DENSE_K1, "name": "dense_1", "output_dim": 3, "input_dim": 4}},
    ]}
    w = {"emb": rng.normal(0, 1, (12, 4)).astype(np.float32), "lstm": k1.rnn_weights(rng, "LSTM", 4, 5),
         "gru": k1.rnn_weights(rng, "GRU", 5, 4),
         "W": rng.normal(0, 0.8, (4, 3)).astype(np.float32), "b": rng.normal(0, 0.5, 3).astype(np.float32)}
    stored = {"embedding_1": {"embedding_1_W:0": w["emb"]}, "lstm_1": k1.stored("lstm_1", "LSTM", w["lstm"]),
              "gru_1": k1.stored("gru_1", "GRU", w["gru"]), "dense_1": {"dense_1_W:0": w["W"], "dense_1_b:0": w["b"]}}

    def forward(tokens):
        mask = tokens != 0
        x = w["emb"][tokens].astype(np.float64)
        x = k1.lstm(x, w["lstm"], 5, return_sequences=True, mask=mask)
        x = k1.gru(x, w["gru"], 4, go_backwards=True, mask=mask)
        return x @ w["W"] + w["b"]
    return config, stored, forward


def keras1_functional(seed=1):
    """Input -> Bidirectional(LSTM, fused 'gpu' weights) -> TimeDistributed(Dense) -> SimpleRNN, a Keras 1 Model."""
    rng = np.random.default_rng(seed)

    def node(name, cls, cfg, inbound):
        return {"class_name": cls, "name": name, "config": {"name": name, **cfg},
                "inbound_nodes": [[[inbound, 0, 0]]] if inbound else []}
    lstm_cfg = {**RECURRENT_K1, "name": "lstm_1", "output_dim": 4, "forget_bias_init": "one",
                "return_sequences": True, "consume_less": "gpu", "input_dim": 3}
    config = {"class_name": "Model", "keras_version": "1.2.2", "config": {
        "name": "model_1", "input_layers": [["seq", 0, 0]], "output_layers": [["simplernn_1", 0, 0]], "layers": [
            node("seq", "InputLayer", {"batch_input_shape": [None, 6, 3], "input_dtype": "float32",
                                       "sparse": False}, None),
            node("bi", "Bidirectional", {"layer": {"class_name": "LSTM", "config": lstm_cfg}, "merge_mode": "concat",
                                         "trainable": True}, "seq"),
            node("td", "TimeDistributed", {"layer": {"class_name": "Dense", "config": {
                **DENSE_K1, "name": "dense_1", "output_dim": 5, "activation": "relu", "input_dim": None}},
                "trainable": True}, "bi"),
            node("simplernn_1", "SimpleRNN", {**SIMPLE_K1, "output_dim": 3, "return_sequences": False,
                                              "input_dim": 5}, "td"),
        ]}}
    w = {"fw": k1.rnn_weights(rng, "LSTM", 3, 4), "bw": k1.rnn_weights(rng, "LSTM", 3, 4),
         "W": rng.normal(0, 0.6, (8, 5)).astype(np.float32), "b": rng.normal(0, 0.3, 5).astype(np.float32),
         "rnn": k1.rnn_weights(rng, "SimpleRNN", 5, 3)}
    stored = {"bi": {**k1.stored("forward_lstm_1", "LSTM", w["fw"], fused=True),
                     **k1.stored("backward_lstm_1", "LSTM", w["bw"], fused=True)},
              "td": {"dense_1_W:0": w["W"], "dense_1_b:0": w["b"]},
              "simplernn_1": k1.stored("simplernn_1", "SimpleRNN", w["rnn"])}

    def forward(x):
        x = x.astype(np.float64)
        fw = k1.lstm(x, w["fw"], 4, return_sequences=True)
        bw = k1.lstm(x, w["bw"], 4, return_sequences=True, go_backwards=True)[:, ::-1]  # Keras 1 re-reverses
        y = np.maximum(np.concatenate([fw, bw], -1) @ w["W"] + w["b"], 0)
        return k1.simple_rnn(y, w["rnn"], 3)
    return config, stored, forward


def tokens(n=5, seed=2):
    t = np.random.default_rng(seed).integers(1, 12, (n, 7)).astype(np.int32)
    t[0, 4:] = 0  # padded sequences: the mask must skip these steps
    t[1, :2] = 0
    return t


def test_keras1_sequential_embedding_lstm_gru(tmp_path):
    config, stored, forward = keras1_sequential()
    arch, path = tmp_path / "k1.json", tmp_path / "k1.h5"
    k1.write_keras1(path, config, stored, arch=arch)
    model = legacy.load_source(path, arch)
    x = tokens()
    expected = forward(x)
    assert np.ptp(expected) > 0.5
    assert k1.relative_error(model(x), expected) <= 1e-5
    assert model.inputs[0].dtype == "int32"


def test_keras1_functional_bidirectional_timedistributed_simplernn(tmp_path):
    config, stored, forward = keras1_functional()
    path = tmp_path / "k1_full.h5"
    k1.write_keras1(path, config, stored)
    model = legacy.load_source(path)
    x = np.random.default_rng(3).normal(size=(4, 6, 3)).astype(np.float32)
    expected = forward(x)
    assert np.ptp(expected) > 0.5
    assert k1.relative_error(model(x), expected) <= 1e-5


def test_keras1_per_gate_weights_are_matched_by_name(tmp_path):
    """A file listing the gate datasets in another order loads the same: gates are found by name."""
    config, stored, forward = keras1_sequential()
    shuffled = {**stored, "lstm_1": dict(reversed(list(stored["lstm_1"].items())))}
    arch, path = tmp_path / "k1.json", tmp_path / "k1.h5"
    k1.write_keras1(path, config, shuffled, arch=arch, backend="theano")
    x = tokens()
    assert k1.relative_error(legacy.load_source(path, arch, theano_kernels=False)(x), forward(x)) <= 1e-5


def test_keras1_hard_sigmoid_keeps_its_slope(tmp_path):
    """Keras 3's hard_sigmoid has slope 1/6, Keras 1/2's 0.2: without the weight scaling this fails."""
    config, stored, forward = keras1_sequential()
    arch, path = tmp_path / "k1.json", tmp_path / "k1.h5"
    k1.write_keras1(path, config, stored, arch=arch)
    model = legacy.load_source(path, arch)
    assert model.get_layer("lstm_1").cell.recurrent_activation.__name__ == "hard_sigmoid"
    raw = np.concatenate([stored["lstm_1"]["lstm_1_W_i:0"], stored["lstm_1"]["lstm_1_W_f:0"]], -1)
    np.testing.assert_allclose(model.get_layer("lstm_1").get_weights()[0][:, :10], raw * 1.2, rtol=1e-6)


# --- Keras 2 .h5 files ---------------------------------------------------------------------------

def _keras22(path):
    """Make a tf_keras file look like Keras 2.2 wrote it: version 2.2.4, 'implementation', no 'time_major'."""
    with h5py.File(path, "a") as f:
        f.attrs["keras_version"] = b"2.2.4"
        f["model_weights"].attrs["keras_version"] = b"2.2.4"
        config = json.loads(f.attrs["model_config"])
        for layer in _all_layers(config):
            cfg = layer["config"]
            if layer["class_name"] in ("LSTM", "GRU", "SimpleRNN"):
                cfg.pop("time_major", None)
                cfg["implementation"] = 1
        f.attrs["model_config"] = json.dumps(config).encode()


def _all_layers(config):
    for layer in config["config"]["layers"]:
        yield layer
        if "layer" in layer["config"]:
            yield layer["config"]["layer"]


def _rnn_model(body, shape=(6, 3), name="rnn"):
    inp = tf_keras.Input(shape, name="seq")
    return randomize(tf_keras.Model(inp, body(inp), name=name))


KERAS2 = {
    "lstm_hard_sigmoid": lambda x: L.Dense(2, name="out")(L.LSTM(5, recurrent_activation="hard_sigmoid")(x)),
    "bidirectional_lstm": lambda x: L.Bidirectional(L.LSTM(4, return_sequences=True, recurrent_activation="hard_sigmoid"),
                                                    merge_mode="sum")(x),
    "gru_reset_after": lambda x: L.GRU(4, reset_after=True, return_sequences=True)(x),
    "gru_classic": lambda x: L.GRU(4, reset_after=False, recurrent_activation="hard_sigmoid", go_backwards=True)(x),
    "simple_rnn_time_distributed": lambda x: L.SimpleRNN(3)(L.TimeDistributed(L.Dense(4, activation="tanh"))(x)),
}


@pytest.mark.parametrize("case", KERAS2)
def test_keras22_rnn_h5(tmp_path, case):
    m = _rnn_model(KERAS2[case], name=case)
    saved = Saved(m, tmp_path)
    _keras22(saved.full)
    x = np.random.default_rng(0).normal(size=(3, 6, 3)).astype(np.float32)
    expected = m(x).numpy()
    assert np.ptp(expected) > 0.3
    assert k1.relative_error(legacy.load_source(saved.full)(x), expected) <= 1e-5
    assert parity(saved.full, None, [x]) <= 1e-5  # verify's reference (tf_keras reading the file) agrees


def test_keras21_gru_without_reset_after_key(tmp_path):
    """Keras < 2.1.3 wrote no reset_after and computed reset_after=False; tf_keras' default is True."""
    m = _rnn_model(lambda x: L.GRU(4, reset_after=False, recurrent_activation="hard_sigmoid")(x), name="gru21")
    saved = Saved(m, tmp_path)
    _keras22(saved.full)
    with h5py.File(saved.full, "a") as f:
        config = json.loads(f.attrs["model_config"])
        config["config"]["layers"][1]["config"].pop("reset_after")
        f.attrs["model_config"] = json.dumps(config).encode()
    x = np.random.default_rng(0).normal(size=(3, 6, 3)).astype(np.float32)
    assert k1.relative_error(legacy.load_source(saved.full)(x), m(x)) <= 1e-5


def test_stateful_gru_with_initial_state_input(tmp_path):
    seq = tf_keras.Input(batch_shape=(2, 5, 3), name="seq")
    state = tf_keras.Input(batch_shape=(2, 4), name="state")
    out = L.GRU(4, stateful=True, return_sequences=True, name="gru")(seq, initial_state=state)
    m = randomize(tf_keras.Model([seq, state], out, name="stateful"))
    saved = Saved(m, tmp_path)
    rng = np.random.default_rng(0)
    x, s = rng.normal(size=(2, 5, 3)).astype(np.float32), rng.normal(size=(2, 4)).astype(np.float32)
    expected = m([x, s]).numpy()
    converted = legacy.load_source(saved.full)
    assert converted.get_layer("gru").stateful
    assert k1.relative_error(converted([x, s]), expected) <= 1e-5


def test_time_major_true_is_refused_and_the_advice_works(tmp_path):
    m = _rnn_model(lambda x: L.LSTM(3, time_major=True, return_sequences=True, name="tm")(x), shape=(2, 4),
                   name="tmajor")
    saved = Saved(m, tmp_path)
    with pytest.raises(KfreezeError, match=r"layer 'tm' \(LSTM\) has time_major=True.*time_major=False and feed") as e:
        legacy.load_source(saved.full)
    assert "\n" not in str(e.value)
    advised = _rnn_model(lambda x: L.LSTM(3, return_sequences=True, name="tm")(x), shape=(5, 4), name="advised")
    advised.get_layer("tm").set_weights(m.get_layer("tm").get_weights())
    x = np.random.default_rng(0).normal(size=(5, 2, 4)).astype(np.float32)  # (time, batch, features)
    batch_first = np.transpose(x, (1, 0, 2))
    got = legacy.load_source(Saved(advised, tmp_path).full)(batch_first)
    assert k1.relative_error(np.transpose(got, (1, 0, 2)), m(x)) <= 1e-5


def test_hard_sigmoid_activation_layer_is_refused_and_the_advice_works(tmp_path):
    bad = _rnn_model(lambda x: L.Activation("hard_sigmoid", name="hs")(L.Dense(3, name="d")(x)), shape=(4,), name="hs")
    with pytest.raises(KfreezeError, match=r"layer 'hs' \(Activation\) uses Keras 2's hard_sigmoid.*right after a Dense"):
        legacy.load_source(Saved(bad, tmp_path).full)
    inp = tf_keras.Input((4,), name="seq")
    good = tf_keras.Model(inp, L.Dense(3, activation="hard_sigmoid", name="d")(inp), name="good")
    good.get_layer("d").set_weights(bad.get_layer("d").get_weights())
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    assert k1.relative_error(legacy.load_source(Saved(good, tmp_path).full)(x), bad(x)) <= 1e-5


# --- architecture files --------------------------------------------------------------------------

def _tuples(value):
    """Lists back to tuples where Keras 2 configs held tuples, so yaml.dump writes !!python/tuple as to_yaml did."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_tuples(v) for v in value]
        return tuple(items) if all(isinstance(v, (int, type(None))) for v in value) and value else items
    return value


def test_keras2_yaml_architecture(tmp_path):
    import yaml

    m = _rnn_model(KERAS2["bidirectional_lstm"], name="yaml_bi")
    saved = Saved(m, tmp_path)
    config = _tuples(json.loads(m.to_json()))
    text = yaml.dump(config)  # what Keras 2.2's model.to_yaml() did
    assert "!!python/tuple" in text
    arch = tmp_path / "model.yaml"
    arch.write_text(text)
    x = np.random.default_rng(0).normal(size=(3, 6, 3)).astype(np.float32)
    assert k1.relative_error(legacy.load_source(saved.weights, arch)(x), m(x)) <= 1e-5
    assert parity(saved.weights, arch, [x]) <= 1e-5


def test_yaml_that_constructs_objects_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "ran"
    arch = tmp_path / "evil.yml"
    arch.write_text(f"class_name: !!python/object/apply:os.system ['touch {marker}']\nconfig: {{}}\n")
    saved = Saved(_rnn_model(lambda x: L.Dense(2)(x), shape=(3,), name="d"), tmp_path)
    with pytest.raises(KfreezeError, match=r"evil.yml: architecture file uses a YAML tag kfreeze does not read"):
        legacy.load_source(saved.weights, arch)
    assert not marker.exists()


def test_yaml_alias_bomb_is_refused(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    arch = tmp_path / "bomb.yaml"
    arch.write_text("\n".join(lines) + "\nclass_name: *a7\nconfig: *a7\n")
    saved = Saved(_rnn_model(lambda x: L.Dense(2)(x), shape=(3,), name="d"), tmp_path)
    with pytest.raises(KfreezeError, match="alias bomb"):
        legacy.load_source(saved.weights, arch)


def test_keras3_json_and_weights(tmp_path):
    inp = keras.Input((6, 3), name="seq")
    m = keras.Model(inp, keras.layers.Dense(2, name="out")(keras.layers.GRU(4, name="gru")(inp)), name="k3")
    rng = np.random.default_rng(0)
    m.set_weights([rng.normal(0, 0.5, w.shape) for w in m.get_weights()])
    arch, weights = tmp_path / "k3.json", tmp_path / "k3.weights.h5"
    arch.write_text(m.to_json())
    m.save_weights(weights)
    x = rng.normal(size=(3, 6, 3)).astype(np.float32)
    assert k1.relative_error(legacy.load_source(weights, arch)(x), m(x)) <= 1e-6
    assert legacy.layout_plan(weights, arch).converted is False


def test_cudnn_lstm_h5_loads_as_lstm(tmp_path):
    """A GPU-trained CuDNNLSTM file: its class and weight layout (bias of 8 units) become a plain LSTM's."""
    from tf_keras.src.layers.rnn.cudnn_lstm import CuDNNLSTM
    from tf_keras.src.saving.legacy import hdf5_format

    m = _rnn_model(lambda x: L.LSTM(4, name="lstm", return_sequences=True)(x), name="cudnn")  # sigmoid gates, as cuDNN
    saved = Saved(m, tmp_path)
    cudnn = CuDNNLSTM(4, name="lstm")
    cudnn.build((None, 6, 3))
    values = hdf5_format._convert_rnn_weights(cudnn, m.get_layer("lstm").get_weights())  # LSTM -> cuDNN layout
    assert values[2].shape == (32,)
    with h5py.File(saved.full, "a") as f:
        config = json.loads(f.attrs["model_config"])
        layer = config["config"]["layers"][1]
        layer["class_name"] = "CuDNNLSTM"
        for key in ("activation", "recurrent_activation", "use_bias", "dropout", "recurrent_dropout", "implementation",
                    "unroll", "time_major"):
            layer["config"].pop(key)
        f.attrs["model_config"] = json.dumps(config).encode()
        g = f["model_weights"]["lstm"]
        names = [n.decode() if isinstance(n, bytes) else n for n in g.attrs["weight_names"]]
        for name, value in zip(names, values):
            del g[name]
            g[name] = value
    x = np.random.default_rng(0).normal(size=(3, 6, 3)).astype(np.float32)
    assert k1.relative_error(legacy.load_source(saved.full)(x), m(x)) <= 1e-5
    assert parity(saved.full, None, [x]) <= 1e-5  # verify's reference reads it too


@pytest.mark.slow
def test_a_stateful_gru_saved_with_batch_1_verifies_sample_by_sample(tmp_path):
    """The legacy reference runs a fixed-batch model a batch at a time, states reset (it was an
    internal error: all 16 samples fed at once to a batch-1 model)."""
    import json as json_lib

    from typer.testing import CliRunner
    from kfreeze.cli import app

    seq = tf_keras.Input(batch_shape=(1, 5, 3), name="seq")
    out = L.Dense(2, name="head")(L.GRU(4, stateful=True, name="gru")(seq))
    m = randomize(tf_keras.Model(seq, out, name="stateful1"))
    m.save(tmp_path / "stateful.h5")
    result = CliRunner().invoke(app, ["run", str(tmp_path / "stateful.h5"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.stderr
    metrics = json_lib.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["passed"] and metrics["samples"] == 16 and metrics["constant_outputs"] == []
