"""``opencv: true``: recurrent layers unrolled over a fixed number of steps, at convert.

A recurrent layer (SimpleRNN, LSTM, GRU, RNN, Bidirectional, ConvLSTM1D/2D/3D) freezes into a TF
while loop, which OpenCV's importer cannot read (``opencv_refuse`` refuses it: OpenCV 4.6 allocated
18.9 GB on a Bidirectional LSTM's loop). With ``unroll=True`` Keras writes one cell per step
instead: the same numbers in TF, and a graph without a loop. Keras needs the number of steps to
unroll, so the time axis must be fixed, by the model's Input shape or by ``input_shape``.
"""

from __future__ import annotations

from kfreeze.keras_io import keras, shared_layer_nodes


def recurrent(config) -> bool:
    """Whether a (nested) layer config has a recurrent layer that is not unrolled yet."""
    if isinstance(config, dict):
        return config.get("unroll") is False or any(recurrent(v) for v in config.values())
    if isinstance(config, list):
        return any(recurrent(v) for v in config)
    return False


def _unrolled(config):
    if isinstance(config, dict):
        return {k: True if k == "unroll" and v is False else _unrolled(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_unrolled(v) for v in config]
    return config


def _fixed_inputs(config: dict, shapes: dict[str, list]) -> dict:
    """The model config with each InputLayer's free non-batch dims taken from ``shapes`` (by input name)."""
    layers = []
    for layer in config.get("layers", []):
        given = shapes.get(layer.get("config", {}).get("name"))
        batch = layer.get("config", {}).get("batch_shape")
        if layer.get("class_name") == "InputLayer" and given and batch and len(given) == len(batch):
            # the batch stays as the model has it; a free dim takes the given size (not -1 or null)
            fixed = [g if d is None and i > 0 and g is not None and g > 0 else d
                     for i, (d, g) in enumerate(zip(batch, given))]
            layer = {**layer, "config": {**layer["config"], "batch_shape": fixed}}
        layers.append(layer)
    return {**config, "layers": layers}


def _fixed(input_layer: dict) -> bool:
    shape = input_layer.get("config", {}).get("batch_shape")
    return bool(shape) and None not in shape[1:]


def input_shapes(model, raw) -> dict[str, list]:
    """input_shape (one shape, a list in input order, or {input: shape}) by the model's input names."""
    names = [t.name.split(":")[0] for t in model.inputs]
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return {k: v for k, v in raw.items() if v is not None}
    if raw and all(isinstance(s, list) for s in raw):
        return {n: s for n, s in zip(names, raw) if s is not None}
    return {names[0]: raw} if len(names) == 1 else {}


def unroll(model, raw_shapes=None, custom_objects: dict | None = None, safe_mode: bool = True):
    """``model`` rebuilt with ``unroll=True`` on its recurrent layers and its weights, or ``model``
    itself when it has none or a time axis stays free (then optimize refuses the loop, saying so)."""
    serialized = keras.saving.serialize_keras_object(model)
    if not recurrent(serialized.get("config", {}).get("layers", [])):
        return model
    config = _fixed_inputs(_unrolled(serialized["config"]), input_shapes(model, raw_shapes))
    if not all(_fixed(layer) for layer in config.get("layers", []) if layer.get("class_name") == "InputLayer"):
        return model  # Keras would unroll over an unknown number of steps only when called, and fail there
    try:
        with shared_layer_nodes():
            rebuilt = keras.saving.deserialize_keras_object({**serialized, "config": config},
                                                            custom_objects=custom_objects, safe_mode=safe_mode)
        rebuilt.set_weights(model.get_weights())
    except Exception:  # noqa: BLE001  whatever Keras raises rebuilding it: the loop stays, and optimize refuses it
        return model
    return rebuilt
