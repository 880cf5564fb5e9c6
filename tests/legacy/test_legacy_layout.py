"""Per-layer channels_first -> channels_last parity: source on NCHW vs converted on NHWC."""

from __future__ import annotations

import numpy as np
import pytest

from legacy_helpers import nchw_inputs, parity, randomize
from kfreeze import legacy
from kfreeze.errors import KfreezeError
from kfreeze.legacy import layout

import tf_keras  # noqa: E402  (after conftest's quiet TF import)

L = tf_keras.layers
CF = {"data_format": "channels_first"}


def model(shape, body, name):
    inp = tf_keras.Input(shape, name="x")
    return randomize(tf_keras.Model(inp, body(inp), name=name))


def _chain(*layers):
    def body(x):
        for layer in layers:
            x = layer(x)
        return x
    return body


CASES = {
    "conv1d": ((3, 10), _chain(L.Conv1D(4, 3, padding="same", **CF), L.MaxPooling1D(**CF), L.Flatten(),
                               L.Dense(5))),
    "conv2d_bn": ((3, 8, 8), _chain(L.Conv2D(4, 3, strides=2, **CF), L.BatchNormalization(axis=1), L.ReLU(),
                                    L.AveragePooling2D(**CF))),
    "conv3d": ((2, 5, 6, 7), _chain(L.Conv3D(3, 3, padding="same", **CF), L.MaxPooling3D(**CF),
                                    L.GlobalAveragePooling3D(**CF))),
    "transpose_depthwise_separable": ((3, 6, 6), _chain(
        L.Conv2DTranspose(4, 3, strides=2, padding="same", **CF), L.DepthwiseConv2D(3, **CF),
        L.SeparableConv2D(5, 3, depth_multiplier=2, **CF))),
    "dense_after_flatten_through_dropout_activation": ((3, 4, 5), _chain(
        L.Conv2D(4, 2, **CF), L.Flatten(), L.Dropout(0.5), L.Activation("tanh"), L.Dense(6))),
    "flatten_channels_first_flag": ((3, 4, 5), _chain(L.Conv2D(4, 2, **CF), L.Flatten(**CF), L.Dense(6))),
    "pad_crop_upsample": ((2, 6, 7), _chain(
        L.ZeroPadding2D(((1, 2), (0, 3)), **CF), L.Cropping2D(((0, 1), (2, 1)), **CF),
        L.UpSampling2D((2, 3), **CF), L.Conv2D(3, 3, **CF), L.GlobalMaxPooling2D(keepdims=True, **CF))),
    "reshape_keeps_channels_then_permute": ((3, 4, 6), _chain(
        L.Conv2D(4, 1, **CF), L.Reshape((4, 24)), L.Reshape((4, 6, 4)), L.Permute((1, 3, 2)),
        L.Conv2D(2, 2, **CF))),
    "reshape_to_vector": ((3, 4, 4), _chain(L.Conv2D(2, 3, **CF), L.Reshape((-1,)), L.Dense(3))),
    "softmax_over_channels": ((3, 4, 4), _chain(L.Conv2D(5, 1, **CF), L.Softmax(axis=1))),
}


@pytest.mark.parametrize("case", CASES)
def test_layer_parity(save, case):
    shape, body = CASES[case]
    m = model(shape, body, case)
    saved = save(m)
    converted = legacy.convert_source(saved.full)
    assert converted.plan.converted and converted.plan.inputs == [True]
    assert parity(saved.full, None, nchw_inputs(m)) <= 1e-5


def test_concatenate_on_channel_axis_two_inputs(save):
    a, b = tf_keras.Input((2, 5, 5), name="a"), tf_keras.Input((3, 5, 5), name="b")
    x = L.Concatenate(axis=1, name="cat")([L.Conv2D(4, 1, **CF)(a), b])
    out = L.Dense(2, name="out")(L.Flatten()(L.Conv2D(2, 3, **CF)(x)))
    m = randomize(tf_keras.Model([a, b], out, name="cat2"))
    saved = save(m)
    assert parity(saved.weights, saved.arch, nchw_inputs(m)) <= 1e-5
    converted = legacy.convert_source(saved.weights, saved.arch).model
    assert [t.name for t in converted.inputs] == ["a", "b"] and converted.output_names == ["out"]
    assert converted.get_layer("cat").axis == 3


def test_dense_rows_reorder_is_the_layout_transpose():
    """Flattening (c, h, w) with kernel W equals flattening (h, w, c) with the reordered kernel."""
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(2, 3, 4, 5)), rng.normal(size=(60, 7))
    expected = x.reshape(2, -1) @ w
    got = np.transpose(x, (0, 2, 3, 1)).reshape(2, -1) @ layout.dense_rows_to_cl(w, (3, 4, 5))
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_channels_last_source_is_not_converted(save):
    m = model((8, 8, 3), _chain(L.Conv2D(4, 3), L.Flatten(), L.Dense(2)), "cl")
    saved = save(m)
    converted = legacy.convert_source(saved.full)
    assert not converted.plan.converted and converted.plan.dense_rows == {}
    x = nchw_inputs(m)[0]
    np.testing.assert_allclose(converted.model(x), m(x), atol=1e-5)


@pytest.mark.parametrize("body, layer, message", [
    (_chain(L.Conv2D(4, 1, **CF), L.Dense(3, name="dense_on_image")), "dense_on_image", "channels_first input"),
    (_chain(L.Conv2D(4, 1, **CF), L.Reshape((8, 8), name="mixes")), "mixes", "across the channel axis"),
    (_chain(L.Conv2D(4, 1, **CF), L.Flatten(), L.BatchNormalization(name="bn_flat")), "bn_flat", "flat input"),
    (_chain(L.Conv2D(4, 1, **CF), L.Flatten(name="flat_out")), "flat_out", "flattened channels_first"),
])
def test_unmappable_layers_fail_naming_the_layer(save, body, layer, message):
    saved = save(model((2, 4, 4), body, "bad"))
    with pytest.raises(KfreezeError, match=f"'{layer}'.*{message}") as e:
        legacy.load_source(saved.full)
    assert str(saved.full) in str(e.value) and "\n" not in str(e.value)
