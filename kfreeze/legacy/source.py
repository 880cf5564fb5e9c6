"""Read a legacy Keras file (full-model .h5, or JSON + weights .h5) into a tf_keras model.

Keras 1 and 2 files are read with tf_keras, the maintained Keras 2 library, which
still knows their layer configs; Keras 3 only builds the converted model later.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from kfreeze.errors import KfreezeError
from kfreeze.graphio import check_file
from kfreeze.legacy import keras1
from kfreeze.tfenv import tf  # noqa: F401  (quiet TF import first)

import tf_keras  # noqa: E402
from tf_keras.src.saving.legacy import hdf5_format  # noqa: E402

H5_SUFFIXES = (".h5", ".hdf5")
LAYOUTS = ("channels_first", "channels_last")


@dataclass(frozen=True)
class SourceFile:
    """What a legacy file says about itself, before any model is built."""
    weights: Path
    config: dict            # {"class_name": ..., "config": ...}, upgraded to Keras 2 names
    keras_version: str      # "1" when the file does not say (Keras < 1.2 wrote no version)
    backend: str | None

    @property
    def keras1(self) -> bool:
        return self.keras_version.split(".")[0] == "1"


def _attr(obj, name: str) -> str | None:
    value = obj.attrs.get(name)
    return value.decode("utf8") if isinstance(value, bytes) else value


def _weights_group(f: h5py.File):
    """Full-model files keep the weights under 'model_weights'; weights-only files at the root."""
    return f["model_weights"] if "model_weights" in f else f


def h5_keras_version(path: Path) -> str | None:
    """The Keras version that wrote an .h5 file, or None when it is not a readable HDF5 file."""
    try:
        with h5py.File(path, "r") as f:
            return _attr(_weights_group(f), "keras_version") or _attr(f, "keras_version") or "1"
    except (OSError, RuntimeError, ValueError, KeyError):  # h5py's ways of saying "damaged"
        return None


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise KfreezeError(path, f"{what} is not valid JSON ({e})", "give the output of model.to_json()") from None
    if not isinstance(data, dict) or "class_name" not in data or "config" not in data:
        raise KfreezeError(path, f"{what} has no 'class_name'/'config'", "give the output of model.to_json()")
    return data


def read_source(source: str | Path, arch: str | Path | None) -> SourceFile:
    """Open the files and read the architecture, Keras version and backend."""
    source = check_file(source, "model file")
    if source.suffix.lower() not in H5_SUFFIXES:
        raise KfreezeError(source, f"'{source.suffix}' is not an HDF5 weights or model file",
                           "give a .h5 file as 'source' (with 'arch' for a weights-only file)")
    from kfreeze import h5check
    h5check.check_structure(source)  # no external files, links or oversized datasets: before any data is read
    try:
        with h5py.File(source, "r") as f:
            group = _weights_group(f)
            version = _attr(group, "keras_version") or _attr(f, "keras_version")
            backend = _attr(group, "backend") or _attr(f, "backend")
            embedded = _attr(f, "model_config")
    except OSError as e:
        raise KfreezeError(source, f"not a readable HDF5 file ({e})", "re-save it with model.save() or save_weights()") from None
    if arch is not None:
        config = _read_json(check_file(arch, "architecture file"), "architecture file")
    elif embedded:
        config = json.loads(embedded)
    else:
        raise KfreezeError(source, "a weights-only file (no model_config)",
                           "set 'arch' to the model's JSON architecture (model.to_json())")
    version = version or config.get("keras_version") or "1"
    backend = backend or config.get("backend")
    if str(version).split(".")[0] == "1":
        config = keras1.upgrade(config, arch or source)
    return SourceFile(source, config, str(version), backend)


def explicit_layout(src: SourceFile, where) -> str | None:
    """The data format the layers state, or None; mixed formats are an error (ambiguous source)."""
    cfg = src.config["config"]
    layers = cfg["layers"] if isinstance(cfg, dict) else cfg
    stated = {(l["config"].get("name"), l["config"]["data_format"]) for l in layers
              if l.get("class_name") != "Flatten" and l["config"].get("data_format") in LAYOUTS}
    formats = {fmt for _, fmt in stated}
    if len(formats) > 1:
        first = sorted(stated)[0]
        raise KfreezeError(where, f"layers mix channels_first and channels_last (e.g. layer '{first[0]}' is "
                           f"{first[1]})", "kfreeze converts one layout per model")
    return formats.pop() if formats else None


@contextlib.contextmanager
def default_layout(layout: str):
    """Layers whose config omits data_format take tf_keras' default, as Keras 2 itself did."""
    saved = tf_keras.backend.image_data_format()
    tf_keras.backend.set_image_data_format(layout)
    try:
        yield
    finally:
        tf_keras.backend.set_image_data_format(saved)


def _reject_lambda(config: dict, where) -> None:
    text = json.dumps(config)
    if '"class_name": "Lambda"' in text:
        raise KfreezeError(where, "the model has a Lambda layer (Python bytecode)",
                           "kfreeze does not execute code from model files; replace the Lambda with a built-in layer")


def build_model(src: SourceFile, layout: str) -> tf_keras.Model:
    """A tf_keras model from the architecture, failing on the first layer tf_keras rejects."""
    _reject_lambda(src.config, src.weights)
    with default_layout(layout):
        try:
            return tf_keras.models.model_from_config(src.config)
        except Exception as e:  # tf_keras raises many types; find the layer to name it
            raise _layer_error(src, e) from None


def _layer_error(src: SourceFile, error: Exception) -> KfreezeError:
    cfg = src.config["config"]
    for layer in cfg["layers"] if isinstance(cfg, dict) else cfg:
        try:
            tf_keras.layers.deserialize({"class_name": layer["class_name"], "config": layer["config"]})
        except Exception as e:
            reason = " ".join(str(e).split())[:200]
            return KfreezeError(src.weights, f"layer '{layer['config'].get('name')}' ({layer['class_name']}) "
                                f"cannot be built: {reason}", "check the architecture file")
    reason = " ".join(str(error).split())[:300]
    return KfreezeError(src.weights, f"the architecture cannot be built ({reason})", "check the architecture file")


def load_weights(model: tf_keras.Model, src: SourceFile) -> None:
    """Set every layer's weights from the file, matched by layer name.

    Hand-written rather than ``model.load_weights``: tf_keras converts Keras 1
    kernels only when the version attribute is exactly "1" (Keras 1.2 wrote
    "1.2.2"), and its mismatch errors name layers by index, not by name.
    """
    with h5py.File(src.weights, "r") as f:
        group = _weights_group(f)
        stored = [n.decode("utf8") if isinstance(n, bytes) else n for n in group.attrs.get("layer_names", [])]
        stored = [n for n in stored if len(group[n].attrs.get("weight_names", []))]
        wanted = [layer for layer in model.layers if layer.weights]
        extra = sorted(set(stored) - {layer.name for layer in wanted})
        if extra:
            raise KfreezeError(src.weights, f"weights for layer '{extra[0]}' which the architecture does not have "
                               f"({len(stored)} layers with weights in the file, {len(wanted)} in the architecture)",
                               "give the architecture these weights were saved from")
        for layer in wanted:
            layer.set_weights(_layer_values(layer, group, src))


def _layer_values(layer, group, src: SourceFile) -> list[np.ndarray]:
    if layer.name not in group:
        raise KfreezeError(src.weights, f"no weights for layer '{layer.name}'",
                           "give the weights file saved from this architecture")
    g = group[layer.name]
    names = [n.decode("utf8") if isinstance(n, bytes) else n for n in g.attrs["weight_names"]]
    values = [np.asarray(g[n]) for n in names]
    if src.keras1:
        values = hdf5_format.preprocess_weights_for_loading(layer, values, "1", src.backend)
    expected = [tuple(w.shape) for w in layer.weights]
    got = [tuple(v.shape) for v in values]
    if expected != got:
        raise KfreezeError(src.weights, f"layer '{layer.name}' weights have shapes {got}, the architecture "
                           f"needs {expected}", "give the weights file saved from this architecture")
    return values
