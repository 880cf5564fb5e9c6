"""Build the Keras 3 model from a tf_keras model's config, a layout plan and its weights.

Keras 3 reads Keras 2 layer configs itself (``Model.from_config``) except for the few
keys it renamed or dropped, cleaned here. Everything else is Keras' own work.
"""

from __future__ import annotations

import copy

import numpy as np

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


def clean_layer(cls: str, cfg: dict, where) -> dict:
    """One Keras 2 layer config as Keras 3 accepts it."""
    cfg = dict(cfg)
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


def keras3_config(config: dict, plan: Plan, where) -> dict:
    """The tf_keras model config with the layout edits applied and every layer cleaned for Keras 3."""
    out = copy.deepcopy(config)
    for layer in out["config"]["layers"]:
        cfg = {**layer["config"], **plan.edits.get(layer["config"]["name"], {})}
        layer["config"] = clean_layer(layer["class_name"], cfg, where)
        layer.pop("build_config", None)  # the source's input shapes; the new layout builds its own
        if layer["class_name"] != "InputLayer":  # not in keras.layers.deserialize; built by from_config
            _check_layer(layer, where)
    return out


def _check_layer(layer: dict, where) -> None:
    """Build each layer alone first, so a failure names the layer instead of the whole model."""
    try:
        keras.layers.deserialize({k: v for k, v in layer.items() if k != "inbound_nodes"})
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


def layer_weights(cls: str, name: str, values: list[np.ndarray], plan: Plan, theano: bool) -> list[np.ndarray]:
    """The weights of one layer, as the converted (channels_last, TensorFlow-convention) layer needs them."""
    values = list(values)
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
        new = layer_weights(type(layer).__name__, layer.name, values, plan, theano)
        dest = target.get_layer(layer.name)
        expected = [tuple(w.shape) for w in dest.weights]
        if expected != [v.shape for v in new]:
            raise KfreezeError(where, f"layer '{layer.name}' weights {[v.shape for v in new]} do not fit the Keras 3 "
                               f"layer {expected}", "report the model")
        dest.set_weights(new)
