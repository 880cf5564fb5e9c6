"""``.keras`` archives written by tf.keras 2.13-2.15 (issue #22): Keras 3 refuses them, tf_keras reads them.

The archives are made here with tf_keras, whose ``.keras`` is the same format; ``tf215`` then writes the
module names and version tf.keras 2.15 wrote (``keras.src.engine.functional``,
``keras.src.layers.core.tf_op_layer``, ``keras_version: 2.15.0``), so both flavours are covered.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from legacy_helpers import randomize
from kfreeze import keras_io, legacy, sources
from kfreeze.errors import KfreezeError
from kfreeze.tfenv import tf

import keras  # noqa: E402
import tf_keras  # noqa: E402

L = tf_keras.layers


def tf215(src, dst):
    """A tf_keras archive as tf.keras 2.15 wrote it."""
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for name in a.namelist():
            data = a.read(name)
            if name == "config.json":
                data = data.replace(b'"tf_keras.src.', b'"keras.src.')
            if name == "metadata.json":
                data = json.dumps({"keras_version": "2.15.0", "date_saved": "2024-01-01@00:00:00"}).encode()
            b.writestr(name, data)
    return dst


def timeseries_transformer(seed=3):
    """The keras.io timeseries transformer's shape: attention called (x, x), TF ops on KerasTensors
    (TFOpLambda, a slice: SlicingOpLambda, a concat of two tensors) and the channels_first global pooling
    that picks the time axis of a channels_last model."""
    inp = tf_keras.Input((10, 8), name="series")
    x = L.LayerNormalization(epsilon=1e-6)(inp)
    x = L.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
    x = tf.nn.relu6(x * 0.5 + inp)
    x = tf.concat([x[:, :, :4], tf.math.reduce_mean(x, axis=-1, keepdims=True)], axis=-1)
    x = L.Conv1D(6, 3, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling1D(data_format="channels_first")(x)
    return randomize(tf_keras.Model(inp, L.Dense(3)(x), name="ts"), seed)


def relative_error(got, want) -> float:
    return float(np.max(np.abs(np.asarray(got) - want)) / np.max(np.abs(want)))


@pytest.fixture
def archives(tmp_path):
    m = timeseries_transformer()
    m.save(tmp_path / "tfk.keras")
    return m, tmp_path / "tfk.keras", tf215(tmp_path / "tfk.keras", tmp_path / "tf215.keras")


def test_keras2_archives_are_told_from_keras3_ones(archives, tmp_path):
    _, tfk, old = archives
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(tmp_path / "k3.keras")
    assert sources.keras2_archive(tfk) and sources.keras2_archive(old)
    assert not sources.keras2_archive(tmp_path / "k3.keras")
    assert legacy.is_legacy(old)
    named = tmp_path / "net.model"  # by its bytes, whatever its name
    named.write_bytes(old.read_bytes())
    assert sources.keras2_archive(named)


def test_keras2_archive_loads_as_keras3_with_the_same_numbers(archives):
    m, tfk, old = archives
    x = np.random.default_rng(0).normal(size=(5, 10, 8)).astype(np.float32)
    want = m(x).numpy()
    for path in (tfk, old):
        got = keras_io.load_model(path)
        assert isinstance(got, keras.Model)
        assert relative_error(got(x), want) <= 1e-6
        reference = legacy.reference_outputs(path, None, None, False, [x])[0]  # tf_keras, independent
        assert relative_error(reference, want) == 0


@pytest.mark.slow  # every stage
def test_keras215_archive_end_to_end(archives, tmp_path, monkeypatch):
    from test_legacy_pipeline import run_pipeline
    from kfreeze.verify import run_graph

    m, _, old = archives
    folder = tmp_path / "models" / "ts"
    folder.mkdir(parents=True)
    (folder / "ts.keras").write_bytes(old.read_bytes())
    graph, names, metrics = run_pipeline(tmp_path, monkeypatch, "ts", "models/ts/ts.keras")
    assert metrics["reference"] == "legacy" and metrics["max_abs_diff"] <= 1e-5
    x = np.random.default_rng(7).normal(size=(6, 10, 8)).astype(np.float32)
    got = run_graph(graph, {f"{names['inputs'][0]}:0": x}, names["outputs"])
    assert relative_error(got[names["outputs"][0]], m(x).numpy()) <= 1e-5


def _with_op(tmp_path, op, name):
    inp = tf_keras.Input((4,), name="x")
    m = tf_keras.Model(inp, L.Dense(2)(op(inp)), name=name)
    m.save(tmp_path / f"{name}.keras")
    return m, tf215(tmp_path / f"{name}.keras", tmp_path / f"{name}_215.keras")


def test_tf_function_outside_tensor_math_is_refused_unless_trusted(tmp_path):
    m, path = _with_op(tmp_path, lambda t: tf.debugging.check_numerics(t, "checked"), "checked")
    with pytest.raises(KfreezeError, match=r"refused for safety: the model calls tf.debugging.check_numerics.*"
                                           r"--trust-code"):
        keras_io.load_model(path)
    x = np.ones((2, 4), np.float32)
    assert relative_error(keras_io.load_model(path, trust_code=True)(x), m(x).numpy()) <= 1e-6


def test_forged_keras3_tfop_is_refused(tmp_path):
    """The trust is the user's, never the file's: a Keras 3 archive naming tf.io.write_file is refused."""
    from kfreeze import tfop
    inp = keras.Input((4,), name="x")
    m = keras.Model(inp, tfop.TFOp("math.abs", name="op")(inp))
    m.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as a, zipfile.ZipFile(tmp_path / "forged.keras", "w") as b:
        for name in a.namelist():
            b.writestr(name, a.read(name).replace(b'"math.abs"', b'"io.write_file"'))
    assert np.array_equal(keras_io.load_model(tmp_path / "m.keras")(-np.ones((1, 4), np.float32)),
                          np.ones((1, 4), np.float32))
    with pytest.raises(KfreezeError, match="tf.io.write_file"):
        keras_io.load_model(tmp_path / "forged.keras")


def test_lambda_in_keras2_archive_is_refused_for_safety(tmp_path):
    _, path = _with_op(tmp_path, L.Lambda(lambda t: t * 2), "lam")
    with pytest.raises(KfreezeError, match="refused for safety.*Lambda"):
        keras_io.load_model(path)


@pytest.mark.parametrize("layout", [None, "channels_last"])
def test_channels_first_global_pooling_in_channels_last_h5(save, layout):
    """The pooling's data_format picks the pooled axis; it is no layout (issue #22)."""
    inp = tf_keras.Input((10, 8), name="x")
    x = L.Conv1D(4, 3, padding="same")(inp)
    x = L.GlobalAveragePooling1D(data_format="channels_first")(x)
    m = randomize(tf_keras.Model(inp, L.Dense(3)(x), name="gap_cf"))
    saved = save(m)
    converted = legacy.convert_source(saved.full, None, layout)
    assert not converted.plan.converted
    x = np.random.default_rng(1).normal(size=(4, 10, 8)).astype(np.float32)
    assert relative_error(converted.model(x), m(x).numpy()) <= 1e-6


def test_lambda_in_keras2_h5_is_a_safety_refusal_whatever_the_trust(save):
    """Issue #22: the refusal says it is for safety, and that trust_code does not lift it for a legacy file."""
    inp = tf_keras.Input((4,), name="x")
    saved = save(tf_keras.Model(inp, L.Dense(2)(L.Lambda(lambda t: t * 2)(inp)), name="lam_h5"))
    with pytest.raises(KfreezeError) as err:
        legacy.convert_source(saved.full, None)
    line = err.value.line()
    assert "refused for safety" in line and "Lambda" in line and "trust_code" in line and "\n" not in line


def _nested_models():
    """A base network and a head used as layers, as transfer learning writes them (tf.keras 2)."""
    base_in = tf_keras.Input((6,), name="base_in")
    base = tf_keras.Model(base_in, L.Dense(4, activation="relu", name="features")(base_in), name="base")
    head = tf_keras.Sequential([L.Dense(3, name="logits")], name="head")
    inp = tf_keras.Input((6,), name="x")
    outer = tf_keras.Model(inp, head(base(inp) * 2.0), name="outer")
    stacked = tf_keras.Sequential([tf_keras.Input((6,)), base, L.Dense(2, name="out")], name="stacked")
    return randomize(outer, 4), randomize(stacked, 5)


@pytest.mark.parametrize("which", [0, 1])
def test_models_inside_a_keras2_archive(tmp_path, which):
    m = _nested_models()[which]
    for layer in m.layers:  # randomize() sets top-level weights only
        if hasattr(layer, "layers"):
            randomize(layer, 6)
    m.save(tmp_path / "n.keras")
    path = tf215(tmp_path / "n.keras", tmp_path / "n215.keras")
    x = np.random.default_rng(2).normal(size=(4, 6)).astype(np.float32)
    assert relative_error(keras_io.load_model(path)(x), m(x).numpy()) <= 1e-6
    assert relative_error(legacy.reference_outputs(path, None, None, False, [x])[0], m(x).numpy()) == 0


def test_models_inside_a_keras2_h5(save):
    m = _nested_models()[0]
    for layer in m.layers:
        if hasattr(layer, "layers"):
            randomize(layer, 6)
    x = np.random.default_rng(2).normal(size=(4, 6)).astype(np.float32)
    assert relative_error(legacy.convert_source(save(m).full, None).model(x), m(x).numpy()) <= 1e-6


def test_the_custom_classes_of_an_archive_are_found_from_its_config():
    """What convert refuses up front (tf_keras needs a tf_keras class, the Keras 3 rebuild a Keras 3 one)."""
    from kfreeze.legacy import archive_custom_classes
    from tests.corpus.make import FILES
    assert archive_custom_classes(FILES / "tfkeras215_custom_layer" / "model.keras") == ["corpus>PositionEmbedding"]
    assert archive_custom_classes(FILES / "tfkeras215_keras" / "model.keras") == []


def test_a_vocabulary_file_named_in_a_config_is_refused_before_anything_reads_it(tmp_path, monkeypatch):
    """Issue #25: tf_keras builds a StringLookup by opening the path its config names, anywhere on the
    machine. The refusal comes from the config, in the JSON architecture, the .h5 and the archive."""
    vocab = tmp_path / "secret" / "words.txt"
    vocab.parent.mkdir()
    vocab.write_text("alpha\nbeta\n")
    inp = tf_keras.Input((1,), dtype="string", name="words")
    model = tf_keras.Model(inp, L.StringLookup(vocabulary=str(vocab), name="lookup")(inp), name="vocab")
    arch = tmp_path / "arch.json"
    arch.write_text(model.to_json())
    model.save_weights(tmp_path / "w.h5")
    forged = tmp_path / "forged.keras"  # a Keras 2 archive whose config.json names the file
    config = {"class_name": "Functional", "config": json.loads(model.to_json())["config"],
              "keras_version": "2.15.0"}
    with zipfile.ZipFile(forged, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("metadata.json", json.dumps({"keras_version": "2.15.0"}))
        z.writestr("model.weights.h5", b"")
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda f, *a, **k: (opened.append(str(f)), real_open(f, *a, **k))[1])
    for call in (lambda: legacy.convert_source(tmp_path / "w.h5", arch), lambda: legacy.check_archive_ops(forged, True)):
        with pytest.raises(KfreezeError) as err:
            call()
        line = err.value.line()
        assert "refused for safety" in line and "'lookup' (StringLookup)" in line and str(vocab) in line, line
    assert str(vocab) not in opened
