"""Upgrade a Keras 1 architecture (class and argument names) to Keras 2, as tf_keras reads it.

Hand-written: Keras 2.0 accepted Keras 1 arguments through its ``legacy.interfaces``
decorators, but tf_keras dropped them and Keras 3 never had them. Only what matters
for inference is kept; regularizers and constraints are dropped. A key this table
does not know is an error naming the layer, never silently ignored.
"""

from __future__ import annotations

import copy

from kfreeze.errors import KfreezeError

_RECURRENT = {"output_dim": "units", "dropout_W": "dropout", "dropout_U": "recurrent_dropout",
              "return_sequences": "return_sequences", "go_backwards": "go_backwards", "stateful": "stateful",
              "unroll": "unroll"}
_DIM_ORDERING = {"th": "channels_first", "tf": "channels_last"}
_DROPPED = ("W_regularizer", "b_regularizer", "activity_regularizer", "W_constraint", "b_constraint",
            "gamma_regularizer", "beta_regularizer", "input_dim", "input_length", "output_shape",
            "depthwise_regularizer", "pointwise_regularizer", "depthwise_constraint", "pointwise_constraint",
            # recurrent layers: training-only settings; consume_less only chose how the gates were computed
            # (its weight layout is recognised by count when the weights are read)
            "U_regularizer", "U_constraint", "inner_init", "forget_bias_init", "consume_less")
_COMMON = {"name": "name", "trainable": "trainable", "batch_input_shape": "batch_input_shape",
           "input_dtype": "dtype", "activation": "activation", "bias": "use_bias", "init": "kernel_initializer",
           "border_mode": "padding", "subsample": "strides", "nb_filter": "filters", "dim_ordering": "data_format",
           "atrous_rate": "dilation_rate", "depth_multiplier": "depth_multiplier"}

# Keras 1 class -> (Keras 2 class, {Keras 1 key: Keras 2 key}, kernel-size keys in order)
_LAYERS = {
    "Convolution1D": ("Conv1D", {"filter_length": "kernel_size", "subsample_length": "strides"}, ()),
    "Convolution2D": ("Conv2D", {}, ("nb_row", "nb_col")),
    "AtrousConvolution2D": ("Conv2D", {}, ("nb_row", "nb_col")),
    "Convolution3D": ("Conv3D", {}, ("kernel_dim1", "kernel_dim2", "kernel_dim3")),
    "Deconvolution2D": ("Conv2DTranspose", {}, ("nb_row", "nb_col")),
    "SeparableConvolution2D": ("SeparableConv2D", {"depthwise_initializer": "depthwise_initializer",
                                                   "pointwise_initializer": "pointwise_initializer"},
                               ("nb_row", "nb_col")),
    "Dense": ("Dense", {"output_dim": "units"}, ()),
    "Dropout": ("Dropout", {"p": "rate"}, ()),
    "SpatialDropout2D": ("SpatialDropout2D", {"p": "rate"}, ()),
    "Activation": ("Activation", {}, ()),
    "Flatten": ("Flatten", {}, ()),
    "Reshape": ("Reshape", {"target_shape": "target_shape"}, ()),
    "Permute": ("Permute", {"dims": "dims"}, ()),
    "MaxPooling1D": ("MaxPooling1D", {"pool_length": "pool_size", "stride": "strides"}, ()),
    "AveragePooling1D": ("AveragePooling1D", {"pool_length": "pool_size", "stride": "strides"}, ()),
    "MaxPooling2D": ("MaxPooling2D", {"pool_size": "pool_size", "strides": "strides"}, ()),
    "AveragePooling2D": ("AveragePooling2D", {"pool_size": "pool_size", "strides": "strides"}, ()),
    "GlobalAveragePooling2D": ("GlobalAveragePooling2D", {}, ()),
    "GlobalMaxPooling2D": ("GlobalMaxPooling2D", {}, ()),
    "ZeroPadding2D": ("ZeroPadding2D", {"padding": "padding"}, ()),
    "Cropping2D": ("Cropping2D", {"cropping": "cropping"}, ()),
    "UpSampling2D": ("UpSampling2D", {"size": "size"}, ()),
    "BatchNormalization": ("BatchNormalization", {"epsilon": "epsilon", "momentum": "momentum", "axis": "axis",
                                                  "beta_init": "beta_initializer",
                                                  "gamma_init": "gamma_initializer"}, ()),
    "LeakyReLU": ("LeakyReLU", {"alpha": "alpha"}, ()),
    "InputLayer": ("InputLayer", {"sparse": "sparse"}, ()),
    # Keras 1.2.2 keras/layers/recurrent.py and embeddings.py; gates and weights: see source.keras1_weight_order
    "SimpleRNN": ("SimpleRNN", _RECURRENT, ()),
    "LSTM": ("LSTM", {**_RECURRENT, "inner_activation": "recurrent_activation"}, ()),
    "GRU": ("GRU", {**_RECURRENT, "inner_activation": "recurrent_activation"}, ()),
    "Embedding": ("Embedding", {"input_dim": "input_dim", "output_dim": "output_dim", "mask_zero": "mask_zero",
                                "init": None, "dropout": None}, ()),
    "TimeDistributed": ("TimeDistributed", {"layer": "layer"}, ()),
    "Bidirectional": ("Bidirectional", {"layer": "layer", "merge_mode": "merge_mode"}, ()),
    "Masking": ("Masking", {"mask_value": "mask_value"}, ()),
    "RepeatVector": ("RepeatVector", {"n": "n"}, ()),
    "GlobalAveragePooling1D": ("GlobalAveragePooling1D", {}, ()),
    "GlobalMaxPooling1D": ("GlobalMaxPooling1D", {}, ()),
}
# Keras 1 defaults that differ from Keras 2's, written out so a config that omits them keeps its meaning.
_DEFAULTS = {"LSTM": {"recurrent_activation": "hard_sigmoid"}, "GRU": {"recurrent_activation": "hard_sigmoid",
                                                                       "reset_after": False}}
_MERGE = {"concat": "Concatenate", "sum": "Add", "mul": "Multiply", "ave": "Average", "max": "Maximum"}


def upgrade(model_config: dict, where) -> dict:
    """The whole model config with every layer upgraded; Sequential and Model (functional) both."""
    out = copy.deepcopy(model_config)
    cfg = out["config"]
    layers = cfg if isinstance(cfg, list) else cfg["layers"]
    if isinstance(cfg, list) and layers:
        _sequential_input(layers)
    for layer in layers:
        layer["class_name"], layer["config"] = upgrade_layer(layer["class_name"], layer["config"], where)
    if isinstance(cfg, list):  # Keras 1 Sequential: a bare list of layers
        out["config"] = {"name": "sequential", "layers": layers}
    return out


def _sequential_input(layers: list) -> None:
    """The first layer's input, as Keras 1 made it: from batch_input_shape, else input_dim/input_length.

    An integer input (an Embedding's token ids) becomes an explicit InputLayer, named as Keras 1
    named it, so its dtype is the input's and not the layer's (an int32 Embedding has no float weights).
    """
    first = layers[0]["config"]
    if "batch_input_shape" not in first and first.get("input_dim") is not None:
        if layers[0]["class_name"] == "Embedding":
            first["batch_input_shape"] = [None, first.get("input_length")]
        elif layers[0]["class_name"] in ("SimpleRNN", "LSTM", "GRU"):
            first["batch_input_shape"] = [None, first.get("input_length"), first["input_dim"]]
        else:
            first["batch_input_shape"] = [None, first["input_dim"]]
    dtype = first.get("input_dtype")
    if dtype and not str(dtype).startswith("float") and "batch_input_shape" in first:
        layers.insert(0, {"class_name": "InputLayer", "config": {
            "name": f"{first.get('name', 'layer')}_input", "batch_input_shape": first.pop("batch_input_shape"),
            "input_dtype": first.pop("input_dtype")}})


def upgrade_layer(class_name: str, config: dict, where) -> tuple[str, dict]:
    name = config.get("name", "?")
    if class_name == "Merge":
        return _merge(config, where)
    if class_name not in _LAYERS:
        raise KfreezeError(where, f"Keras 1 layer '{name}' ({class_name}) has no known Keras 2 equivalent",
                           "re-save the model with Keras 2, or replace the layer")
    new_class, renames, kernel_keys = _LAYERS[class_name]
    new = dict(_DEFAULTS.get(class_name, {}))
    if kernel_keys:
        new["kernel_size"] = [config[k] for k in kernel_keys]
    if class_name == "BatchNormalization" and config.get("mode", 0) != 0:
        raise KfreezeError(where, f"layer '{name}' (BatchNormalization) has mode={config['mode']}: it normalises "
                           "with batch statistics at inference, which Keras 2 cannot express", "retrain with mode=0")
    for key, value in config.items():
        if key in renames:
            target = renames[key]
            if target is None:  # known, and without effect at inference
                continue
        elif key in kernel_keys or key in _DROPPED or key == "mode":
            continue
        else:
            target = _COMMON.get(key)
        if target is None:
            raise KfreezeError(where, f"Keras 1 layer '{name}' ({class_name}) has key '{key}' that kfreeze cannot "
                               "map", "remove the key if it does not affect inference, or re-save with Keras 2")
        if key == "weights" and value is not None:
            raise KfreezeError(where, f"layer '{name}' has inline 'weights'", "keep weights in the .h5 file")
        new[target] = _value(key, value, name, where)
    if "layer" in new:  # TimeDistributed, Bidirectional: the wrapped layer is a Keras 1 config too
        inner = new["layer"]
        inner_class, inner_cfg = upgrade_layer(inner["class_name"], inner["config"], where)
        new["layer"] = {"class_name": inner_class, "config": inner_cfg}
    if new_class == "Flatten":
        new["data_format"] = "channels_last"  # Keras 1 flattened in storage order, whatever the layout
    if new_class == "Conv1D" and isinstance(new.get("strides"), int):
        new["strides"] = [new["strides"]]
    return new_class, {k: v for k, v in new.items() if v is not None}


def _value(key: str, value, name: str, where):
    if key == "dim_ordering":
        return _DIM_ORDERING.get(value)  # 'default' -> None -> the 'layout' setting applies
    if key == "border_mode" and value not in ("same", "valid"):
        raise KfreezeError(where, f"layer '{name}' has border_mode='{value}'", "only 'same' and 'valid' exist in Keras 2")
    if key == "padding" and isinstance(value, list) and len(value) == 4:
        return [value[:2], value[2:]]  # Keras 1 (top, bottom, left, right)
    return value


def _merge(config: dict, where) -> tuple[str, dict]:
    name, mode = config.get("name", "?"), config.get("mode")
    if mode not in _MERGE:
        raise KfreezeError(where, f"layer '{name}' (Merge) has mode={mode!r}",
                           f"only modes {', '.join(_MERGE)} map to Keras 2 layers")
    new = {"name": name}
    if mode == "concat":
        new["axis"] = config.get("concat_axis", -1)
    return _MERGE[mode], new
