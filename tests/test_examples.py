"""The committed example models are what their READMEs say."""

import importlib.util
import re
from pathlib import Path

import numpy as np

from kfreeze import keras_io

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("make_examples", ROOT / "models" / "make_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_accuracy_on_fresh_rendered_digits():
    """Held-out digits the model never saw (a new seed), rendered by the committed script."""
    x, y = load_script().render_digits(600, seed=12345)
    model = keras_io.load_model(ROOT / "models" / "digits" / "model.keras")
    accuracy = float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))
    stated = float(re.search(r"Held-out accuracy: ([0-9.]+)", (ROOT / "models/digits/README.md").read_text()).group(1))
    assert accuracy >= 0.97
    assert abs(accuracy - stated) < 0.02


def test_examples_are_small():
    for path in (ROOT / "models").glob("*/model.keras"):
        assert path.stat().st_size < 1_000_000, path
