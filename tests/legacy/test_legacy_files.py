"""Legacy files: tf_keras full models and JSON + weights, MobileNetV2, Keras 1, Theano kernels, bad pairs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from legacy_helpers import nchw_inputs, parity, randomize
from kfreeze import legacy
from kfreeze.errors import KfreezeError
from kfreeze.tfenv import tf  # noqa: F401

import keras  # noqa: E402
import tf_keras  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DIGITS_TH = ROOT / "models" / "digits_th"
L = tf_keras.layers


@pytest.mark.slow  # a whole MobileNetV2 (3.6 s)
def test_mobilenetv2_h5_that_keras3_rejects(save):
    tf_keras.utils.set_random_seed(0)
    m = tf_keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), alpha=0.35, classes=10)
    rng = np.random.default_rng(3)  # trained-like BN statistics; random kernels in a deep net overflow float32
    for layer in m.layers:
        if isinstance(layer, L.BatchNormalization):
            shape = layer.gamma.shape
            layer.set_weights([rng.uniform(0.5, 1.5, shape), rng.normal(0, 0.1, shape),
                               rng.normal(0, 0.1, shape), rng.uniform(0.5, 1.5, shape)])
    saved = save(m)
    with pytest.raises(Exception, match="groups"):
        keras.models.load_model(saved.full, compile=False)
    assert legacy.is_legacy(saved.full)
    converted = legacy.load_source(saved.full)
    x = nchw_inputs(m, n=2)[0]
    expected = m(x).numpy()
    assert np.ptp(expected) > 0.05  # not a flat softmax that any model would match
    assert float(np.max(np.abs(np.asarray(converted(x)) - expected))) <= 1e-5
    assert [t.name for t in converted.inputs] == m.input_names and converted.output_names == m.output_names


def test_keras2_json_that_keras3_rejects_loads_with_weights(save):
    inp = tf_keras.Input((6,), name="v")
    m = randomize(tf_keras.Model(inp, L.Dense(2, name="out")(L.Dense(4, activation="relu", name="h")(inp)),
                                 name="fn"))
    saved = save(m)
    with pytest.raises(Exception, match="Functional"):
        keras.models.model_from_json(saved.arch.read_text())
    x = np.random.default_rng(0).random((3, 6), dtype=np.float32)
    np.testing.assert_allclose(legacy.load_source(saved.weights, saved.arch)(x), m(x), atol=1e-6)


def test_keras3_files_are_not_routed_here(tmp_path):
    inp = keras.Input((3,))
    path = tmp_path / "k3.h5"
    keras.Model(inp, keras.layers.Dense(2)(inp)).save(path)
    assert not legacy.is_legacy(path) and not legacy.is_legacy(tmp_path / "m.keras")
    assert legacy.is_legacy(path, arch=tmp_path / "model.json")


# --- Theano kernels: the committed digits_th example -------------------------------------------

def _digits(n):
    spec = importlib.util.spec_from_file_location("make_examples", ROOT / "models" / "make_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.render_digits(n, seed=2)


def test_theano_example_needs_the_flip():
    source, arch = DIGITS_TH / "weights.h5", DIGITS_TH / "model.json"
    x = np.transpose(_digits(8)[0], (0, 3, 1, 2))
    assert parity(source, arch, [x], "channels_first", theano=True) <= 1e-5
    assert parity(source, arch, [x], "channels_first", theano=False, reference_theano=True) > 0.1


def test_theano_example_keeps_its_accuracy():
    """Held-out accuracy of the converted model is the one README.md records for the trained twin."""
    recorded = float((DIGITS_TH / "README.md").read_text().split("Held-out accuracy: ")[1].split()[0])
    model = legacy.load_source(DIGITS_TH / "weights.h5", DIGITS_TH / "model.json", "channels_first", True)
    x, y = _digits(2000)  # the same held-out set, channels_last as the converted model takes it
    acc = float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))
    assert abs(acc - recorded) < 2e-3


def test_theano_backend_flips_by_default_and_says_so_once(tmp_path, save, capsys):
    """Keras 2's backend attribute 'theano': flipped by default (as Keras 2's loader did), one line on
    stderr; theano_kernels false turns it off; a model without convolutions has nothing to flip or say."""
    saved = save(randomize(tf_keras.Sequential([tf_keras.Input((5, 5, 2)), L.Conv2D(3, 3), L.Flatten(),
                                                L.Dense(2)], name="th")))
    with h5py.File(saved.full, "a") as f:
        f["model_weights"].attrs["backend"] = "theano"
    x = np.random.default_rng(0).random((2, 5, 5, 2), dtype=np.float32)
    flipped = legacy.load_source(saved.full)(x)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "weights saved by Theano (the file says backend 'theano')" in err[0]
    assert "theano_kernels: false" in err[0]
    assert np.allclose(flipped, legacy.load_source(saved.full, theano_kernels=True)(x))
    assert not np.allclose(flipped, legacy.load_source(saved.full, theano_kernels=False)(x))
    assert capsys.readouterr().err == ""
    dense = save(randomize(tf_keras.Sequential([tf_keras.Input((4,)), L.Dense(2)], name="th_dense")))
    with h5py.File(dense.full, "a") as f:
        f["model_weights"].attrs["backend"] = "theano"
    legacy.load_source(dense.full)
    assert capsys.readouterr().err == ""


# --- Keras 1 ------------------------------------------------------------------------------------

KERAS1 = {"class_name": "Sequential", "keras_version": "1.2.2", "config": [
    {"class_name": "Convolution2D", "config": {
        "name": "conv", "nb_filter": 3, "nb_row": 3, "nb_col": 2, "init": "glorot_uniform", "activation": "relu",
        "border_mode": "valid", "subsample": [1, 1], "dim_ordering": "th", "W_regularizer": None,
        "b_regularizer": None, "activity_regularizer": None, "W_constraint": None, "b_constraint": None,
        "bias": True, "trainable": True, "batch_input_shape": [None, 2, 6, 5], "input_dtype": "float32"}},
    {"class_name": "MaxPooling2D", "config": {"name": "pool", "pool_size": [2, 2], "strides": [2, 2],
                                              "border_mode": "valid", "dim_ordering": "th", "trainable": True}},
    {"class_name": "Dropout", "config": {"name": "drop", "p": 0.5, "trainable": True}},
    {"class_name": "Flatten", "config": {"name": "flat", "trainable": True}},
    {"class_name": "Dense", "config": {"name": "out", "output_dim": 4, "init": "glorot_uniform",
                                       "activation": "linear", "W_regularizer": None, "b_regularizer": None,
                                       "activity_regularizer": None, "W_constraint": None, "b_constraint": None,
                                       "bias": True, "input_dim": None, "trainable": True}},
]}


def write_keras1(tmp_path, config=KERAS1, seed=0):
    """JSON + weights laid out as Keras 1 on TensorFlow wrote them (no keras_version attribute; W/b; th kernels
    (o, i, h, w); weight names ending in ':0', TensorFlow variables' names, so no Theano flip)."""
    rng = np.random.default_rng(seed)
    weights = {"conv": {"conv_W": rng.normal(size=(3, 2, 3, 2)), "conv_b": rng.normal(size=3)},
               "out": {"out_W": rng.normal(size=(3 * 2 * 2, 4)), "out_b": rng.normal(size=4)}}
    arch, path = tmp_path / "k1.json", tmp_path / "k1.h5"
    arch.write_text(json.dumps(config))
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [l["config"]["name"].encode() for l in config["config"]]
        for layer in config["config"]:
            g = f.create_group(layer["config"]["name"])
            values = weights.get(layer["config"]["name"], {})
            g.attrs["weight_names"] = [f"{n}:0".encode() for n in values]
            for n, v in values.items():
                g[f"{n}:0"] = v.astype(np.float32)
    return arch, path, weights


def keras1_forward(x, w):
    """The Keras 1 model by hand in numpy: NCHW correlation, relu, 2x2 max pool, (c, h, w) flatten, dense."""
    kernel, bias = w["conv"]["conv_W"], w["conv"]["conv_b"]
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 2), axis=(2, 3))  # (n, c, 4, 4, 3, 2)
    y = np.maximum(np.einsum("ncijuv,ocuv->noij", windows, kernel) + bias[None, :, None, None], 0)
    y = y.reshape(len(x), 3, 2, 2, 2, 2).max(axis=(3, 5))
    return y.reshape(len(x), -1) @ w["out"]["out_W"] + w["out"]["out_b"]


def test_keras1_config_and_weights_load(tmp_path):
    arch, path, weights = write_keras1(tmp_path)
    converted = legacy.convert_source(path, arch)
    assert converted.plan.converted
    x = np.random.default_rng(1).random((3, 2, 6, 5), dtype=np.float32)
    got = np.asarray(converted.model(legacy.to_channels_last(x)))
    np.testing.assert_allclose(got, keras1_forward(x.astype(np.float64), weights), atol=1e-4)
    assert parity(path, arch, [x]) <= 1e-5


def _keras1_with(layer_index, **changes):
    config = json.loads(json.dumps(KERAS1))
    config["config"][layer_index]["config"].update(changes)
    return config


@pytest.mark.parametrize("config, message", [
    (_keras1_with(0, nb_frames=3), "layer 'conv' \\(Convolution2D\\) has key 'nb_frames'"),
    (_keras1_with(0, border_mode="full"), "layer 'conv' has border_mode='full'"),
    ({**KERAS1, "config": KERAS1["config"][:2] + [{"class_name": "Highway", "config": {"name": "hw"}}]},
     "layer 'hw' \\(Highway\\) has no known Keras 2 equivalent"),
    ({**KERAS1, "config": KERAS1["config"][:1] + [{"class_name": "BatchNormalization", "config": {
        "name": "bn", "mode": 2, "axis": 1, "epsilon": 1e-3}}] + KERAS1["config"][1:]},
     "layer 'bn' \\(BatchNormalization\\) has mode=2"),
])
def test_keras1_what_cannot_load_names_layer_and_key(tmp_path, config, message):
    arch, path, _ = write_keras1(tmp_path, config)
    with pytest.raises(KfreezeError, match=message):
        legacy.load_source(path, arch)


class Scale(L.Layer):
    """A user's own layer, saved in a Keras 2 file; unknown to tf_keras when the file is read."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

    def call(self, x):
        return x * self.w


@pytest.mark.parametrize("full", [True, False])
def test_a_custom_layer_in_a_keras2_file_is_named_in_one_line(tmp_path, full):
    """tf_keras hands back the unknown class's name as a string: the error used to be
    "the architecture cannot be built ('str' object is not callable)" (found by tests/corpus)."""
    inp = tf_keras.Input((4,), name="x")
    m = tf_keras.Model(inp, L.Dense(2, name="out")(Scale(name="scale")(inp)), name="custom")
    if full:
        m.save(tmp_path / "m.h5")
        args = (tmp_path / "m.h5",)
    else:
        (tmp_path / "m.json").write_text(m.to_json())
        m.save_weights(tmp_path / "w.h5")
        args = (tmp_path / "w.h5", tmp_path / "m.json")
    with pytest.raises(KfreezeError) as e:
        legacy.load_source(*args)
    line = e.value.line()
    assert "layer 'scale' is of class 'Scale', which is no built-in Keras layer (a custom layer)" in line
    assert "custom_objects" in line and "\n" not in line


# --- mismatched pairs and bad settings ------------------------------------------------------------

def _pair(tmp_path, arch_model, weights_model):
    arch, weights = tmp_path / "a.json", tmp_path / "w.h5"
    arch.write_text(arch_model.to_json())
    weights_model.save_weights(weights)
    return weights, arch


def _dense_net(units, extra=False, name="net"):
    layers = [tf_keras.Input((5,), name="v"), L.Dense(units, name="hidden")]
    layers += [L.Dense(3, name="extra")] if extra else []
    return tf_keras.Sequential(layers + [L.Dense(2, name="out")], name=name)


@pytest.mark.parametrize("arch_model, weights_model, message", [
    (_dense_net(4), _dense_net(6), r"layer 'hidden' weights have shapes \[\(5, 6\), \(6,\)\].*needs \[\(5, 4\)"),
    (_dense_net(4, extra=True), _dense_net(4), "no weights for layer 'extra'"),
    (_dense_net(4), _dense_net(4, extra=True), "weights for layer 'extra' which the architecture does not have"),
])
def test_mismatched_json_and_weights_name_the_layer(tmp_path, arch_model, weights_model, message):
    weights, arch = _pair(tmp_path, arch_model, weights_model)
    with pytest.raises(KfreezeError, match=message) as e:
        legacy.load_source(weights, arch)
    assert str(weights) in str(e.value)


def test_weights_only_file_needs_arch(tmp_path):
    weights, _ = _pair(tmp_path, _dense_net(4), _dense_net(4))
    with pytest.raises(KfreezeError, match="weights-only.*set 'arch'"):
        legacy.load_source(weights)


def test_layout_setting_must_match_the_layers(save):
    inp = tf_keras.Input((2, 4, 4))
    saved = save(tf_keras.Model(inp, L.Conv2D(2, 1, data_format="channels_first")(inp), name="cf1"))
    with pytest.raises(KfreezeError, match="layout is set to channels_last but the file's layers say channels_first"):
        legacy.load_source(saved.full, layout="channels_last")
    with pytest.raises(KfreezeError, match="layout 'th' is not one of"):
        legacy.load_source(saved.full, layout="th")


def test_a_legacy_hdf5_file_is_known_by_its_bytes_whatever_the_suffix(tmp_path, save):
    """A Keras 2 full-model file named *.model is legacy and converts as its .h5 twin does."""
    saved = save(randomize(tf_keras.Sequential([tf_keras.Input((4,)), L.Dense(2)], name="renamed")))
    renamed = tmp_path / "renamed.model"
    renamed.write_bytes(saved.full.read_bytes())
    assert legacy.is_legacy(renamed)
    x = np.random.default_rng(0).random((3, 4), dtype=np.float32)
    assert np.array_equal(legacy.load_source(renamed)(x), legacy.load_source(saved.full)(x))
