"""Build the Keras 3 model from a tf_keras model's config, a layout plan and its weights.

Keras 3 reads Keras 2 layer configs itself (``Model.from_config``) except for the few
keys it renamed or dropped, cleaned here. Everything else is Keras' own work.
"""

from __future__ import annotations

import copy

import numpy as np

from kfreeze import tfop
from kfreeze.errors import KfreezeError
from kfreeze.legacy.layout import Plan, dense_rows_to_cl
from kfreeze.tfenv import tf  # noqa: F401  (quiet TF import first)

import keras  # noqa: E402

# Kernels that Theano convolved (flipped) and TensorFlow correlates: weight indices per class.
# The same set Keras 2's convert_all_kernels_in_model flipped, plus depthwise kernels.
THEANO_KERNELS = {"Conv1D": (0,), "Conv2D": (0,), "Conv3D": (0,), "Conv2DTranspose": (0,), "Conv3DTranspose": (0,),
                  "DepthwiseConv2D": (0,), "SeparableConv1D": (0, 1), "SeparableConv2D": (0, 1)}
# Keras 2 keys Keras 3 rejects, dropped only when they hold the value that means "nothing".
_NO_OP_KEYS = {cls: {"groups": 1} for cls in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
                                              "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D",
                                              "SeparableConv2D")}
# Keras 2 keys Keras 3 rejects that only matter for training (the weights are set afterwards).
_TRAINING_ONLY = {cls: ("kernel_initializer", "kernel_regularizer", "kernel_constraint")
                  for cls in ("DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D")}
# The shapes tf_keras' MultiHeadAttention was built with (Keras 3 builds from its call), and its
# softmax_robust_masking (False computes what Keras 3 computes).
_NO_OP_KEYS["MultiHeadAttention"] = {"softmax_robust_masking": False}
_TRAINING_ONLY["MultiHeadAttention"] = ("query_shape", "key_shape", "value_shape")


# Recurrent layers: tf_keras' config keys that Keras 3 rejects. time_major=True (time first) has no Keras 3
# form; 'implementation' only chose how tf_keras batched the gate products, not what they compute.
_RNN = ("SimpleRNN", "LSTM", "GRU", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")
_RNN_NO_OP_KEYS = {"time_major": False}
_RNN_IGNORED = ("implementation",)
_WRAPPED = ("layer", "backward_layer")  # TimeDistributed, Bidirectional


def _clean_rnn(cls: str, cfg: dict, where) -> None:
    for key, no_op in _RNN_NO_OP_KEYS.items():
        if cfg.pop(key, no_op) != no_op:
            raise KfreezeError(where, f"layer '{cfg['name']}' ({cls}) has {key}=True (inputs with time first), which "
                               "Keras 3 cannot express", f"re-save the model with {key}=False and feed it "
                               "(batch, time, features) instead of (time, batch, features)")
    for key in _RNN_IGNORED:
        cfg.pop(key, None)


def clean_layer(cls: str, cfg: dict, where) -> dict:
    """One Keras 2 layer config as Keras 3 accepts it."""
    cfg = dict(cfg)
    if cls in _RNN:
        _clean_rnn(cls, cfg, where)
    for key in _WRAPPED:
        inner = cfg.get(key)
        if isinstance(inner, dict) and "class_name" in inner:
            cfg[key] = {**inner, "config": clean_layer(inner["class_name"], inner["config"], where)}
    shape = cfg.pop("batch_input_shape", None)
    if cls == "InputLayer":
        cfg["batch_shape"] = shape
    for key, no_op in _NO_OP_KEYS.get(cls, {}).items():
        value = cfg.pop(key, no_op)
        if value != no_op:
            raise KfreezeError(where, f"layer '{cfg['name']}' ({cls}) has {key}={value!r}, which Keras 3 cannot "
                               "express", "replace the layer")
    for key in _TRAINING_ONLY.get(cls, ()):
        cfg.pop(key, None)
    if isinstance(cfg.get("axis"), list) and len(cfg["axis"]) == 1:
        cfg["axis"] = cfg["axis"][0]
    return cfg


def _tensor_ref(ref: list, source) -> dict:
    """A Keras 3 serialized tensor; its shape and dtype are the source model's (with the layout edits,
    which never touch recurrent inputs)."""
    layer = source.get_layer(ref[0])
    shape = layer.get_output_shape_at(ref[1])
    shape = shape[ref[2]] if isinstance(shape, list) else shape
    return {"class_name": "__keras_tensor__", "config": {"shape": list(shape), "dtype": layer.dtype,
                                                         "keras_history": list(ref[:3])}}


def _initial_state_nodes(layer: dict, source) -> None:
    """tf_keras lists an RNN call's initial states as extra inbound tensors; Keras 3 reads only the first
    unless they are passed as its ``initial_state`` argument, in Keras 3's own node format."""
    nodes = layer.get("inbound_nodes") or []
    if layer["class_name"] not in (*_RNN, "Bidirectional") or not any(len(n) > 1 for n in nodes if isinstance(n, list)):
        return
    layer["inbound_nodes"] = [
        {"args": [_tensor_ref(node[0], source)], "kwargs": {**(node[0][3] if len(node[0]) > 3 else {}),
                                                           "initial_state": [_tensor_ref(r, source) for r in node[1:]]}}
        if isinstance(node, list) and len(node) > 1 else node for node in nodes]


def keras3_config(config: dict, plan: Plan, where, source=None, trust_code: bool = False) -> dict:
    """The tf_keras model config with the layout edits applied and every layer cleaned for Keras 3."""
    out = copy.deepcopy(config)
    names = {layer["config"]["name"] for layer in out["config"]["layers"]}
    for layer in out["config"]["layers"]:
        cfg = {**layer["config"], **plan.edits.get(layer["config"]["name"], {})}
        if is_nested_model(layer):
            _nested_model(layer, plan, where, source, trust_code)
        elif layer["class_name"] in tfop.TF_OP_CLASSES:
            layer["config"] = tfop.layer_config(layer["class_name"], cfg, where, trust_code)
            layer["class_name"] = "kfreeze>TFOp"
            layer.pop("module", None)
            layer.pop("registered_name", None)
        else:
            layer["config"] = clean_layer(layer["class_name"], cfg, where)
        layer.pop("build_config", None)  # the source's input shapes; the new layout builds its own
        if source is not None:
            _initial_state_nodes(layer, source)
            _tensor_argument_nodes(layer, source, names)
        if layer["class_name"] != "InputLayer":  # not in keras.layers.deserialize; built by from_config
            _check_layer(layer, where)
    if source is not None:
        _reindex_nested(out, source)
    return out


def _get_layer(source, name):
    try:
        return source.get_layer(name)
    except ValueError:  # a Sequential's InputLayer, which tf_keras does not list
        return None


def _first_node_skipped(layer) -> bool:
    """tf_keras numbers a nested model's calls from 1 in a config (its node 0 links its own input to its
    output); Keras 3 from 0 in node references."""
    from tf_keras.src.engine import functional as tfk_functional
    return (layer is not None and hasattr(layer, "layers") and type(layer).__name__ in _NESTED
            and tfk_functional._should_skip_first_node(layer))


def _reindex_nested(config: dict, source) -> None:
    """References to a nested model's calls, from tf_keras' numbering to Keras 3's (``_first_node_skipped``):
    in the nodes' arguments, and in the outputs when the nested model is a Sequential (Keras 3 subtracts
    the 1 itself for a Functional only)."""
    layers = {layer["config"]["name"] for layer in config["config"]["layers"]}
    shifted = {name for name in layers if _first_node_skipped(_get_layer(source, name))}
    if not shifted:
        return

    def walk(value):
        if isinstance(value, dict):
            history = value.get("config", {}).get("keras_history") if value.get("class_name") == "__keras_tensor__" \
                else None
            if history and history[0] in shifted:
                history[1] -= 1
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            if _is_entry(value) and value[0] in shifted:
                value[1] -= 1
            for v in value:
                walk(v)

    for layer in config["config"]["layers"]:
        walk(layer.get("inbound_nodes") or [])
    for key in ("output_layers", "input_layers"):
        refs = config["config"].get(key)
        for ref in ([refs] if refs and isinstance(refs[0], str) else refs or []):
            if isinstance(ref, list) and ref and ref[0] in shifted and type(_get_layer(source, ref[0])).__name__ == "Sequential":
                ref[1] -= 1


# A model used as a layer (a base network inside a classifier): converted as a model of its own, and
# marked as Keras 3 serializes a model so that Keras 3 reads its layers (in tf_keras' format) itself.
_NESTED = {"Functional": {"module": "keras.src.models.functional", "registered_name": "Functional"},
           "Model": {"module": "keras.src.models.functional", "registered_name": "Functional"},
           "Sequential": {"module": "keras", "registered_name": None}}


def is_nested_model(layer: dict) -> bool:
    return layer.get("class_name") in _NESTED and isinstance(layer.get("config"), dict) \
        and isinstance(layer["config"].get("layers"), list)


def _nested_model(layer: dict, plan: Plan, where, source, trust_code: bool) -> None:
    name = layer["config"]["name"]
    if plan.edits.get(name) or plan.converted:
        raise KfreezeError(where, f"layer '{name}' is a model inside a model that kfreeze converts to "
                           "channels_last", "keep the model channels_first, or save the inner model flattened")
    inner = source.get_layer(name) if source is not None else None
    cls = "Functional" if layer["class_name"] == "Model" else layer["class_name"]
    converted = keras3_config({"class_name": cls, "config": layer["config"]}, Plan(False, [], []), where, inner,
                              trust_code)
    for key in ("input_layers", "output_layers"):  # one tensor, not a list of one: what its callers get
        refs = converted["config"].get(key)
        if isinstance(refs, list) and len(refs) == 1 and isinstance(refs[0], list):
            converted["config"][key] = refs[0]
    layer.update({"class_name": cls, "config": converted["config"], **_NESTED[cls]})


_CONSTANT = "_CONSTANT_VALUE"


def _is_ref(x, names) -> bool:
    return (isinstance(x, list) and len(x) == 3 and isinstance(x[0], str) and x[0] in names
            and isinstance(x[1], int) and isinstance(x[2], int))


def _keras_tensor(ref, source) -> dict:
    """A Keras 3 serialized tensor for the tf_keras tensor ``ref`` (layer, node, tensor)."""
    import tensorflow as tf

    layer = source.get_layer(ref[0])
    node = ref[1] - 1 if _first_node_skipped(layer) else ref[1]
    kept = [i for i in range(len(layer._inbound_nodes)) if f"{layer.name}_ib-{i}" in source._network_nodes]
    out = tf.nest.flatten(layer.get_output_at(kept[node] if 0 <= node < len(kept) else ref[1]))[ref[2]]
    return {"class_name": "__keras_tensor__", "config": {"shape": list(out.shape), "dtype": out.dtype.name,
                                                         "keras_history": list(ref[:3])}}


def _revive(value, source, names):
    """Tensor references inside a node's keyword arguments, as Keras 3 serializes tensors."""
    if _is_ref(value, names):
        return _keras_tensor(value, source)
    if isinstance(value, list):
        return [_revive(v, source, names) for v in value]
    if isinstance(value, dict):
        return {k: _revive(v, source, names) for k, v in value.items()}
    return value


def _is_entry(x) -> bool:
    return isinstance(x, list) and len(x) in (3, 4) and isinstance(x[0], str) and isinstance(x[1], int)


def _first_argument(data, source, names):
    """(first argument, keyword arguments) of a tf_keras node: an entry, or a structure of entries."""
    if _is_entry(data):
        kwargs = data[3] if len(data) > 3 else {}
        value = data[2] if data[0] == _CONSTANT else _keras_tensor(data[:3], source)
        return value, kwargs
    if isinstance(data, list):
        parts = [_first_argument(d, source, names) for d in data]
        return [p[0] for p in parts], next((p[1] for p in parts if p[1]), {})
    if isinstance(data, dict):
        parts = {k: _first_argument(d, source, names) for k, d in data.items()}
        return {k: p[0] for k, p in parts.items()}, next((p[1] for p in parts.values() if p[1]), {})
    return data, {}


def _tensor_argument_nodes(layer: dict, source, names) -> None:
    """tf_keras nodes that Keras 3's reader of the old format misreads, in Keras 3's own node format:
    a TFOp's nodes (its first argument keeps its structure, and may be a constant), and nodes with
    tensors among their keyword arguments (``MultiHeadAttention()(query, value)``)."""
    nodes = layer.get("inbound_nodes") or []
    op = layer["class_name"] == "kfreeze>TFOp"

    def needs(node) -> bool:
        entries = [node] if _is_entry(node) else node if isinstance(node, list) else []
        return op or any(_is_entry(e) and (e[0] == _CONSTANT or (len(e) > 3 and _revive(e[3], source, names)
                                                                 != e[3])) for e in entries)

    converted = []
    for node in nodes:
        if isinstance(node, dict) or not needs(node):
            converted.append(node)
            continue
        if op:
            first, kwargs = _first_argument(node, source, names)
        else:  # a plain layer: one input, or a list of them
            first, kwargs = _first_argument(node, source, names)
            if isinstance(first, list) and len(first) == 1:
                first = first[0]
        converted.append({"args": [first], "kwargs": _revive(kwargs, source, names)})
    layer["inbound_nodes"] = converted


def _check_layer(layer: dict, where) -> None:
    """Build each layer alone first, so a failure names the layer instead of the whole model."""
    try:
        keras.layers.deserialize(copy.deepcopy({k: v for k, v in layer.items() if k != "inbound_nodes"}))
    except Exception as e:  # Keras raises many types; all mean "Keras 3 has no such layer/argument"
        reason = " ".join(str(e).split("Exception encountered:")[-1].split())[:200]
        raise KfreezeError(where, f"layer '{layer['config']['name']}' ({layer['class_name']}) cannot be built in "
                           f"Keras 3: {reason}", "replace the layer or re-save the model with Keras 3") from None


def build(config: dict, where) -> keras.Model:
    cls = keras.Sequential if config["class_name"] == "Sequential" else keras.Model
    try:
        return cls.from_config(config["config"])
    except Exception as e:  # every layer built alone, so this is about the wiring
        reason = " ".join(str(e).split())[:300]
        raise KfreezeError(where, f"Keras 3 cannot connect the layers ({reason})", "report the model") from None


def flip_spatial(kernel: np.ndarray) -> np.ndarray:
    """Theano convolution -> TensorFlow correlation: reverse every spatial axis (all but the last two)."""
    return np.ascontiguousarray(np.flip(kernel, axis=tuple(range(kernel.ndim - 2))))


# Keras 1/2 hard_sigmoid is clip(0.2 x + 0.5, 0, 1); Keras 3's is clip(x / 6 + 0.5, 0, 1), so the Keras 3
# function of 1.2 x is the old one of x. Where hard_sigmoid follows a linear map, the map's weights are
# scaled by 1.2: LSTM gates i, f, o and GRU gates z, r (recurrent_activation), Dense/Conv kernels.
HARD_SIGMOID_SCALE = 1.2
_GATES = {"LSTM": (1, 1, 0, 1), "ConvLSTM1D": (1, 1, 0, 1), "ConvLSTM2D": (1, 1, 0, 1), "ConvLSTM3D": (1, 1, 0, 1),
          "GRU": (1, 1, 0)}
_LINEAR = {"Dense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"}


def _scale_hard_sigmoid(cls: str, cfg: dict, values: list[np.ndarray], where) -> list[np.ndarray]:
    """The weights of a layer whose activations are Keras 2's hard_sigmoid, for Keras 3's (see above)."""
    name = cfg.get("name", "?")
    if cls == "Bidirectional":
        half = len(values) // 2
        back = cfg.get("backward_layer") or cfg["layer"]
        return (_scale_hard_sigmoid(cfg["layer"]["class_name"], cfg["layer"]["config"], values[:half], where)
                + _scale_hard_sigmoid(back["class_name"], back["config"], values[half:], where))
    if cls == "TimeDistributed":
        return _scale_hard_sigmoid(cfg["layer"]["class_name"], cfg["layer"]["config"], values, where)
    values = list(values)
    if cfg.get("recurrent_activation") == "hard_sigmoid" and cls in _GATES:
        gates = np.repeat(np.asarray(_GATES[cls], dtype=bool), cfg.get("units") or cfg.get("filters"))
        for i in range(min(len(values), 3)):  # kernel, recurrent kernel, bias: gates on the last axis
            values[i] = np.where(gates, values[i] * np.float32(HARD_SIGMOID_SCALE), values[i]).astype(values[i].dtype)
    if cfg.get("activation") == "hard_sigmoid":
        if cls not in _LINEAR:
            raise KfreezeError(where, f"layer '{name}' ({cls}) uses Keras 2's hard_sigmoid (slope 0.2), and Keras 3's "
                               "has slope 1/6", "replace the activation with 'sigmoid' and retrain, or put the "
                               "activation right after a Dense or convolution layer")
        values = [v * np.float32(HARD_SIGMOID_SCALE) for v in values]
    return values


def check_activations(config: dict, where) -> None:
    """Fail in convert, naming the layer, on an activation whose meaning changed and cannot be kept."""
    for layer in config["config"]["layers"]:
        if is_nested_model(layer):
            check_activations(layer, where)
        else:
            _scale_hard_sigmoid(layer["class_name"], layer["config"], [], where)


def layer_weights(cls: str, name: str, values: list[np.ndarray], plan: Plan, theano: bool,
                  config: dict | None = None, where=None) -> list[np.ndarray]:
    """The weights of one layer, as the converted (channels_last, TensorFlow-convention) layer needs them."""
    values = list(values)
    if config is not None:
        values = _scale_hard_sigmoid(cls, config, values, where)
    if theano:
        for i in THEANO_KERNELS.get(cls, ()):
            values[i] = flip_spatial(values[i])
    if name in plan.dense_rows:
        values[0] = dense_rows_to_cl(values[0], plan.dense_rows[name])
    return values


def copy_weights(source, target: keras.Model, plan: Plan, theano: bool, where) -> None:
    for layer in source.layers:
        values = layer.get_weights()
        if not values:
            continue
        if hasattr(layer, "layers") and type(layer).__name__ in _NESTED:  # a model inside: layer by layer
            copy_weights(layer, target.get_layer(layer.name), Plan(False, [], []), theano, where)
            continue
        new = layer_weights(type(layer).__name__, layer.name, values, plan, theano, layer.get_config(), where)
        dest = target.get_layer(layer.name)
        expected = [tuple(w.shape) for w in dest.weights]
        if expected != [v.shape for v in new]:
            raise KfreezeError(where, f"layer '{layer.name}' weights {[v.shape for v in new]} do not fit the Keras 3 "
                               f"layer {expected}", "report the model")
        dest.set_weights(new)
