"""The corpus: one small model file per old API / file layout users bring, written once and committed.

    python -m tests.corpus.make [ROW ...] [--force]

Each row's folder under tests/corpus/files/ holds the file(s) and ``golden.npz``: fixed inputs ``x`` (as
the source framework takes them) and the outputs ``y`` the source framework computed when the file was
made. Existing rows are left alone unless --force: the test compares against these numbers, never
against numbers computed in the test run. The writers are the test suite's own (tests/legacy,
tests/frozen_graphs.py, tests/conformance/zoo.py); this file only calls them and records the outputs.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FILES = HERE / "files"


@dataclass(frozen=True)
class Row:
    source: str  # relative to the row's folder
    args: tuple = ()  # kfreeze run flags; "{dir}" is the row's folder
    nchw: bool = False  # the source takes NCHW; the converted graph takes NHWC
    what: str = ""
    says: tuple = ()  # lines kfreeze run must print for this row
    refused: str = ""  # a row kfreeze refuses up front: its one error line says this
    rtol: float = 1e-4  # max|diff| / max|golden|


ROWS = {
    "keras1_theano": Row("weights.h5", ("--arch", "{dir}/model.json"), nchw=True,
                         says=("weights saved by Theano",),
                         what="Keras 1.2.2 JSON + save_weights .h5 from the Theano backend: `th` dim ordering, "
                              "kernels (filters, channels, rows, cols), weight names without ':0', no backend "
                              "attribute (kfreeze flips the kernels by default)"),
    "tfkeras215_keras": Row("model.keras", what="tf.keras 2.15 `.keras` zip (keras.src.engine module names, "
                                                "keras_version 2.15.0): timeseries transformer with TF ops"),
    "savedmodel_export": Row("exported", what="Keras 3 `model.export()` SavedModel folder"),
    "keras3_tf_saved_model": Row("saved", what="a Keras 3 model written by `tf.saved_model.save(model, folder)` "
                                               "(not model.export)"),
    "frozen_tfdata_pb": Row("frozen_graph.pb", ("--inputs", "IteratorGetNext", "--outputs", "softmax_tensor",
                                                "--input-shape", "[1, 20, 20, 1]"),
                            says=("is frozen already (no checkpoint)",),
                            what="TF1 frozen GraphDef fed by tf.data (IteratorGetNext), cut at IteratorGetNext"),
    "keras_tf1_frozen_pb": Row("frozen_graph.pb", what="a tf_keras model frozen from its TF1 session: "
                                                    "keras_learning_phase, BatchNorm and Dropout under Switch/Merge"),
    "h5_named_model": Row("net.model", what="tf.keras 2 HDF5 full model saved as `net.model`"),
    "h5_segmentation": Row("model.h5", what="tf.keras 2 HDF5 segmentation net: SeparableConv2D, DepthwiseConv2D "
                                             "(stride 2), Conv2DTranspose, bilinear UpSampling2D, Concatenate, "
                                             "softmax over the channels of a 4-D output"),
    "stateful_gru": Row("model.h5", what="tf.keras 2 HDF5 Sequential with GRU(stateful=True, "
                                         "batch_input_shape=(2, 5, 3))"),
    "keras2_theano_json": Row("weights.h5", ("--arch", "{dir}/model.json"), nchw=True,
                              says=("weights saved by Theano",),
                              what="Keras 2 on Theano: `to_json` + `save_weights` (backend 'theano', "
                                   "keras_version 2.0.8), channels_first, BatchNormalization(axis=1), flipped "
                                   "kernels (models/digits_th/make_th.py's network, untrained)"),
    "keras3_json_weights": Row("model.weights.h5", ("--arch", "{dir}/model.json"),
                               what="Keras 3 `to_json` + `save_weights` (`.weights.h5`)"),
    "keras1_tf_bn": Row("model.h5", what="Keras 1.2.2 full model .h5 from the TensorFlow backend, `tf` dim ordering: "
                                         "Convolution2D -> BatchNormalization (mode 0; running_std holding the "
                                         "variance) -> relu -> MaxPooling2D -> Flatten -> Dense softmax"),
    "keras1_rnn_h5": Row("model.h5", what="Keras 1.2.2 full model .h5 (model_config) from the TensorFlow backend: "
                                          "Embedding(mask_zero) -> LSTM (per-gate weights) -> GRU(go_backwards), "
                                          "int32 token input"),
    "tfkeras2_savedmodel": Row("saved", what="tf.keras 2 `model.save(folder)` SavedModel (keras_metadata.pb beside "
                                             "saved_model.pb)"),
    "tfkeras215_custom_layer": Row("model.keras", ("--custom-objects",
                                                   "[tests.corpus.custom_layers:PositionEmbedding]"),
                                   what="tf.keras 2.15 `.keras` zip with a registered custom layer",
                                   refused="a tf.keras 2 .keras file with the custom class 'PositionEmbedding' "
                                           "(kfreeze rebuilds tf.keras 2 models in Keras 3, which needs the class in "
                                           "Keras 3); in tf.keras, save the model as a SavedModel"),
    "keras3_mixed_float16": Row("model.keras", rtol=5e-3,  # float16 compute: kfreeze's atol_float16 scale
                                what="Keras 3 `.keras` trained under the mixed_float16 policy (float16 compute, "
                                     "float32 output layer)"),
    "custom_activation": Row("model.keras", ("--custom-objects", "[tests.corpus.custom_layers:scaled_swish]"),
                             what="Keras 3 `.keras` with a registered custom activation function"),
    "transformer_custom_layer": Row("model.keras", ("--custom-objects",
                                                    "[tests.corpus.custom_layers:PositionEmbedding]"),
                                    what="Keras 3 `.keras` transformer block with a registered custom layer "
                                         "(tests/corpus/custom_layers.py)"),
}


def _legacy_path():
    if str(ROOT / "tests" / "legacy") not in sys.path:  # the legacy helpers import each other by bare name
        sys.path.insert(0, str(ROOT / "tests" / "legacy"))


def keras1_theano(d: Path):
    _legacy_path()
    import keras1_rnn as k1
    import test_legacy_theano as th
    k1.write_keras1(d / "weights.h5", th.CONFIG, th._weights(), arch=d / "model.json", backend=None)
    x = np.random.default_rng(11).random((4, 2, 6, 5), dtype=np.float32)
    # No Keras 1 / Theano to run: the reference is the numpy forward pass convolving as Theano did.
    return x, th.forward(x, th._weights(), flipped=True)


def tfkeras215_keras(d: Path):
    _legacy_path()
    from test_keras2_archive import tf215, timeseries_transformer
    m = timeseries_transformer(seed=5)
    with tempfile.TemporaryDirectory() as tmp:
        m.save(Path(tmp) / "tfk.keras")
        tf215(Path(tmp) / "tfk.keras", d / "model.keras")
    x = np.random.default_rng(12).normal(size=(4, 10, 8)).astype(np.float32)
    return x, m.predict(x, verbose=0)  # the tf_keras model that wrote the file


def savedmodel_export(d: Path):
    from kfreeze.tfenv import tf
    from tests.conformance.zoo import L, keras, randomize
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 2), name="image")
    x = L.Conv2D(4, 3, padding="same", name="conv")(inp)
    x = L.BatchNormalization(name="bn")(x)
    x = L.GlobalAveragePooling2D(name="gap")(L.ReLU(name="relu")(x))
    model = randomize(keras.Model(inp, L.Dense(3, name="logits")(x), name="exported"), 6)
    model.export(d / "exported", verbose=False)
    x = np.random.default_rng(13).random((3, 8, 8, 2), dtype=np.float32)
    fn = tf.saved_model.load(str(d / "exported")).signatures["serving_default"]
    out = fn(tf.constant(x))
    assert len(out) == 1
    return x, next(iter(out.values())).numpy()


def keras3_tf_saved_model(d: Path):
    from kfreeze.tfenv import tf
    from tests.conformance.zoo import L, keras, randomize
    keras.utils.set_random_seed(4)
    inp = keras.Input((6,), name="v")
    x = L.BatchNormalization(name="bn")(L.Dense(4, activation="tanh", name="hidden")(inp))
    tf.saved_model.save(randomize(keras.Model(inp, L.Dense(2, name="out")(x), name="tfsaved"), 13), str(d / "saved"))
    x = np.random.default_rng(28).random((4, 6), dtype=np.float32)
    out = tf.saved_model.load(str(d / "saved")).signatures["serving_default"](tf.constant(x))
    assert len(out) == 1
    return x, next(iter(out.values())).numpy()


def frozen_tfdata_pb(d: Path):
    from kfreeze.tfenv import tf
    from tests.frozen_graphs import build
    build("seed", d / "frozen_graph.pb")
    x = np.random.default_rng(14).random((1, 20, 20, 1), dtype=np.float32)
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString((d / "frozen_graph.pb").read_bytes())
    with tf.Graph().as_default() as g:  # the original graph, its tf.data input fed directly
        tf.graph_util.import_graph_def(graph, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            return x, sess.run("softmax_tensor:0", {"IteratorGetNext:0": x})


def keras_tf1_frozen_pb(d: Path):
    from kfreeze.tfenv import tf
    from tests.frozen_graphs import build
    build("keras_tf1", d / "frozen_graph.pb")
    x = np.random.default_rng(23).random((3, 8, 8, 2), dtype=np.float32)
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString((d / "frozen_graph.pb").read_bytes())
    with tf.Graph().as_default() as g:  # the original graph; keras_learning_phase keeps its default (False)
        tf.graph_util.import_graph_def(graph, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            return x, sess.run("probs/Softmax:0", {"conv_input:0": x})


def h5_named_model(d: Path):
    _legacy_path()
    import tf_keras
    from legacy_helpers import randomize
    L = tf_keras.layers
    inp = tf_keras.Input((10, 10, 3), name="image")
    x = L.Conv2D(6, 3, name="conv")(inp)
    x = L.BatchNormalization(name="bn")(x)
    x = L.MaxPooling2D(name="pool")(L.Activation("relu", name="relu")(x))
    x = L.Dense(4, name="probs", activation="softmax")(L.Flatten(name="flat")(x))
    randomize(tf_keras.Model(inp, x, name="net"), 7).save(d / "net.model", save_format="h5")
    x = np.random.default_rng(15).random((3, 10, 10, 3), dtype=np.float32)
    return x, tf_keras.models.load_model(d / "net.model", compile=False).predict(x, verbose=0)


def h5_segmentation(d: Path):
    _legacy_path()
    import tf_keras
    from legacy_helpers import randomize
    L = tf_keras.layers
    inp = tf_keras.Input((16, 16, 3), name="image")
    a = L.SeparableConv2D(4, 3, padding="same", activation="relu", name="sep")(inp)
    b = L.BatchNormalization(name="bn")(L.DepthwiseConv2D(3, strides=2, padding="same", name="dw")(a))
    b = L.Conv2D(8, 1, activation="relu", name="pw")(b)
    u = L.Conv2DTranspose(4, 3, strides=2, padding="same", name="up")(b)
    u2 = L.UpSampling2D(2, interpolation="bilinear", name="bil")(L.AveragePooling2D(name="avg")(a))
    x = L.Conv2D(2, 1, activation="softmax", name="mask")(L.Concatenate(name="cat")([a, u, u2]))
    randomize(tf_keras.Model(inp, x, name="seg"), 15).save(d / "model.h5")
    x = np.random.default_rng(30).random((2, 16, 16, 3), dtype=np.float32)
    return x, tf_keras.models.load_model(d / "model.h5", compile=False).predict(x, verbose=0)


def stateful_gru(d: Path):
    _legacy_path()
    import tf_keras
    from legacy_helpers import randomize
    L = tf_keras.layers
    m = tf_keras.Sequential([L.GRU(4, stateful=True, batch_input_shape=(2, 5, 3), name="gru"),
                             L.Dense(2, name="out")], name="stateful")
    randomize(m, 8).save(d / "model.h5")
    x = np.random.default_rng(16).normal(size=(2, 5, 3)).astype(np.float32)
    loaded = tf_keras.models.load_model(d / "model.h5", compile=False)
    loaded.reset_states()  # the first batch after a reset: zero states, what a frozen graph computes
    return x, loaded.predict(x, batch_size=2, verbose=0)


def tfkeras215_custom_layer(d: Path):
    """The custom layer as the user wrote it for tf.keras 2.15 (tf_keras here), registered under the name
    custom_layers.PositionEmbedding has in Keras 3."""
    _legacy_path()
    import tf_keras
    from legacy_helpers import randomize
    from test_keras2_archive import tf215
    L = tf_keras.layers

    @tf_keras.utils.register_keras_serializable(package="corpus")
    class PositionEmbedding(L.Layer):
        def __init__(self, length, **kwargs):
            super().__init__(**kwargs)
            self.length = length

        def build(self, input_shape):
            self.positions = self.add_weight(shape=(self.length, input_shape[-1]), initializer="random_normal",
                                             name="positions")

        def call(self, x):
            return x + self.positions[None]

        def get_config(self):
            return {**super().get_config(), "length": self.length}

    inp = tf_keras.Input((8, 6), name="tokens")
    x = L.LayerNormalization(name="ln")(PositionEmbedding(8, name="pos")(inp))
    m = randomize(tf_keras.Model(inp, L.Dense(3, name="out")(L.GlobalAveragePooling1D(name="gap")(x)), name="tfkc"), 11)
    with tempfile.TemporaryDirectory() as tmp:
        m.save(Path(tmp) / "tfk.keras")
        tf215(Path(tmp) / "tfk.keras", d / "model.keras")
    x = np.random.default_rng(24).normal(size=(3, 8, 6)).astype(np.float32)
    return x, m.predict(x, verbose=0)


def keras3_mixed_float16(d: Path):
    from tests.conformance.zoo import L, keras, randomize
    keras.utils.set_random_seed(3)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inp = keras.Input((8, 8, 2), name="image")
        x = L.BatchNormalization(name="bn")(L.Conv2D(4, 3, name="conv")(inp))
        x = L.GlobalAveragePooling2D(name="gap")(L.ReLU(name="relu")(x))
        randomize(keras.Model(inp, L.Dense(3, name="out", dtype="float32")(x), name="mixed"), 12).save(
            d / "model.keras")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = np.random.default_rng(25).random((3, 8, 8, 2), dtype=np.float32)
    return x, keras.saving.load_model(d / "model.keras").predict(x, verbose=0)


def custom_activation(d: Path):
    from tests.conformance.zoo import L, keras, randomize
    from tests.corpus.custom_layers import scaled_swish
    keras.utils.set_random_seed(5)
    inp = keras.Input((6,), name="v")
    x = L.Dense(5, activation=scaled_swish, name="hidden")(inp)
    randomize(keras.Model(inp, L.Dense(2, name="out")(x), name="act"), 14).save(d / "model.keras")
    x = np.random.default_rng(29).normal(size=(4, 6)).astype(np.float32)
    return x, keras.saving.load_model(d / "model.keras").predict(x, verbose=0)


def transformer_custom_layer(d: Path):
    from tests.conformance.zoo import L, keras, randomize
    from tests.corpus.custom_layers import PositionEmbedding
    keras.utils.set_random_seed(1)
    inp = keras.Input((8, 6), name="tokens")
    x = PositionEmbedding(8, name="pos")(inp)
    a = L.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(x, x)
    x = L.LayerNormalization(name="ln1")(x + a)
    f = L.Dense(6, name="ffn2")(L.Dense(12, activation="relu", name="ffn1")(x))
    x = L.LayerNormalization(name="ln2")(x + f)
    x = L.Dense(3, name="logits")(L.GlobalAveragePooling1D(name="gap")(x))
    randomize(keras.Model(inp, x, name="transformer"), 9).save(d / "model.keras")
    x = np.random.default_rng(17).normal(size=(3, 8, 6)).astype(np.float32)
    return x, keras.saving.load_model(d / "model.keras").predict(x, verbose=0)


def keras2_theano_json(d: Path):
    import importlib.util

    import h5py
    spec = importlib.util.spec_from_file_location("make_th", ROOT / "models" / "digits_th" / "make_th.py")
    make_th = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_th)
    twin = make_th.build("channels_last")
    rng = np.random.default_rng(20)
    for layer in twin.layers:  # kernels scaled by fan-in so the softmax is not saturated; BN statistics random
        layer.set_weights([rng.uniform(0.5, 1.5, w.shape) if "variance" in w.name or "gamma" in w.name
                           else rng.normal(0, 1 / np.sqrt(np.prod(w.shape[:-1])) if len(w.shape) > 1 else 0.3,
                                           w.shape) for w in layer.weights])
    model = make_th.to_theano_channels_first(twin)
    (d / "model.json").write_text(model.to_json())
    model.save_weights(d / "weights.h5")
    with h5py.File(d / "weights.h5", "r+") as f:  # as Keras 2.0 on Theano wrote the attributes
        f.attrs["backend"] = b"theano"
        f.attrs["keras_version"] = b"2.0.8"
    x = np.random.default_rng(21).random((3, 1, 20, 20), dtype=np.float32)
    # TensorFlow has no NCHW convolution on CPU: the reference is the channels_last twin the file was made from.
    return x, twin.predict(np.transpose(x, (0, 2, 3, 1)), verbose=0)


def keras3_json_weights(d: Path):
    from tests.conformance.zoo import L, keras, randomize
    keras.utils.set_random_seed(2)
    inp = keras.Input((12,), name="x")
    x = L.BatchNormalization(name="bn")(L.Dense(8, activation="relu", name="hidden")(inp))
    model = randomize(keras.Model(inp, L.Dense(3, name="out")(x), name="k3json"), 3)
    (d / "model.json").write_text(model.to_json())
    model.save_weights(d / "model.weights.h5")
    loaded = keras.models.model_from_json((d / "model.json").read_text())
    loaded.load_weights(d / "model.weights.h5")
    x = np.random.default_rng(22).random((4, 12), dtype=np.float32)
    return x, loaded.predict(x, verbose=0)


K1_CONV = {"init": "glorot_uniform", "W_regularizer": None, "b_regularizer": None, "activity_regularizer": None,
           "W_constraint": None, "b_constraint": None, "bias": True, "trainable": True}
KERAS1_TF_BN = {"class_name": "Sequential", "keras_version": "1.2.2", "config": [
    {"class_name": "Convolution2D", "config": {
        **K1_CONV, "name": "convolution2d_1", "nb_filter": 4, "nb_row": 3, "nb_col": 3, "activation": "linear",
        "border_mode": "same", "subsample": [1, 1], "dim_ordering": "tf", "batch_input_shape": [None, 6, 6, 2],
        "input_dtype": "float32"}},
    {"class_name": "BatchNormalization", "config": {
        "name": "batchnormalization_1", "epsilon": 0.001, "mode": 0, "axis": -1, "momentum": 0.99,
        "gamma_regularizer": None, "beta_regularizer": None, "trainable": True}},
    {"class_name": "Activation", "config": {"name": "activation_1", "activation": "relu", "trainable": True}},
    {"class_name": "MaxPooling2D", "config": {"name": "maxpooling2d_1", "pool_size": [2, 2], "strides": [2, 2],
                                              "border_mode": "valid", "dim_ordering": "tf", "trainable": True}},
    {"class_name": "Flatten", "config": {"name": "flatten_1", "trainable": True}},
    {"class_name": "Dense", "config": {**K1_CONV, "name": "dense_1", "output_dim": 3, "activation": "softmax",
                                       "input_dim": None}},
]}


def keras1_tf_bn(d: Path):
    _legacy_path()
    import keras1_rnn as k1
    rng = np.random.default_rng(26)
    w = {"W": rng.normal(0, 0.4, (3, 3, 2, 4)), "b": rng.normal(0, 0.3, 4), "gamma": rng.uniform(0.5, 1.5, 4),
         "beta": rng.normal(0, 0.3, 4), "mean": rng.normal(0, 0.3, 4), "var": rng.uniform(0.5, 1.5, 4),
         "D": rng.normal(0, 0.3, (3 * 3 * 4, 3)), "c": rng.normal(0, 0.3, 3)}
    w = {k: v.astype(np.float32) for k, v in w.items()}
    stored = {"convolution2d_1": {"convolution2d_1_W:0": w["W"], "convolution2d_1_b:0": w["b"]},
              "batchnormalization_1": {"batchnormalization_1_gamma:0": w["gamma"], "batchnormalization_1_beta:0":
                                       w["beta"], "batchnormalization_1_running_mean:0": w["mean"],
                                       "batchnormalization_1_running_std:0": w["var"]},
              "dense_1": {"dense_1_W:0": w["D"], "dense_1_b:0": w["c"]}}
    k1.write_keras1(d / "model.h5", KERAS1_TF_BN, stored)
    x = np.random.default_rng(27).random((4, 6, 6, 2), dtype=np.float32)
    # No Keras 1 to run: numpy as Keras 1.2.2's TensorFlow backend computed it (K.batch_normalization takes
    # running_std as the variance; correlation; 'same' padding of a 3x3 kernel is one pixel each side).
    p = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = np.einsum("nhwuvc,uvco->nhwo", np.lib.stride_tricks.sliding_window_view(p, (3, 3), axis=(1, 2))
                  .transpose(0, 1, 2, 4, 5, 3), w["W"]) + w["b"]
    y = (y - w["mean"]) / np.sqrt(w["var"] + 0.001) * w["gamma"] + w["beta"]
    y = np.maximum(y, 0).reshape(4, 3, 2, 3, 2, 4).max(axis=(2, 4))
    logits = y.reshape(4, -1) @ w["D"] + w["c"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return x, e / e.sum(axis=1, keepdims=True)


def keras1_rnn_h5(d: Path):
    _legacy_path()
    import keras1_rnn as k1
    from test_legacy_rnn import keras1_sequential
    config, stored, forward = keras1_sequential(seed=4)
    k1.write_keras1(d / "model.h5", config, stored)
    x = np.random.default_rng(18).integers(0, 12, (4, 7)).astype(np.int32)
    x[0, 5:] = 0  # padded ends: the mask matters
    # No Keras 1 to run: the reference is the numpy forward pass of Keras 1.2.2's step functions.
    return x, forward(x)


def tfkeras2_savedmodel(d: Path):
    _legacy_path()
    import tf_keras
    from legacy_helpers import randomize
    L = tf_keras.layers
    inp = tf_keras.Input((6, 6, 2), name="image")
    x = L.BatchNormalization(name="bn")(L.Conv2D(3, 3, name="conv")(inp))
    x = L.Dense(3, name="out")(L.Flatten(name="flat")(L.Activation("tanh", name="tanh")(x)))
    randomize(tf_keras.Model(inp, x, name="tfk_sm"), 10).save(d / "saved", save_format="tf")
    x = np.random.default_rng(19).random((3, 6, 6, 2), dtype=np.float32)
    return x, tf_keras.models.load_model(d / "saved", compile=False).predict(x, verbose=0)


def make(name: str, force: bool = False) -> bool:
    d = FILES / name
    if d.exists() and not force:
        return False
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    x, y = globals()[name](d)
    x = np.asarray(x, np.int32 if np.issubdtype(np.asarray(x).dtype, np.integer) else np.float32)
    np.savez(d / "golden.npz", x=x, y=np.asarray(y, np.float32))
    for empty in sorted((p for p in d.rglob("*") if p.is_dir() and not any(p.iterdir())), reverse=True):
        empty.rmdir()  # a SavedModel's empty assets/: git keeps no empty folder, so the row is what is committed
    return True


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--force"]
    for row in args or ROWS:
        print(row, "written" if make(row, "--force" in sys.argv) else "exists (--force rewrites)")
