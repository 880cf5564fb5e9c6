"""Real model kinds that OpenCV users bring, with opencv: true: a U-Net, a GAN generator, a Conv1D audio
classifier, a text classifier with an Embedding (ids fed as floats) and an LSTM + GRU sequence classifier (time
axis fixed by --input-shape, unrolled at convert) load and match in OpenCV (verify judges OpenCV when it is asked
for); the sequence classifier with a free time axis, and the text classifier with a free length, are refused at
optimize with the reason. Trained-looking weights: biases and BatchNorm statistics random."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from kfreeze.cli import app
from kfreeze.keras_io import keras

pytestmark = [pytest.mark.slow, pytest.mark.matrix]  # one kfreeze run each, 15-40 s: make test-matrix

L = keras.layers


def _randomize(model, seed=0):
    """Trained-looking weights: every bias, BatchNorm gamma/beta/mean random (not Keras' zeros and ones),
    variances in [0.5, 2] (tests/conformance/zoo.py's ``randomize``)."""
    from tests.conformance.zoo import randomize

    return randomize(model, seed)


def unet():
    inp = keras.Input((32, 32, 3), name="image")
    c1 = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    p1 = L.MaxPooling2D()(c1)
    c2 = L.BatchNormalization()(L.Conv2D(16, 3, padding="same", activation="relu")(p1))
    p2 = L.MaxPooling2D()(c2)
    b = L.Conv2D(32, 3, padding="same", activation="relu")(p2)
    u2 = L.Conv2DTranspose(16, 2, strides=2, padding="same")(b)
    c3 = L.Conv2D(16, 3, padding="same", activation="relu")(L.Concatenate()([u2, c2]))
    u1 = L.UpSampling2D()(c3)
    c4 = L.Conv2D(8, 3, padding="same", activation="relu")(L.Concatenate()([u1, c1]))
    return keras.Model(inp, L.Conv2D(2, 1, activation="sigmoid", name="mask")(c4), name="unet")


def gan_generator():
    z = keras.Input((16,), name="z")
    x = L.LeakyReLU(0.2)(L.BatchNormalization()(L.Dense(4 * 4 * 16)(z)))
    x = L.Reshape((4, 4, 16))(x)
    x = L.LeakyReLU(0.2)(L.BatchNormalization()(L.Conv2DTranspose(8, 4, strides=2, padding="same")(x)))
    x = L.Conv2DTranspose(3, 4, strides=2, padding="same", activation="tanh", name="fake")(x)
    return keras.Model(z, x, name="generator")


def upsampling_decoder():
    """Dense -> Reshape -> UpSampling2D -> Conv2D: Grappler merges the Reshape into UpSampling's chain."""
    z = keras.Input((8,), name="z")
    x = L.ReLU()(L.Dense(3 * 3 * 8)(z))
    x = L.UpSampling2D()(L.Reshape((3, 3, 8))(x))
    return keras.Model(z, L.Conv2D(3, 3, padding="same", activation="tanh", name="img")(x), name="decoder")


def conv1d_audio():
    inp = keras.Input((400, 1), name="wave")
    x = L.Conv1D(8, 9, strides=2, activation="relu")(inp)
    x = L.BatchNormalization()(x)
    x = L.MaxPooling1D(4)(x)
    x = L.Conv1D(16, 5, activation="relu")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(5, name="logits")(x), name="audio")


def text_classifier():
    inp = keras.Input((20,), dtype="int32", name="tokens")
    x = L.Embedding(2000, 16)(inp)  # over 1024 words: verify finds them on a light graph (no ones' values)
    x = L.Conv1D(16, 3, activation="relu")(x)
    x = L.GlobalMaxPooling1D()(x)
    return keras.Model(inp, L.Dense(3, name="logits")(x), name="text")


def sequence_classifier():
    """A free time axis (any length when trained): input_shape fixes it, and convert unrolls the LSTM."""
    inp = keras.Input((None, 8), name="frames")
    x = L.LSTM(16, return_sequences=True)(inp)
    x = L.GRU(8)(x)
    return keras.Model(inp, L.Dense(3, activation="softmax", name="probs")(x), name="sequences")


def _run(tmp_path, model, shape=None):
    """As an OpenCV user runs it: opencv on and the input's shape fixed (batch 1)."""
    _randomize(model)
    model.save(tmp_path / f"{model.name}.keras")
    shape = shape or [1, *model.inputs[0].shape[1:]]
    return CliRunner().invoke(app, ["run", str(tmp_path / f"{model.name}.keras"), "--out", str(tmp_path / "out"),
                                    "--opencv", "--samples", "4", "--input-shape", json.dumps(shape)])


@pytest.mark.parametrize("build", [
    unet,
    gan_generator,   # opencv_dense_reshape: Reshape(Dense(z)) to an image
    upsampling_decoder,  # opencv_split_reshape, then opencv_dense_reshape and opencv_upsampling
    conv1d_audio,    # opencv_sink_squeeze, opencv_identity_reshape: BatchNorm between two Conv1D
    text_classifier,  # opencv_embedding: the Embedding as a one-hot MatMul, its int32 ids fed as floats
], ids=lambda f: f.__name__)
def test_the_model_loads_and_matches_in_opencv(tmp_path, build):
    keras.utils.set_random_seed(0)
    result = _run(tmp_path, build())
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["opencv_mode"] and metrics["opencv_passed"] and metrics["opencv_error"] is None
    assert metrics["constant_outputs"] == []


def test_a_sequence_model_with_its_time_axis_fixed_is_unrolled_and_matches(tmp_path):
    keras.utils.set_random_seed(0)
    result = _run(tmp_path, sequence_classifier(), [1, 12, 8])
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["opencv_passed"] and metrics["opencv_error"] is None and metrics["constant_outputs"] == []


def test_a_sequence_model_with_a_free_time_axis_is_refused_saying_to_fix_it(tmp_path):
    keras.utils.set_random_seed(0)
    result = _run(tmp_path, sequence_classifier(), [1, None, 8])
    line = result.stderr.strip()
    assert result.exit_code == 1 and len(line.splitlines()) == 1, result.stderr
    assert "while loop" in line and "input_shape" in line, line


def test_a_text_model_with_a_free_sequence_length_is_refused_with_the_reason(tmp_path):
    """opencv_embedding needs the ids' shape: with the length open the GatherV2 stays, and is refused."""
    keras.utils.set_random_seed(0)
    result = _run(tmp_path, text_classifier(), [1, None])
    line = result.stderr.strip()
    assert result.exit_code == 1 and len(line.splitlines()) == 1, result.stderr
    assert "OpenCV" in line and "GatherV2" in line and "input_shape" in line and "onnx" in line, line
