"""Shared fixtures: tiny Keras models built in the test, saved as the user would save them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# No progress lines in the tests' stages (in process or children): many check stderr's exact
# error line. tests/test_progress.py turns them on where it tests them.
os.environ["KFREEZE_QUIET"] = "1"

import kfreeze  # noqa: E402

kfreeze.pin_tensorflow()  # as the CLI and the stages run TensorFlow (the metrics they record)

from kfreeze.keras_io import keras  # noqa: E402  (quiet TF import first)


def build_tiny(seed: int = 0, name: str = "tiny") -> keras.Model:
    """Conv + BN + ReLU + pool + dropout + dense softmax, with non-trivial BN statistics."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    x = keras.layers.Flatten(name="flat")(x)
    out = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    model = keras.Model(inp, out, name=name)
    rng = np.random.default_rng(seed)
    bn = model.get_layer("bn")
    bn.set_weights([rng.uniform(0.5, 1.5, 4), rng.normal(0, 0.5, 4), rng.normal(0, 0.5, 4), rng.uniform(0.5, 2, 4)])
    conv = model.get_layer("conv")
    conv.set_weights([conv.get_weights()[0], rng.normal(0, 0.3, 4)])
    return model


def build_two_io(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    img = keras.Input((6, 6, 2), name="img")
    vec = keras.Input((5,), name="vec")
    x = keras.layers.Conv2D(3, 3, name="c")(img)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    v = keras.layers.Dense(4, activation="relu", name="d")(vec)
    z = keras.layers.Concatenate(name="cat")([x, v])
    cls = keras.layers.Dense(2, activation="softmax", name="cls")(z)
    reg = keras.layers.Dense(1, name="reg")(z)
    return keras.Model([img, vec], [cls, reg], name="two")


def save_checkpoint(values: dict, prefix) -> None:
    """Write a TF1 (V2-format) checkpoint holding exactly ``values``, keyed by name."""
    from kfreeze.tfenv import tf

    with tf.Graph().as_default() as g:
        saver = tf.compat.v1.train.Saver([tf.compat.v1.Variable(v, name=k) for k, v in sorted(values.items())])
        with tf.compat.v1.Session(graph=g) as s:
            s.run(tf.compat.v1.global_variables_initializer())
            saver.save(s, str(prefix), write_meta_graph=False, write_state=False)


def tiny_project(root: Path, samples: int) -> Path:
    """ROOT as a project with one model, ``tiny`` (models/tiny/model.keras), and its params.yaml."""
    from tests.entries import keras_entry, params_text

    (root / "models" / "tiny").mkdir(parents=True)
    build_tiny().save(root / "models" / "tiny" / "model.keras")
    (root / "params.yaml").write_text(params_text({"tiny": keras_entry("models/tiny/model.keras")}, samples=samples))
    return root


@pytest.fixture
def tiny_model():
    return build_tiny()


@pytest.fixture
def tiny_path(tmp_path) -> Path:
    path = tmp_path / "tiny.keras"
    build_tiny().save(path)
    return path
