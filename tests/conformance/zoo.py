"""One tiny model per model kind and per layer family, with trained-looking weights.

Each builder returns a fresh model; ``ROWS`` lists them in the order the matrix shows.
Weights: kernels keep Keras' random init; every bias, BatchNorm statistic,
normalization scale and offset that Keras initializes to a constant gets random
values (variances positive), so no output is trivially zero or uniform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from kfreeze.keras_io import keras

L = keras.layers


def randomize(model: keras.Model, seed: int = 0) -> keras.Model:
    rng = np.random.default_rng(seed)
    adapted = {id(v) for layer in model._flatten_layers() if isinstance(layer, L.Normalization) for v in layer.weights}
    for var in model.weights:
        if id(var) in adapted:  # statistics from adapt(): the layer caches them, keep them as they are
            continue
        value = np.asarray(var.numpy())
        if not np.issubdtype(value.dtype, np.floating) or value.size == 0:
            continue
        path = var.path.lower()
        if "variance" in path:
            value = rng.uniform(0.5, 2.0, value.shape)
        elif np.all(value == value.flat[0]):  # a constant initializer: bias, gamma, beta, mean, alpha
            value = value + rng.normal(0, 0.3, value.shape)
        var.assign(value.astype(var.dtype))
    return model


def seq_input():
    return keras.Sequential([keras.Input((8,), name="x"), L.Dense(6, activation="tanh", name="d1"),
                             L.BatchNormalization(name="bn"), L.Dense(3, name="out")], name="seq_input")


def seq_build():
    m = keras.Sequential([L.Dense(6, activation="relu", name="d1"), L.Dense(3, name="out")], name="seq_build")
    m.build((None, 8))
    return m


def seq_called():
    m = keras.Sequential([L.Conv2D(4, 3, name="c"), L.BatchNormalization(name="bn"), L.ReLU(name="r"),
                          L.Flatten(name="f"), L.Dense(3, name="out")], name="seq_called")
    m(np.zeros((1, 6, 6, 2), np.float32))
    return m


def functional():
    inp = keras.Input((8, 8, 2), name="image")
    x = L.Conv2D(4, 3, padding="same", name="conv")(inp)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Flatten(name="flat")(x)
    return keras.Model(inp, L.Dense(3, name="logits")(x), name="functional")


def nested_sequential():
    inner = keras.Sequential([L.Dense(6, activation="relu", name="a"), L.BatchNormalization(name="bn")], name="block")
    inp = keras.Input((5,), name="x")
    return keras.Model(inp, L.Dense(2, name="out")(inner(inp)), name="nested_seq")


def nested_functional():
    i = keras.Input((4, 4, 3))
    inner = keras.Model(i, L.Conv2D(3, 1, activation="relu", name="c")(i), name="inner")
    inp = keras.Input((4, 4, 3), name="img")
    x = inner(inner(inp))  # the same nested model twice
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(2, name="out")(x), name="nested_fn")


def shared_layers():
    a, b = keras.Input((6,), name="a"), keras.Input((6,), name="b")
    shared = L.Dense(4, activation="tanh", name="shared")
    x = L.Concatenate(name="cat")([shared(a), shared(b)])
    return keras.Model([a, b], L.Dense(2, name="out")(x), name="shared")


def multi_io():
    img, vec = keras.Input((6, 6, 2), name="img"), keras.Input((5,), name="vec")
    x = L.GlobalAveragePooling2D(name="gap")(L.Conv2D(3, 3, name="c")(img))
    z = L.Concatenate(name="cat")([x, L.Dense(4, activation="relu", name="d")(vec)])
    return keras.Model([img, vec], [L.Dense(3, name="cls")(z), L.Dense(1, name="reg")(z)], name="multi_io")


def dict_inputs():
    ins = {"age": keras.Input((1,), name="age"), "feats": keras.Input((4,), name="feats")}
    x = L.Concatenate(name="cat")([ins["feats"], ins["age"]])
    return keras.Model(ins, L.Dense(2, name="out")(x), name="dict_in")


def embedding_int():
    inp = keras.Input((6,), dtype="int32", name="tokens")
    x = L.Embedding(10, 4, name="emb")(inp)
    x = L.GlobalAveragePooling1D(name="gap")(x)
    return keras.Model(inp, L.Dense(3, name="out")(x), name="emb")


def variable_length():
    inp = keras.Input((None, 3), name="seq")
    x = L.Conv1D(4, 3, padding="same", name="c")(inp)
    x = L.GlobalMaxPooling1D(name="gmp")(x)
    return keras.Model(inp, L.Dense(2, name="out")(x), name="varlen")


@keras.saving.register_keras_serializable(package="conformance")
class SubNet(keras.Model):
    """A subclassed model: Dense -> BN -> Dense, with a residual from the input."""

    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.d1 = L.Dense(units, activation="relu", name="d1")
        self.bn = L.BatchNormalization(name="bn")
        self.d2 = L.Dense(3, name="d2")
        self.shortcut = L.Dense(3, use_bias=False, name="shortcut")

    def call(self, x, training=False):
        return self.d2(self.bn(self.d1(x), training=training)) + self.shortcut(x)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def subclassed():
    m = SubNet(4, name="subnet")
    m(np.zeros((1, 5), np.float32))  # built by a call: keras records the input shape
    return m


# -- recurrent -------------------------------------------------------------------

def rnn(layer, shape=(5, 3), name="rnn", head=True):
    inp = keras.Input(shape, name="seq")
    x = layer(inp)
    out = L.Dense(2, name="out")(x) if head else x
    return keras.Model(inp, out, name=name)


def simple_rnn():
    return rnn(L.SimpleRNN(4, name="rnn"), name="simple_rnn")


def lstm_seq():
    return rnn(L.LSTM(4, return_sequences=True, name="lstm"), name="lstm_seq")


def lstm_dropout():
    return rnn(L.LSTM(4, dropout=0.3, recurrent_dropout=0.3, name="lstm"), name="lstm_dropout")


def stacked_cells():
    return rnn(L.RNN([L.LSTMCell(4), L.GRUCell(3)], name="stack"), name="stacked")


def unrolled():
    return rnn(L.SimpleRNN(4, unroll=True, name="rnn"), name="unrolled")


def gru():
    return rnn(L.GRU(4, name="gru"), name="gru")


def gru_v1():
    return rnn(L.GRU(4, reset_after=False, name="gru"), name="gru_v1")


def bidirectional():
    return rnn(L.Bidirectional(L.LSTM(3, return_sequences=True), name="bi"), name="bidir")


def lstm_state():
    inp = keras.Input((5, 3), name="seq")
    seq, h, c = L.LSTM(4, return_sequences=True, return_state=True, name="lstm")(inp)
    return keras.Model(inp, [L.Dense(2, name="out")(seq), L.Identity(name="h")(h), L.Identity(name="c")(c)],
                       name="lstm_state")


def initial_state():
    inp, h0 = keras.Input((5, 3), name="seq"), keras.Input((4,), name="h0")
    x = L.GRU(4, name="gru")(inp, initial_state=[h0])
    return keras.Model([inp, h0], L.Dense(2, name="out")(x), name="init_state")


def stateful():
    inp = keras.Input((5, 3), batch_size=2, name="seq")
    x = L.GRU(4, stateful=True, name="gru")(inp)
    return keras.Model(inp, L.Dense(2, name="out")(x), name="stateful")


def masking():
    inp = keras.Input((5, 3), name="seq")
    x = L.Masking(mask_value=0.5, name="mask")(inp)
    return keras.Model(inp, L.Dense(2, name="out")(L.LSTM(4, name="lstm")(x)), name="masking")


def mask_zero():
    inp = keras.Input((6,), dtype="int32", name="tokens")
    x = L.Embedding(10, 4, mask_zero=True, name="emb")(inp)
    return keras.Model(inp, L.Dense(2, name="out")(L.GRU(4, name="gru")(x)), name="mask_zero")


def conv_lstm():
    return rnn(L.ConvLSTM2D(3, 3, padding="same", name="clstm"), shape=(3, 5, 5, 2), name="conv_lstm", head=False)


# -- layer families ----------------------------------------------------------------

def seq_model(name, shape, *layers, dtype="float32"):
    inp = keras.Input(shape, name="x", dtype=dtype)
    x = inp
    for layer in layers:
        x = layer(x)
    return keras.Model(inp, x, name=name)


def mha():
    inp = keras.Input((5, 8), name="x")
    x = L.MultiHeadAttention(2, 4, name="mha")(inp, inp)
    return keras.Model(inp, L.Dense(3, name="out")(x), name="mha")


def attention():
    q, v = keras.Input((4, 6), name="q"), keras.Input((5, 6), name="v")
    x = L.Attention(use_scale=True, name="att")([q, v])
    return keras.Model([q, v], L.Dense(2, name="out")(x), name="attention")


def layer_norm():
    return seq_model("layer_norm", (4, 6), L.Dense(6, name="d"), L.LayerNormalization(name="ln"), L.Dense(2, name="out"))


def group_norm():
    return seq_model("group_norm", (6, 6, 4), L.Conv2D(4, 3, name="c"), L.GroupNormalization(2, name="gn"),
                     L.Conv2D(2, 1, name="out"))


def prelu():
    return seq_model("prelu", (6, 6, 3), L.Conv2D(4, 3, name="c"), L.PReLU(shared_axes=[1, 2], name="p"),
                     L.Conv2D(2, 1, name="out"))


def time_distributed():
    return seq_model("time_dist", (3, 6, 6, 2), L.TimeDistributed(L.Conv2D(3, 3), name="td"),
                     L.TimeDistributed(L.Flatten(), name="tf"), L.TimeDistributed(L.Dense(2), name="out"))


def conv1d():
    return seq_model("conv1d", (8, 3), L.Conv1D(4, 3, name="c"), L.BatchNormalization(name="bn"),
                     L.Conv1D(2, 3, dilation_rate=2, name="out"))


def conv3d():
    return seq_model("conv3d", (4, 5, 5, 2), L.Conv3D(3, 3, padding="same", name="c"),
                     L.BatchNormalization(name="bn"), L.Conv3D(2, 1, name="out"))


def conv_transpose():
    return seq_model("conv2d_t", (4, 4, 3), L.Conv2DTranspose(4, 3, strides=2, padding="same", name="ct"),
                     L.BatchNormalization(name="bn"), L.Conv2DTranspose(2, 3, name="out"))


def conv1d_transpose():
    return seq_model("conv1d_t", (5, 3), L.Conv1DTranspose(4, 3, strides=2, name="out"))


def conv3d_transpose():
    return seq_model("conv3d_t", (3, 3, 3, 2), L.Conv3DTranspose(2, 2, strides=2, name="out"))


def upsampling():
    return seq_model("upsampling", (4, 4, 3), L.UpSampling2D(2, name="up"),
                     L.UpSampling2D(2, interpolation="bilinear", name="up_bl"), L.Conv2D(2, 3, name="out"))


def upsampling_1d_3d():
    inp1, inp3 = keras.Input((4, 3), name="a"), keras.Input((2, 3, 3, 2), name="b")
    x = L.Conv1D(2, 1, name="c1")(L.UpSampling1D(2, name="up1")(inp1))
    y = L.Conv3D(2, 1, name="c3")(L.UpSampling3D(2, name="up3")(inp3))
    return keras.Model([inp1, inp3], [x, y], name="upsampling_13")


def global_pooling():
    a, b, c = keras.Input((5, 3), name="a"), keras.Input((4, 4, 3), name="b"), keras.Input((3, 3, 3, 3), name="c")
    feats = [L.GlobalAveragePooling1D()(a), L.GlobalMaxPooling1D()(a), L.GlobalAveragePooling2D()(b),
             L.GlobalMaxPooling2D()(b), L.GlobalAveragePooling3D()(c), L.GlobalMaxPooling3D()(c)]
    return keras.Model([a, b, c], L.Dense(2, name="out")(L.Concatenate(name="cat")(feats)), name="global_pool")


def preprocessing():
    norm = L.Normalization(name="norm")
    norm.adapt(np.random.default_rng(1).normal(0.1, 0.5, (20, 8, 8, 3)).astype("float32"))
    return seq_model("preprocessing", (8, 8, 3), L.Rescaling(2.0, offset=-1.0, name="rescale"), norm,
                     L.Resizing(6, 6, name="resize"), L.CenterCrop(4, 4, name="crop"), L.Conv2D(2, 3, name="out"))


def augmentation():
    return seq_model("augmentation", (8, 8, 3), L.RandomFlip(name="flip"), L.RandomRotation(0.2, name="rot"),
                     L.RandomZoom(0.2, name="zoom"), L.RandomTranslation(0.1, 0.1, name="shift"),
                     L.RandomContrast(0.3, name="contrast"), L.RandomBrightness(0.2, name="bright"),
                     L.GaussianNoise(0.1, name="noise"), L.Conv2D(3, 3, name="c"),
                     L.SpatialDropout2D(0.3, name="sdrop"), L.GaussianDropout(0.3, name="gdrop"),
                     L.AlphaDropout(0.3, name="adrop"), L.Flatten(name="f"), L.Dropout(0.5, name="drop"),
                     L.Dense(2, name="out"))


@keras.saving.register_keras_serializable(package="conformance")
class PairNet(keras.Model):
    """A subclassed model called with a list of two inputs."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.a = L.Dense(3, name="a")
        self.b = L.Dense(3, name="b")

    def call(self, inputs):
        x, y = inputs
        return self.a(x) * self.b(y)


def subclassed_pair():
    m = PairNet(name="pairnet")
    m([np.zeros((1, 5), np.float32), np.zeros((1, 2), np.float32)])
    return m


def lstm_varlen():
    return rnn(L.LSTM(4, name="lstm"), shape=(None, 3), name="lstm_varlen")



@dataclass(frozen=True)
class Row:
    id: str
    family: str            # "kind", "recurrent" or "layer"
    title: str             # what the matrix shows
    build: Callable
    params: dict = field(default_factory=dict)
    suffix: str = ".keras"


ROWS = [
    Row("seq_input", "kind", "Sequential with Input", seq_input),
    Row("seq_input_h5", "kind", "Sequential with Input, saved as .h5", seq_input, suffix=".h5"),
    Row("seq_build", "kind", "Sequential built with build()", seq_build),
    Row("seq_called", "kind", "Sequential built by a call", seq_called),
    Row("functional", "kind", "Functional", functional),
    Row("nested_sequential", "kind", "Sequential used as a layer", nested_sequential),
    Row("nested_functional", "kind", "Functional used as a layer, twice", nested_functional),
    Row("shared_layers", "kind", "Shared layer on two inputs", shared_layers),
    Row("multi_io", "kind", "Two inputs, two outputs", multi_io),
    Row("dict_inputs", "kind", "Dict inputs", dict_inputs),
    Row("embedding_int", "kind", "Integer input (Embedding)", embedding_int),
    Row("variable_length", "kind", "None time dimension, fixed by input_shape", variable_length,
        {"input_shape": [None, 7, 3]}),
    Row("subclassed", "kind", "Subclassed model in custom_objects", subclassed,
        {"custom_objects": ["tests.conformance.zoo:SubNet"]}),
    Row("subclassed_pair", "kind", "Subclassed model called on a list of two inputs", subclassed_pair,
        {"custom_objects": ["tests.conformance.zoo:PairNet"]}),
    Row("simple_rnn", "recurrent", "SimpleRNN", simple_rnn),
    Row("lstm_seq", "recurrent", "LSTM, return_sequences", lstm_seq),
    Row("lstm_varlen", "recurrent", "LSTM, None time dimension, fixed by input_shape", lstm_varlen,
        {"input_shape": [None, 6, 3]}),
    Row("lstm_dropout", "recurrent", "LSTM with dropout and recurrent_dropout", lstm_dropout),
    Row("stacked_cells", "recurrent", "RNN of stacked LSTMCell + GRUCell", stacked_cells),
    Row("unrolled", "recurrent", "SimpleRNN, unroll=True", unrolled),
    Row("gru", "recurrent", "GRU (reset_after)", gru),
    Row("gru_h5", "recurrent", "GRU saved as Keras 3 .h5", gru, suffix=".h5"),
    Row("gru_v1", "recurrent", "GRU (reset_after=False)", gru_v1),
    Row("bidirectional", "recurrent", "Bidirectional LSTM", bidirectional),
    Row("lstm_state", "recurrent", "LSTM, return_state", lstm_state),
    Row("initial_state", "recurrent", "GRU, initial state as an input", initial_state),
    Row("stateful", "recurrent", "GRU, stateful (batch 2)", stateful),
    Row("masking", "recurrent", "Masking + LSTM", masking),
    Row("mask_zero", "recurrent", "Embedding(mask_zero) + GRU", mask_zero),
    Row("conv_lstm", "recurrent", "ConvLSTM2D", conv_lstm),
    Row("mha", "layer", "MultiHeadAttention", mha),
    Row("attention", "layer", "Attention", attention),
    Row("layer_norm", "layer", "LayerNormalization", layer_norm),
    Row("group_norm", "layer", "GroupNormalization", group_norm),
    Row("prelu", "layer", "PReLU", prelu),
    Row("time_distributed", "layer", "TimeDistributed", time_distributed),
    Row("conv1d", "layer", "Conv1D (dilated) + BatchNorm", conv1d),
    Row("conv3d", "layer", "Conv3D + BatchNorm", conv3d),
    Row("conv2d_transpose", "layer", "Conv2DTranspose + BatchNorm", conv_transpose),
    Row("conv1d_transpose", "layer", "Conv1DTranspose", conv1d_transpose),
    Row("conv3d_transpose", "layer", "Conv3DTranspose", conv3d_transpose),
    Row("upsampling", "layer", "UpSampling2D (nearest, bilinear)", upsampling),
    Row("upsampling_1d_3d", "layer", "UpSampling1D, UpSampling3D", upsampling_1d_3d),
    Row("global_pooling", "layer", "Global pooling 1D/2D/3D", global_pooling),
    Row("preprocessing", "layer", "Rescaling, Normalization, Resizing, CenterCrop", preprocessing),
    Row("augmentation", "layer", "Random augmentation and dropout layers", augmentation),
]


def build(row: Row) -> keras.Model:
    keras.utils.set_random_seed(0)
    return randomize(row.build())

