"""onnx/tensorflow-onnx tests/keras2onnx_unit_tests/test_layers.py, layer by layer, through
``kfreeze run model.keras``.

keras2onnx's tests build a small Keras model per layer (or layer option), convert it and compare
the runtime's answer with ``model.predict``. Here the cases sit side by side in a few functional
models (``KerasBatch``: one ``kfreeze run`` a model), and each case is judged the same way: the
optimized graph's answer for its output against Keras's, with keras2onnx's tolerance (rtol 1e-3,
atol 1e-5 for most layers; 1e-3 for RNNs)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.keras_io import keras
from tests.peers.harness import KerasBatch

L = keras.layers

CORE = KerasBatch(seed=1)
CORE.add("dense", (5,), lambda x: L.Dense(4, activation="relu")(x))
CORE.add("dense_no_bias", (5,), lambda x: L.Dense(4, use_bias=False)(x))
CORE.add("dense_3d", (3, 5), lambda x: L.Dense(4)(x))
CORE.add("conv1d", (10, 3), lambda x: L.Conv1D(4, 3, padding="same", activation="tanh")(x))
CORE.add("conv1d_dilated", (12, 3), lambda x: L.Conv1D(4, 3, dilation_rate=2)(x))
CORE.add("conv2d", (8, 8, 3), lambda x: L.Conv2D(4, 3, strides=2, padding="same")(x))
CORE.add("conv2d_dilated", (10, 10, 2), lambda x: L.Conv2D(3, 3, dilation_rate=2)(x))
CORE.add("conv3d", (6, 6, 6, 2), lambda x: L.Conv3D(3, 3)(x))
CORE.add("separable_conv2d", (8, 8, 3), lambda x: L.SeparableConv2D(4, 3, depth_multiplier=2)(x))
CORE.add("depthwise_conv2d", (8, 8, 3), lambda x: L.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(x))
CORE.add("conv2d_transpose", (5, 5, 3), lambda x: L.Conv2DTranspose(2, 3, strides=2, padding="same")(x))
CORE.add("conv1d_transpose", (6, 3), lambda x: L.Conv1DTranspose(2, 3, strides=2)(x))
CORE.add("batch_norm", (6, 6, 3), lambda x: L.BatchNormalization()(L.Conv2D(3, 3)(x)))
CORE.add("batch_norm_dense", (7,), lambda x: L.BatchNormalization(center=False)(x))
CORE.add("layer_norm", (4, 6), lambda x: L.LayerNormalization()(x))
CORE.add("max_pool2d", (8, 8, 2), lambda x: L.MaxPooling2D(2)(x))
CORE.add("avg_pool2d", (8, 8, 2), lambda x: L.AveragePooling2D(3, strides=2, padding="same")(x))
CORE.add("max_pool1d", (10, 2), lambda x: L.MaxPooling1D(2)(x))
CORE.add("avg_pool3d", (4, 4, 4, 2), lambda x: L.AveragePooling3D(2)(x))
CORE.add("global_max_pool2d", (5, 5, 3), lambda x: L.GlobalMaxPooling2D()(x))
CORE.add("global_avg_pool1d", (5, 3), lambda x: L.GlobalAveragePooling1D()(x))
CORE.add("upsampling2d", (3, 3, 2), lambda x: L.UpSampling2D(2)(x))
CORE.add("upsampling2d_bilinear", (3, 3, 2), lambda x: L.UpSampling2D(2, interpolation="bilinear")(x))
CORE.add("upsampling1d", (3, 2), lambda x: L.UpSampling1D(2)(x))
CORE.add("zero_padding2d", (4, 4, 2), lambda x: L.ZeroPadding2D(((1, 2), (0, 1)))(x))
CORE.add("cropping2d", (6, 6, 2), lambda x: L.Cropping2D(((1, 1), (2, 0)))(x))
CORE.add("cropping1d", (6, 2), lambda x: L.Cropping1D((1, 2))(x))
CORE.add("flatten", (3, 4, 2), lambda x: L.Flatten()(x))
CORE.add("reshape", (12,), lambda x: L.Reshape((3, 4))(x))
CORE.add("permute", (3, 4, 2), lambda x: L.Permute((3, 1, 2))(x))
CORE.add("repeat_vector", (4,), lambda x: L.RepeatVector(3)(x))
CORE.add("leaky_relu", (6,), lambda x: L.LeakyReLU(negative_slope=0.2)(x), low=-1)
CORE.add("prelu", (4, 3), lambda x: L.PReLU()(x), low=-1)
CORE.add("elu", (6,), lambda x: L.ELU(alpha=0.5)(x), low=-1)
CORE.add("relu6", (6,), lambda x: L.ReLU(max_value=6.0)(x), low=-8, high=8)
CORE.add("softmax", (6,), lambda x: L.Softmax()(x))
CORE.add("activations", (6,), lambda x: L.Activation("hard_sigmoid")(L.Activation("selu")(
    L.Activation("softplus")(L.Activation("softsign")(x)))), low=-2, high=2)
CORE.add("swish_gelu", (6,), lambda x: L.Activation("gelu")(L.Activation("swish")(x)), low=-2, high=2)
CORE.add("time_distributed", (3, 5), lambda x: L.TimeDistributed(L.Dense(2))(x))
CORE.add("merge", (4,), lambda x: L.Concatenate()([L.Add()([x, x]), L.Subtract()([x, L.Dense(4)(x)]),
                                                    L.Multiply()([x, x]), L.Average()([x, x]),
                                                    L.Maximum()([x, L.Dense(4)(x)]), L.Minimum()([x, x])]))
CORE.add("dot", (4,), lambda x: L.Dot(axes=1)([x, L.Dense(4)(x)]))
CORE.add("dropout_noise", (6,), lambda x: L.GaussianNoise(0.5)(L.SpatialDropout1D(0.3)(L.Dropout(0.5)(
    L.Reshape((2, 3))(x)))))
CORE.add("avg_pool1d", (8, 3), lambda x: L.AveragePooling1D(2, padding="same")(x))
CORE.add("global_avg_pool3d", (3, 3, 3, 2), lambda x: L.GlobalAveragePooling3D()(x))
CORE.add("conv3d_transpose", (3, 3, 3, 2), lambda x: L.Conv3DTranspose(2, 2, strides=2)(x))
CORE.add("unit_normalization", (6,), lambda x: L.UnitNormalization()(x))
CORE.add("group_normalization", (4, 4, 4), lambda x: L.GroupNormalization(groups=2)(x))
CORE.add("resizing", (4, 6, 2), lambda x: L.Resizing(8, 3)(x))
CORE.add("attention", (3, 4), lambda x: L.Attention()([x, L.Dense(4)(x)]))
CORE.add("multi_head_attention", (3, 4), lambda x: L.MultiHeadAttention(2, 3)(x, x))
CORE.add("spatial_dropout2d", (4, 4, 2), lambda x: L.SpatialDropout2D(0.5)(L.ActivityRegularization(0.1)(x)))
CORE.add("embedding_like_dense", (3, 4), lambda x: L.Dense(5, activation="sigmoid")(L.Flatten()(x)))


RNN = KerasBatch(seed=2)
RNN.add("simple_rnn", (5, 3), lambda x: L.SimpleRNN(4)(x))
RNN.add("lstm", (5, 3), lambda x: L.LSTM(4, return_sequences=True)(x))
RNN.add("gru", (5, 3), lambda x: L.GRU(4, reset_after=True)(x))
RNN.add("gru_v1", (5, 3), lambda x: L.GRU(4, reset_after=False)(x))
RNN.add("bidirectional_lstm", (5, 3), lambda x: L.Bidirectional(L.LSTM(3))(x))
RNN.add("masking_lstm", (5, 3), lambda x: L.LSTM(3)(L.Masking(0.0)(x)))
RNN.add("conv_lstm2d", (3, 5, 5, 2), lambda x: L.ConvLSTM2D(2, 3, padding="same")(x))
RNN.add("embedding", (6,), lambda x: L.Embedding(10, 4)(x), dtype="int32", low=0, high=10)


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    return CORE.go(tmp_path_factory.mktemp("core"))


@pytest.fixture(scope="module")
def rnn(tmp_path_factory):
    return RNN.go(tmp_path_factory.mktemp("rnn"))


def test_core_layers_run_and_verify(core):
    assert core.run.ok, core.run.output


@pytest.mark.parametrize("case", list(CORE.cases))
def test_core_layer(core, case):
    np.testing.assert_allclose(core.output(case), core.expected(case), rtol=1e-3, atol=1e-5)
    assert not {"RandomUniform", "RandomStandardNormal", "VariableV2", "VarHandleOp"} & set(core.ops(case))


def test_recurrent_layers_run_and_verify(rnn):
    assert rnn.run.ok, rnn.run.output


@pytest.mark.parametrize("case", list(RNN.cases))
def test_recurrent_layer(rnn, case):
    np.testing.assert_allclose(rnn.output(case), rnn.expected(case), rtol=1e-3, atol=1e-3)


@pytest.fixture(scope="module")
def lambda_run(tmp_path_factory):
    from tests.peers.harness import run_keras

    inp = keras.Input((4,), name="x")
    model = keras.Model(inp, L.Lambda(lambda t: t * 2.0 + 1.0, name="lam")(inp))
    return run_keras(tmp_path_factory.mktemp("lambda"), model)


def test_lambda_is_refused_without_trust_code(lambda_run):
    """keras2onnx's test_lambda: a Lambda layer. kfreeze runs no Python from a model file unless
    told to trust it: one error line naming the Lambda layer and trust_code."""
    r = lambda_run
    assert r.exit_code == 1 and "Traceback" not in r.output and len(r.errors()) == 1, r.output
    assert "Lambda layer" in r.errors()[0] and "--trust-code" in r.errors()[0], r.errors()[0]
    assert "refused for safety" in r.errors()[0]


def test_lambda_refusal_names_the_flag(lambda_run):
    assert "--trust-code" in lambda_run.errors()[0], lambda_run.errors()[0]
