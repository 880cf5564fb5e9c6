"""Read a legacy Keras file (full-model .h5, or JSON + weights .h5) into a tf_keras model.

Keras 1 and 2 files are read with tf_keras, the maintained Keras 2 library, which
still knows their layer configs; Keras 3 only builds the converted model later.
"""

from __future__ import annotations

import contextlib
import json
import re
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
ARCH_SUFFIXES = (".json", ".yaml", ".yml")
LAYOUTS = ("channels_first", "channels_last")
_YAML_NODES = 1_000_000  # an architecture with more nodes, aliases expanded, is refused (alias bombs)


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


def weight_names(path: Path) -> list[str]:
    """Every weight name the file lists (the layers' ``weight_names`` attributes), in file order."""
    with h5py.File(path, "r") as f:
        group = _weights_group(f)
        layers = [n.decode("utf8") if isinstance(n, bytes) else n for n in group.attrs.get("layer_names", [])]
        names = []
        for layer in layers:
            if layer in group:
                names += [n.decode("utf8") if isinstance(n, bytes) else str(n)
                          for n in group[layer].attrs.get("weight_names", [])]
    return names


def _check_arch(data, path: Path, what: str) -> dict:
    if not isinstance(data, dict) or "class_name" not in data or "config" not in data:
        raise KfreezeError(path, f"{what} has no 'class_name'/'config'", "give the output of model.to_json()")
    return data


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise KfreezeError(path, f"{what} is not valid JSON ({' '.join(str(e).split())[:160]})",
                           "give the output of model.to_json()") from None
    return _check_arch(data, path, what)


def _yaml_loader():
    """PyYAML's SafeLoader plus the tags Keras 2's ``to_yaml`` wrote: python/tuple (read as a list) and
    Python 2's python/unicode and python/str (plain strings). Any other tag, such as python/object,
    is refused by SafeLoader itself, so reading never constructs an object or runs code."""
    import yaml

    class ArchLoader(yaml.SafeLoader):
        pass

    ArchLoader.add_constructor("tag:yaml.org,2002:python/tuple",
                               lambda loader, node: loader.construct_sequence(node, deep=True))
    for tag in ("python/unicode", "python/str"):
        ArchLoader.add_constructor(f"tag:yaml.org,2002:{tag}", lambda loader, node: loader.construct_scalar(node))
    return ArchLoader


def _expanded_size(node, memo: dict) -> int:
    """Nodes in the document once aliases are expanded (what a JSON dump or a layer walk visits)."""
    if id(node) not in memo:
        memo[id(node)] = 1  # a cycle counts once; the sum below catches the growth
        children = [x for pair in node.value for x in pair] if isinstance(node.value, list) and node.value \
            and isinstance(node.value[0], tuple) else node.value if isinstance(node.value, list) else []
        memo[id(node)] = 1 + sum(_expanded_size(c, memo) for c in children)
    return memo[id(node)]


def _read_yaml(path: Path, what: str) -> dict:
    import yaml

    fix = "give the output of Keras 2's model.to_yaml(), or model.to_json()"
    try:
        loader = _yaml_loader()(Path(path).read_text())
        try:
            node = loader.get_single_node()
            if node is not None and _expanded_size(node, {}) > _YAML_NODES:
                raise KfreezeError(path, f"{what} expands to more than {_YAML_NODES} YAML nodes (an alias bomb?)", fix)
            data = None if node is None else loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.constructor.ConstructorError as e:
        raise KfreezeError(path, f"{what} uses a YAML tag kfreeze does not read ({' '.join(str(e.problem).split())[:160]}); "
                           "only plain YAML and !!python/tuple are read, nothing that constructs objects", fix) from None
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError) as e:
        raise KfreezeError(path, f"{what} is not valid YAML ({' '.join(str(e).split())[:160]})", fix) from None
    return _check_arch(data, path, what)


def read_arch(path: Path, what: str = "architecture file") -> dict:
    """A model architecture from JSON (Keras 1, 2 or 3 ``to_json``) or YAML (Keras 2 ``to_yaml``)."""
    path = check_file(path, what)  # a missing file is "not found", not a damaged model
    suffix = path.suffix.lower()
    if suffix not in ARCH_SUFFIXES:
        raise KfreezeError(path, f"'{suffix}' is not an architecture file", "give a .json, .yaml or .yml file as 'arch'")
    config = _read_yaml(path, what) if suffix in (".yaml", ".yml") else _read_json(path, what)
    reject_file_references(config, path)
    return config


def reject_file_references(config, where) -> None:
    """Refuse a layer that reads a file named in its config when it is built: a StringLookup,
    IntegerLookup or TextVectorization whose ``vocabulary`` is a path. tf_keras (and Keras 3 outside
    its safe mode, as ``model_from_json`` runs) opens that path, anywhere on the machine, and bakes
    its lines into the model: a shared model file would read the user's files."""
    from kfreeze.errors import printable
    from kfreeze.keras_io import config_dicts

    for item in config_dicts(config):
        cfg = item.get("config")
        if isinstance(cfg, dict) and isinstance(cfg.get("vocabulary"), str):
            raise KfreezeError(where, f"refused for safety: layer '{printable(str(cfg.get('name')), 80)}' "
                               f"({printable(str(item.get('class_name')), 80)}) reads its vocabulary from the file "
                               f"'{printable(cfg['vocabulary'], 200)}' when it is built, and a model file never "
                               "makes kfreeze read other files", "adapt the layer or pass the vocabulary as a list "
                               "before saving (a Keras 3 .keras file stores it inside)")


def is_keras3_config(config: dict) -> bool:
    """Keras 3's ``to_json`` names no Keras version, and registers its classes by module."""
    return ("keras_version" not in config and str(config.get("module", "")).startswith("keras")
            and "registered_name" in config)


def walk_layers(config: dict):
    """Every layer config in a model config, wrapped and nested ones included."""
    cfg = config.get("config")
    items = cfg if isinstance(cfg, list) else (cfg or {}).get("layers", []) if isinstance(cfg, dict) else []
    for layer in items:
        yield layer
        yield from walk_layers(layer)
        for key in ("layer", "forward_layer", "backward_layer"):
            if isinstance(layer.get("config"), dict) and isinstance(layer["config"].get(key), dict):
                yield layer["config"][key]
                yield from walk_layers(layer["config"][key])


# CuDNNLSTM/CuDNNGRU (Keras 2 on a GPU) compute what these LSTM/GRU settings compute; tf_keras'
# preprocess_weights_for_loading converts their weights (it recognises them by the bias shape).
CUDNN = {"CuDNNLSTM": ("LSTM", {"activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True}),
          "CuDNNGRU": ("GRU", {"activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True,
                               "reset_after": True})}


def upgrade_keras2(config: dict) -> dict:
    """Keras 2 configs tf_keras would misread: defaults that changed, and the cuDNN-only classes."""
    for layer in walk_layers(config):
        cls = layer.get("class_name")
        if cls in CUDNN:
            layer["class_name"], fixed = CUDNN[cls]
            layer["config"] = {**layer["config"], **fixed}
        elif cls == "GRU":
            layer["config"].setdefault("reset_after", False)  # Keras < 2.1.3 had no key, and computed this
    return config


def read_source(source: str | Path, arch: str | Path | None) -> SourceFile:
    """Open the files and read the architecture, Keras version and backend."""
    source = check_file(source, "model file")
    from kfreeze import sources
    if source.suffix.lower() not in H5_SUFFIXES and sources.kind(source) != "hdf5":  # by its bytes, else its name
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
    except (OSError, SystemError) as e:  # SystemError: h5py on some malformed attributes
        raise KfreezeError(source, f"not a readable HDF5 file ({e})", "re-save it with model.save() or save_weights()") from None
    if arch is not None:
        config = read_arch(check_file(arch, "architecture file"))
    elif embedded:
        config = json.loads(embedded)
        reject_file_references(config, source)
    else:
        raise KfreezeError(source, "a weights-only file (no model_config)",
                           "set 'arch' to the model's JSON architecture (model.to_json())")
    version = version or config.get("keras_version") or "1"
    backend = backend or config.get("backend")
    if str(version).split(".")[0] == "1":
        config = keras1.upgrade(config, arch or source)
    else:
        config = upgrade_keras2(config)
    return SourceFile(source, config, str(version), backend)


def explicit_layout(src: SourceFile, where) -> str | None:
    """The data format the layers state, or None; mixed formats are an error (ambiguous source).
    Flatten's and the global poolings' data_format is no layout (``layout.NO_LAYOUT``)."""
    from kfreeze.legacy.layout import NO_LAYOUT
    cfg = src.config["config"]
    layers = cfg["layers"] if isinstance(cfg, dict) else cfg
    stated = {(l["config"].get("name"), l["config"]["data_format"]) for l in layers
              if l.get("class_name") not in NO_LAYOUT and l["config"].get("data_format") in LAYOUTS}
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
        raise KfreezeError(where, "refused for safety: the model has a Lambda layer, which carries Python bytecode; "
                           "kfreeze never runs it from a Keras 1/2 file, trust_code (--trust-code) included, as "
                           "that bytecode is the saving Python's", "replace the Lambda with a built-in layer, or "
                           "re-save the model as a Keras 3 .keras file and set trust_code: true")


def build_model(src: SourceFile, layout: str) -> tf_keras.Model:
    """A tf_keras model from the architecture, failing on the first layer tf_keras rejects."""
    _reject_lambda(src.config, src.weights)
    from kfreeze.keras_io import OUT_OF_MEMORY
    with default_layout(layout):
        try:
            return tf_keras.models.model_from_config(src.config)
        except OUT_OF_MEMORY:
            raise  # the load bound (kfreeze.keras_io.bounded_load) says it in one line
        except Exception as e:  # tf_keras raises many types; find the layer to name it
            raise _layer_error(src, e) from None


def _layer_error(src: SourceFile, error: Exception) -> KfreezeError:
    cfg = src.config["config"]
    for layer in cfg["layers"] if isinstance(cfg, dict) else cfg:
        try:
            built = tf_keras.layers.deserialize({"class_name": layer["class_name"], "config": layer["config"]})
        except Exception as e:
            reason = " ".join(str(e).split())[:200]
            return KfreezeError(src.weights, f"layer '{layer['config'].get('name')}' ({layer['class_name']}) "
                                f"cannot be built: {reason}", "check the architecture file")
        if not isinstance(built, tf_keras.layers.Layer):  # tf_keras hands back an unknown class's name
            return KfreezeError(src.weights, f"layer '{layer['config'].get('name')}' is of class "
                                f"'{layer['class_name']}', which is no built-in Keras layer (a custom layer); kfreeze "
                                "reads Keras 1/2 files with built-in layers only", "re-save the model as a Keras 3 "
                                ".keras file and set custom_objects to the layer's Keras 3 class")
    reason = " ".join(str(error).split())[:300]
    return KfreezeError(src.weights, f"the architecture cannot be built ({reason})", "check the architecture file")


def load_weights(model: tf_keras.Model, src: SourceFile) -> None:
    """Set every layer's weights from the file, matched by layer name.

    Hand-written rather than ``model.load_weights``: tf_keras converts Keras 1
    kernels only when the version attribute is exactly "1" (Keras 1.2 wrote
    "1.2.2"), and its mismatch errors name layers by index, not by name.
    """
    from kfreeze import h5check
    h5check.check_weights(src.weights, {layer.name: [tuple(w.shape) for w in layer.weights] for layer in model.layers})
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
        values = keras1_weight_order(names, values)
    try:  # tf_keras' own conversion: Keras 1 per-gate RNN weights, cuDNN RNN weights, Keras 1 kernels
        values = hdf5_format.preprocess_weights_for_loading(layer, values, "1" if src.keras1 else src.keras_version,
                                                            src.backend)
    except (ValueError, AssertionError, IndexError) as e:
        raise KfreezeError(src.weights, f"layer '{layer.name}' ({type(layer).__name__}) weights cannot be converted: "
                           f"{' '.join(str(e).split())[:160]}", "give the weights file saved from this architecture") from None
    expected = [tuple(w.shape) for w in layer.weights]
    got = [tuple(v.shape) for v in values]
    if expected != got:
        raise KfreezeError(src.weights, f"layer '{layer.name}' weights have shapes {got}, the architecture "
                           f"needs {expected}", "give the weights file saved from this architecture")
    return values


# Keras 1.2.2 keras/layers/recurrent.py lists per-gate weights in this order (its trainable_weights,
# which save_weights wrote in order, named '<layer>_W_i' ...); tf_keras' preprocess_weights_for_loading
# then fuses them in Keras 2's gate order (LSTM i, f, c, o; GRU z, r, h). Sorting by name first makes
# a file whose datasets are listed in another order load the same.
_KERAS1_GATES = (("W_i", "U_i", "b_i", "W_c", "U_c", "b_c", "W_f", "U_f", "b_f", "W_o", "U_o", "b_o"),
                 ("W_z", "U_z", "b_z", "W_r", "U_r", "b_r", "W_h", "U_h", "b_h"))


def keras1_weight_order(names: list[str], values: list[np.ndarray]) -> list[np.ndarray]:
    """Keras 1 per-gate RNN weights in Keras 1.2.2's order, per sub-layer (Bidirectional has two)."""
    groups: dict[str, dict[str, np.ndarray]] = {}
    for name, value in zip(names, values):
        match = re.fullmatch(r"(.*)_([WUb]_[icfozrh])", name.split(":")[0].split("/")[-1])
        if not match:
            return values
        groups.setdefault(match.group(1), {})[match.group(2)] = value
    ordered = []
    for gates in groups.values():
        order = next((o for o in _KERAS1_GATES if set(o) == set(gates)), None)
        if order is None:
            return values
        ordered += [gates[g] for g in order]
    return ordered if len(ordered) == len(values) else values
