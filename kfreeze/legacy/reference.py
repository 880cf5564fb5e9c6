"""The source model as its own library runs it: the reference for verify.

Independent of the converter on purpose: the file is loaded by tf_keras itself
(``load_model`` / ``model_from_json`` + ``load_weights``), Theano kernels are flipped
here with plain slicing on the loaded layers, and the model runs channels_first as
written: Flatten, Dense, BatchNormalization, Concatenate, Reshape, padding and so on
are tf_keras' own channels_first code. Only convolutions and pooling, which TF has
no CPU kernels for in NCHW (with oneDNN off, as kfreeze runs), are computed by a
channels_last twin of the same layer between two transposes, locally, per layer.
Keras 1 files share the converter's reading code, because tf_keras cannot read them.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py

import numpy as np

from kfreeze.legacy import source as files
from kfreeze.tfenv import tf

import tf_keras  # noqa: E402
from tf_keras.src.layers.convolutional.base_conv import Conv  # noqa: E402
from tf_keras.src.layers.convolutional.base_depthwise_conv import DepthwiseConv  # noqa: E402
from tf_keras.src.layers.pooling.base_pooling1d import Pooling1D  # noqa: E402
from tf_keras.src.layers.pooling.base_pooling2d import Pooling2D  # noqa: E402
from tf_keras.src.layers.pooling.base_pooling3d import Pooling3D  # noqa: E402

_NCHW_ON_CPU_MISSING = (Conv, DepthwiseConv, Pooling1D, Pooling2D, Pooling3D)


def _load(source: Path, arch: Path | None, layout: str | None, trust_code: bool = False) -> tf_keras.Model:
    from kfreeze import sources
    if arch is None and sources.keras2_archive(source):  # a tf.keras 2.13-2.15 .keras: tf_keras loads it
        from kfreeze.legacy import archive_tf_keras_model
        return archive_tf_keras_model(source, trust_code)
    src = files.read_source(source, arch)
    layout = layout or files.explicit_layout(src, source) or "channels_last"
    with files.default_layout(layout):
        if src.keras1:
            model = files.build_model(src, layout)
            files.load_weights(model, src)
        elif arch is not None:  # JSON or YAML (read safely); tf_keras builds it and reads the weights itself
            model = tf_keras.models.model_from_config(files.upgrade_keras2(files.read_arch(arch)))
            model.load_weights(str(source))
        elif any(l.get("class_name") in files.CUDNN for l in files.walk_layers(json.loads(_model_config(source)))):
            # cuDNN layers have no CPU kernel: tf_keras builds their LSTM/GRU twin and converts the weights itself
            model = tf_keras.models.model_from_config(src.config)
            model.load_weights(str(source))
        else:
            model = tf_keras.models.load_model(str(source), compile=False)
    return model


def _model_config(source: Path) -> str:
    with h5py.File(source, "r") as f:
        value = f.attrs["model_config"]
    return value.decode("utf8") if isinstance(value, bytes) else value


def _theano_to_tf(model: tf_keras.Model) -> None:
    """Reverse the spatial axes of every convolution kernel (weights of rank >= 3) in place."""
    for layer in model.layers:
        if isinstance(layer, (Conv, DepthwiseConv)):
            values = layer.get_weights()
            layer.set_weights([w[(slice(None, None, -1),) * (w.ndim - 2)] if w.ndim >= 3 else w for w in values])


def _through_channels_last(layer) -> None:
    """Make a channels_first layer compute with a channels_last twin holding the same weights."""
    twin = type(layer).from_config({**layer.get_config(), "data_format": "channels_last"})

    def call(inputs, *args, **kwargs):
        rank = inputs.shape.rank
        x = tf.transpose(inputs, [0, *range(2, rank), 1])
        if not twin.built:
            twin(x)
            twin.set_weights(layer.get_weights())
        return tf.transpose(twin(x), [0, rank - 1, *range(1, rank - 1)])

    layer.call = call


def reference_model(source, arch=None, layout: str | None = None, theano_kernels: bool = False,
                    trust_code: bool = False) -> tf_keras.Model:
    from kfreeze import keras_io
    with keras_io.bounded_load(Path(source), arch and Path(arch)):
        model = _load(Path(source), None if arch is None else Path(arch), layout, trust_code)
    if theano_kernels:
        _theano_to_tf(model)
    for layer in model.layers:
        if isinstance(layer, _NCHW_ON_CPU_MISSING) and layer.data_format == "channels_first":
            _through_channels_last(layer)
    return model


def reference_outputs(source, arch, layout: str | None, theano_kernels: bool, inputs,
                      trust_code: bool = False) -> list[np.ndarray]:
    """Run the source model on inputs in the source's own layout (NCHW for channels_first)."""
    if arch is not None and files.is_keras3_config(files.read_arch(Path(arch))):
        import keras  # a Keras 3 architecture: Keras 3 is its own library

        model = keras.models.model_from_json(Path(arch).read_text())
        model.load_weights(source)
        feeds = [inputs[t.name] for t in model.inputs] if isinstance(inputs, dict) else list(inputs)
        return _run(model, feeds)
    model = reference_model(source, arch, layout, theano_kernels, trust_code)
    feeds = [inputs[name] for name in model.input_names] if isinstance(inputs, dict) else list(inputs)
    return _run(model, feeds)


def _run(model, feeds: list[np.ndarray]) -> list[np.ndarray]:
    """The model on all samples, or a fixed batch at a time (a stateful RNN saved with batch 1),
    its states reset for each batch as the frozen graph starts from zero states."""
    from kfreeze.verify.run import fixed_batch, run_batched

    batch = fixed_batch(tuple(t.shape) for t in model.inputs)
    stateful = [layer for layer in model._flatten_layers(include_self=True, recursive=True)
                if getattr(layer, "stateful", False) is True]

    def call(chunk):
        for layer in stateful:
            layer.reset_states()
        xs = [tf.constant(chunk[str(i)]) for i in range(len(feeds))]
        result = model(xs if len(xs) > 1 else xs[0], training=False)
        return {str(i): np.asarray(t) for i, t in enumerate(tf.nest.flatten(result))}
    out = run_batched(call, {str(i): x for i, x in enumerate(feeds)}, batch)
    return [out[str(i)] for i in range(len(out))]
