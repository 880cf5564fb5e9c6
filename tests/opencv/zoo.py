"""One tiny Keras model per ``keras.layers`` class, for the OpenCV coverage run (tests/opencv/coverage.py).

Fixed input shapes, batch 1; the layer under test is the model's output where that is a float
tensor (so what OpenCV computes for it is what is compared), with a small conv or Dense before it
where the layer needs trained-looking inputs. ``tests.conformance.zoo.randomize`` gives every bias,
scale and BatchNorm statistic random values.
"""

from __future__ import annotations

from typing import Callable

from kfreeze.keras_io import keras

L = keras.layers


def seq(shape, *layers, dtype="float32", name="m") -> keras.Model:
    inp = keras.Input(shape, batch_size=1, dtype=dtype, name="x")
    x = inp
    for layer in layers:
        x = layer(x)
    return keras.Model(inp, x, name=name)


def two(shape, layer, shape2=None) -> keras.Model:
    """Two inputs through a merge layer."""
    a = keras.Input(shape, batch_size=1, name="a")
    b = keras.Input(shape2 or shape, batch_size=1, name="b")
    return keras.Model([a, b], layer([a, b]), name="m")


def _dot():
    a = keras.Input((6,), batch_size=1, name="a")
    b = keras.Input((6,), batch_size=1, name="b")
    return keras.Model([a, b], L.Dot(axes=1)([a, b]), name="m")


def _attention(layer):
    q = keras.Input((4, 6), batch_size=1, name="q")
    v = keras.Input((5, 6), batch_size=1, name="v")
    return keras.Model([q, v], layer([q, v]), name="m")


def _mha():
    x = keras.Input((4, 6), batch_size=1, name="x")
    return keras.Model(x, L.MultiHeadAttention(2, 3)(x, x), name="m")


def _gqa():
    x = keras.Input((4, 8), batch_size=1, name="x")
    return keras.Model(x, L.GroupQueryAttention(4, 4, 2)(x, x), name="m")


def _spectral():
    return seq((6,), L.SpectralNormalization(L.Dense(4)))


def _normalization():
    layer = L.Normalization(mean=[0.5, -0.2, 0.1], variance=[2.0, 0.5, 1.5])
    return seq((5, 5, 3), layer)


def _discretization():
    return seq((6,), L.Dense(6), L.Discretization(bin_boundaries=[-0.5, 0.0, 0.5]))


C2 = lambda: L.Conv2D(3, 3, padding="same")  # noqa: E731  a trained-looking input for the layer after it
C1 = lambda: L.Conv1D(3, 3, padding="same")  # noqa: E731

# class name -> (family, builder)
MODELS: dict[str, tuple[str, Callable[[], keras.Model]]] = {
    # core
    "Dense": ("core", lambda: seq((6,), L.Dense(4))),
    "EinsumDense": ("core", lambda: seq((4, 6), L.EinsumDense("abc,cd->abd", output_shape=(4, 3), bias_axes="d"))),
    "Activation": ("core", lambda: seq((6,), L.Dense(4), L.Activation("tanh"))),
    "Identity": ("core", lambda: seq((6,), L.Dense(4), L.Identity())),
    "Lambda": ("core", lambda: seq((6,), L.Dense(4), L.Lambda(lambda t: t * 2.0 + 1.0))),
    "Embedding": ("core", lambda: seq((5,), L.Embedding(10, 4), dtype="int32")),
    "Masking": ("core", lambda: seq((5, 3), L.Masking(mask_value=0.5))),
    # convolution
    "Conv1D": ("conv", lambda: seq((8, 3), L.Conv1D(4, 3))),
    "Conv2D": ("conv", lambda: seq((8, 8, 3), L.Conv2D(4, 3))),
    "Conv3D": ("conv", lambda: seq((6, 6, 6, 2), L.Conv3D(3, 3))),
    "Conv1DTranspose": ("conv", lambda: seq((6, 3), L.Conv1DTranspose(4, 3, strides=2))),
    "Conv2DTranspose": ("conv", lambda: seq((5, 5, 3), L.Conv2DTranspose(4, 3, strides=2))),
    "Conv3DTranspose": ("conv", lambda: seq((4, 4, 4, 2), L.Conv3DTranspose(3, 3, strides=2))),
    "DepthwiseConv1D": ("conv", lambda: seq((8, 3), L.DepthwiseConv1D(3))),
    "DepthwiseConv2D": ("conv", lambda: seq((8, 8, 3), L.DepthwiseConv2D(3))),
    "SeparableConv1D": ("conv", lambda: seq((8, 3), L.SeparableConv1D(4, 3))),
    "SeparableConv2D": ("conv", lambda: seq((8, 8, 3), L.SeparableConv2D(4, 3))),
    # pooling
    "AveragePooling1D": ("pooling", lambda: seq((8, 3), C1(), L.AveragePooling1D(2))),
    "AveragePooling2D": ("pooling", lambda: seq((8, 8, 3), C2(), L.AveragePooling2D(2))),
    "AveragePooling3D": ("pooling", lambda: seq((4, 4, 4, 2), L.AveragePooling3D(2))),
    "MaxPooling1D": ("pooling", lambda: seq((8, 3), C1(), L.MaxPooling1D(2))),
    "MaxPooling2D": ("pooling", lambda: seq((8, 8, 3), C2(), L.MaxPooling2D(2))),
    "MaxPooling3D": ("pooling", lambda: seq((4, 4, 4, 2), L.MaxPooling3D(2))),
    "GlobalAveragePooling1D": ("pooling", lambda: seq((8, 3), C1(), L.GlobalAveragePooling1D())),
    "GlobalAveragePooling2D": ("pooling", lambda: seq((8, 8, 3), C2(), L.GlobalAveragePooling2D())),
    "GlobalAveragePooling3D": ("pooling", lambda: seq((4, 4, 4, 2), L.GlobalAveragePooling3D())),
    "GlobalMaxPooling1D": ("pooling", lambda: seq((8, 3), C1(), L.GlobalMaxPooling1D())),
    "GlobalMaxPooling2D": ("pooling", lambda: seq((8, 8, 3), C2(), L.GlobalMaxPooling2D())),
    "GlobalMaxPooling3D": ("pooling", lambda: seq((4, 4, 4, 2), L.GlobalMaxPooling3D())),
    "AdaptiveAveragePooling1D": ("pooling", lambda: seq((8, 3), C1(), L.AdaptiveAveragePooling1D(4))),
    "AdaptiveAveragePooling2D": ("pooling", lambda: seq((8, 8, 3), C2(), L.AdaptiveAveragePooling2D(4))),
    "AdaptiveAveragePooling3D": ("pooling", lambda: seq((4, 4, 4, 2), L.AdaptiveAveragePooling3D(2))),
    "AdaptiveMaxPooling1D": ("pooling", lambda: seq((8, 3), C1(), L.AdaptiveMaxPooling1D(4))),
    "AdaptiveMaxPooling2D": ("pooling", lambda: seq((8, 8, 3), C2(), L.AdaptiveMaxPooling2D(4))),
    "AdaptiveMaxPooling3D": ("pooling", lambda: seq((4, 4, 4, 2), L.AdaptiveMaxPooling3D(2))),
    # activations
    "ReLU": ("activation", lambda: seq((6, 6, 3), C2(), L.ReLU(max_value=1.0))),
    "LeakyReLU": ("activation", lambda: seq((6, 6, 3), C2(), L.LeakyReLU(0.2))),
    "PReLU": ("activation", lambda: seq((6, 6, 3), C2(), L.PReLU(shared_axes=[1, 2]))),
    "ELU": ("activation", lambda: seq((6, 6, 3), C2(), L.ELU())),
    "Softmax": ("activation", lambda: seq((6,), L.Dense(4), L.Softmax())),
    # merging
    "Add": ("merging", lambda: two((6, 6, 3), L.Add())),
    "Subtract": ("merging", lambda: two((6, 6, 3), L.Subtract())),
    "Multiply": ("merging", lambda: two((6, 6, 3), L.Multiply())),
    "Average": ("merging", lambda: two((6, 6, 3), L.Average())),
    "Maximum": ("merging", lambda: two((6, 6, 3), L.Maximum())),
    "Minimum": ("merging", lambda: two((6, 6, 3), L.Minimum())),
    "Concatenate": ("merging", lambda: two((6, 6, 3), L.Concatenate(), (6, 6, 2))),
    "Dot": ("merging", _dot),
    # normalization
    "BatchNormalization": ("normalization", lambda: seq((6, 6, 3), C2(), L.BatchNormalization())),
    "LayerNormalization": ("normalization", lambda: seq((4, 6), L.Dense(6), L.LayerNormalization())),
    "GroupNormalization": ("normalization", lambda: seq((6, 6, 4), L.Conv2D(4, 3), L.GroupNormalization(2))),
    "UnitNormalization": ("normalization", lambda: seq((6,), L.Dense(4), L.UnitNormalization())),
    "RMSNormalization": ("normalization", lambda: seq((4, 6), L.Dense(6), L.RMSNormalization())),
    "SpectralNormalization": ("normalization", _spectral),
    # regularization (inference: identity or a scale)
    "Dropout": ("regularization", lambda: seq((6,), L.Dense(4), L.Dropout(0.5))),
    "AlphaDropout": ("regularization", lambda: seq((6,), L.Dense(4), L.AlphaDropout(0.5))),
    "GaussianDropout": ("regularization", lambda: seq((6,), L.Dense(4), L.GaussianDropout(0.5))),
    "GaussianNoise": ("regularization", lambda: seq((6,), L.Dense(4), L.GaussianNoise(0.5))),
    "SpatialDropout1D": ("regularization", lambda: seq((8, 3), C1(), L.SpatialDropout1D(0.5))),
    "SpatialDropout2D": ("regularization", lambda: seq((6, 6, 3), C2(), L.SpatialDropout2D(0.5))),
    "SpatialDropout3D": ("regularization", lambda: seq((4, 4, 4, 2), L.Conv3D(2, 3, padding="same"),
                                                       L.SpatialDropout3D(0.5))),
    "ActivityRegularization": ("regularization", lambda: seq((6,), L.Dense(4), L.ActivityRegularization(0.1))),
    # reshaping
    "Reshape": ("reshaping", lambda: seq((6, 6, 3), C2(), L.Reshape((9, 12)))),
    "Flatten": ("reshaping", lambda: seq((6, 6, 3), C2(), L.Flatten())),
    "Permute": ("reshaping", lambda: seq((4, 6, 3), L.Conv2D(3, 1), L.Permute((2, 1, 3)))),
    "RepeatVector": ("reshaping", lambda: seq((6,), L.Dense(4), L.RepeatVector(3))),
    "Cropping1D": ("reshaping", lambda: seq((8, 3), C1(), L.Cropping1D((1, 2)))),
    "Cropping2D": ("reshaping", lambda: seq((8, 8, 3), C2(), L.Cropping2D(((1, 2), (2, 1))))),
    "Cropping3D": ("reshaping", lambda: seq((6, 6, 6, 2), L.Cropping3D(1))),
    "ZeroPadding1D": ("reshaping", lambda: seq((8, 3), C1(), L.ZeroPadding1D((1, 2)))),
    "ZeroPadding2D": ("reshaping", lambda: seq((6, 6, 3), C2(), L.ZeroPadding2D(((1, 2), (2, 1))))),
    "ZeroPadding3D": ("reshaping", lambda: seq((4, 4, 4, 2), L.ZeroPadding3D(1))),
    "UpSampling1D": ("reshaping", lambda: seq((6, 3), C1(), L.UpSampling1D(2))),
    "UpSampling2D": ("reshaping", lambda: seq((5, 5, 3), C2(), L.UpSampling2D(2))),
    "UpSampling3D": ("reshaping", lambda: seq((3, 3, 3, 2), L.UpSampling3D(2))),
    # attention
    "Attention": ("attention", lambda: _attention(L.Attention(use_scale=True))),
    "AdditiveAttention": ("attention", lambda: _attention(L.AdditiveAttention())),
    "MultiHeadAttention": ("attention", _mha),
    "GroupQueryAttention": ("attention", _gqa),
    # recurrent
    "SimpleRNN": ("recurrent", lambda: seq((5, 3), L.SimpleRNN(4))),
    "LSTM": ("recurrent", lambda: seq((5, 3), L.LSTM(4))),
    "GRU": ("recurrent", lambda: seq((5, 3), L.GRU(4))),
    "RNN": ("recurrent", lambda: seq((5, 3), L.RNN(L.SimpleRNNCell(4)))),
    "Bidirectional": ("recurrent", lambda: seq((5, 3), L.Bidirectional(L.LSTM(3)))),
    "ConvLSTM1D": ("recurrent", lambda: seq((3, 6, 2), L.ConvLSTM1D(2, 3))),
    "ConvLSTM2D": ("recurrent", lambda: seq((3, 5, 5, 2), L.ConvLSTM2D(2, 3))),
    "ConvLSTM3D": ("recurrent", lambda: seq((2, 4, 4, 4, 1), L.ConvLSTM3D(2, 3))),
    "TimeDistributed": ("recurrent", lambda: seq((3, 6, 6, 2), L.TimeDistributed(L.Conv2D(3, 3)))),
    # preprocessing with arithmetic at inference
    "Rescaling": ("preprocessing", lambda: seq((6, 6, 3), L.Rescaling(1 / 127.5, offset=-1.0))),
    "Normalization": ("preprocessing", _normalization),
    "Resizing": ("preprocessing", lambda: seq((6, 6, 3), C2(), L.Resizing(9, 9))),
    "CenterCrop": ("preprocessing", lambda: seq((8, 8, 3), C2(), L.CenterCrop(5, 5))),
    "Discretization": ("preprocessing", _discretization),
    "CategoryEncoding": ("preprocessing", lambda: seq((3,), L.CategoryEncoding(10, output_mode="multi_hot"),
                                                      dtype="int32")),
}
