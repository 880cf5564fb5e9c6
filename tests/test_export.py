import numpy as np
import pytest

from kfreeze import export, freeze, graphio
from kfreeze.keras_io import keras
from kfreeze.tfenv import tf
from tests.conftest import build_tiny, build_two_io
from tensorflow.python.tools import freeze_graph as tf_freeze_graph


def run(graph_def, feeds, fetches):
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph_def, name="import")
    with tf.compat.v1.Session(graph=g) as s:
        return s.run([f"import/{f}:0" for f in fetches], {f"import/{k}:0": v for k, v in feeds.items()})


@pytest.fixture(scope="module")
def exported_tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    model = build_tiny()
    result = export.export_model(model)
    export.write_export(result, out)
    return model, result, out


def test_names_are_the_keras_names(exported_tiny):
    _, result, out = exported_tiny
    by_name = {n.name: n for n in result.graph.node}
    assert by_name["image"].op == "Placeholder"
    assert by_name["probs"].op == "Identity"
    assert by_name["conv/kernel"].op == "VariableV2"
    assert result.signature["inputs"] == [{"name": "image", "dtype": "float32", "shape": [None, 8, 8, 1]}]
    assert result.signature["outputs"] == [{"name": "probs", "dtype": "float32", "shape": [None, 3]}]
    # Keras' process-global name counters are gone: no 'tiny_3/conv_2/...'
    assert all(not part.rsplit("_", 1)[-1].isdigit() or part.startswith(("Cast", "mul", "add", "stack"))
               for n in result.graph.node if n.name.startswith("tiny/") for part in n.name.split("/")[:2])
    assert (out / "op_names.txt").read_text().splitlines() == [n.name for n in result.graph.node]


def test_export_is_deterministic_across_loads(exported_tiny, tmp_path):
    _, first, out = exported_tiny
    again = export.export_model(build_tiny())  # another model object: Keras counters have moved on
    export.write_export(again, tmp_path)
    for name in ("graph.pbtxt", "op_names.txt", "signature.json", "ckpt/model.ckpt.index",
                 "ckpt/model.ckpt.data-00000-of-00001", "ckpt/checkpoint"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def test_checkpoint_holds_every_variable(exported_tiny):
    _, result, out = exported_tiny
    reader = tf.compat.v1.train.NewCheckpointReader(freeze.resolve_checkpoint(out / "ckpt"))
    stored = reader.get_variable_to_shape_map()
    assert set(stored) == set(result.values) >= {"conv/kernel", "conv/bias", "bn/moving_mean", "probs/kernel"}
    np.testing.assert_array_equal(reader.get_tensor("conv/bias"), result.values["conv/bias"])


def test_tensorflow_freeze_graph_accepts_the_export(exported_tiny, tmp_path):
    """The seed's own tool, with the seed's own arguments, on our files."""
    model, _, out = exported_tiny
    frozen_path = tmp_path / "frozen_graph.pb"
    tf_freeze_graph.freeze_graph(
        str(out / "graph.pbtxt"), "", False, str(out / "ckpt" / "model.ckpt"), "probs",
        "save/restore_all", "save/Const:0", str(frozen_path), True, "")
    frozen = graphio.read_graph(frozen_path)
    assert not {n.op for n in frozen.node} & freeze.LEFTOVER_OPS
    x = np.random.default_rng(1).random((5, 8, 8, 1), dtype=np.float32)
    (y,) = run(frozen, {"image": x}, ["probs"])
    np.testing.assert_allclose(y, model(x, training=False), atol=1e-6)


def test_two_inputs_two_outputs_keep_their_names(tmp_path):
    model = build_two_io()
    result = export.export_model(model)
    assert [i["name"] for i in result.signature["inputs"]] == ["img", "vec"]
    assert [o["name"] for o in result.signature["outputs"]] == ["cls", "reg"]
    export.write_export(result, tmp_path)
    frozen = freeze.freeze(result.graph, freeze.resolve_checkpoint(tmp_path / "ckpt"), ["cls", "reg"], "t")
    rng = np.random.default_rng(2)
    img, vec = rng.random((4, 6, 6, 2), dtype=np.float32), rng.random((4, 5), dtype=np.float32)
    cls, reg = run(frozen.graph, {"img": img, "vec": vec}, ["cls", "reg"])
    want_cls, want_reg = model([img, vec], training=False)
    np.testing.assert_allclose(cls, want_cls, atol=1e-6)
    np.testing.assert_allclose(reg, want_reg, atol=1e-6)


def test_strip_name_counters_refuses_collisions():
    from tensorflow.core.framework import graph_pb2
    g = graph_pb2.GraphDef()
    for name in ("m_1/conv_1/x", "m_1/conv_2/x"):  # a shared layer called twice
        g.node.add(name=name, op="NoOp")
    assert export.strip_name_counters(g, {"m", "conv"}) == {}
    g2 = graph_pb2.GraphDef()
    g2.node.add(name="m_1/conv_1/x", op="NoOp")
    assert export.strip_name_counters(g2, {"m", "conv"}) == {"m_1/conv_1/x": "m/conv/x"}


@pytest.mark.slow
def test_convert_refuses_a_layer_a_frozen_graph_cannot_run(tmp_path):
    """An IntegerLookup's hash table is never initialized in a frozen graph (the session fails
    at verify with 'Table not initialized'); convert refuses it in one line naming the layer,
    and the advice (look up before the model, feed the ids) gives a model that verifies."""
    from kfreeze.errors import KfreezeError
    from tests.conformance import harness, zoo

    L = keras.layers
    ids = keras.Input((4,), dtype="int64", name="ids")
    emb, head = L.Embedding(10, 3, name="emb"), L.Dense(2, name="out")
    x = L.IntegerLookup(vocabulary=[3, 5, 7, 9], name="lookup")(ids)
    model = keras.Model(ids, head(L.Flatten(name="f")(emb(x))), name="lk")
    harness.write_project(tmp_path / "a", "lk", model)
    with pytest.raises(KfreezeError) as err:
        harness.run_stages(tmp_path / "a", "lk", ("convert",))
    line = err.value.line()
    assert "layer 'lookup' (IntegerLookup)" in line and "hash table" in line and "\n" not in line
    assert not (tmp_path / "a" / "build" / "lk" / "model").exists()
    # The advice: the lookup outside, the model fed its ids.
    fed = keras.Input((4,), dtype="int64", name="ids")
    fixed = zoo.randomize(keras.Model(fed, head(L.Flatten(name="f")(emb(fed))), name="lk"))
    run = harness.run_model(tmp_path / "b", "lk", fixed)
    assert run.rel_err <= harness.REL_TOL


def test_a_sequential_built_by_a_call_keeps_its_batch_free():
    """keras2onnx/Keras export: a Sequential built by calling it on a (3, 10) tensor runs at batch 6."""
    import numpy as np

    from kfreeze import export as export_lib
    from kfreeze.keras_io import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)])
    model(np.zeros((3, 10), np.float32))
    fn = export_lib.trace(model)
    assert fn.inputs[0].shape.as_list() == [None, 10]
    x = np.random.default_rng(0).normal(size=(6, 10)).astype(np.float32)
    np.testing.assert_allclose(fn(x)[0].numpy(), model(x).numpy(), rtol=1e-6)
    stateful = keras.Sequential([keras.Input((4, 3), batch_size=2),
                                 keras.layers.GRU(3, stateful=True)])
    assert export_lib.trace(stateful).inputs[0].shape.as_list() == [2, 4, 3]  # its batch is its state's


AUGMENTATIONS = {"MixUp": {}, "RandomHue": {"factor": 0.5}, "RandomSaturation": {"factor": 0.5},
                 "RandomGrayscale": {"factor": 0.5}, "RandomSharpness": {"factor": 0.5},
                 "RandomPosterization": {"factor": (1, 4)}, "RandomColorDegeneration": {"factor": 0.5}}


@pytest.mark.parametrize("cls", sorted(AUGMENTATIONS))
def test_augmentation_with_seed_state_is_the_identity_at_inference(cls):
    """Issue #22: these layers advance their seed at inference (an AssignVariableOp) though Keras' own
    output there is the input. The claim export relies on is checked on Keras itself, per class."""
    assert cls in export.SEED_ONLY_AT_INFERENCE
    layer = getattr(keras.layers, cls)(**AUGMENTATIONS[cls])
    inp = keras.Input((8, 8, 3), name="image")
    model = keras.Model(inp, layer(inp))
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), x)
    fn = export.trace(model)
    assert not {op for op, _ in export._graph_ops(fn.graph)} & set(export.UNFREEZABLE)
    np.testing.assert_array_equal(fn(x)[0].numpy(), x)
    assert model.layers[-1].call.__func__ is type(layer).call  # traced as identity, the layer left as it was


@pytest.mark.slow  # every stage
def test_augmentation_layers_freeze_as_identity(tmp_path):
    """All seven seed-only augmentations in front of a small classifier, through every stage."""
    from tests.conformance import harness, zoo

    L = keras.layers
    image = keras.Input((8, 8, 3), name="image")
    x = image
    for cls in sorted(AUGMENTATIONS):
        x = getattr(L, cls)(**AUGMENTATIONS[cls])(x)
    x = L.GlobalAveragePooling2D()(L.Conv2D(4, 3, activation="relu")(L.Rescaling(1 / 255)(x)))
    model = zoo.randomize(keras.Model(image, L.Dense(3, name="out")(x), name="aug"))
    run = harness.run_model(tmp_path, "aug", model)
    assert run.rel_err <= harness.REL_TOL
    assert run.metrics["max_abs_diff"] <= 1e-5


def test_grouped_convolutions_export_without_xla(tmp_path):
    """Issue #22, ConvNeXt: Keras computes grouped convolutions in an XLA function on CPU, which no
    frozen graph holds. Traced as depthwise / per-group convolutions, they run in a TF session."""
    from tests.conformance import zoo

    L = keras.layers
    image = keras.Input((9, 9, 8), name="image")
    x = L.Conv2D(8, 7, padding="same", groups=8, name="dw")(image)           # ConvNeXt's block
    x = L.Conv2D(16, 3, strides=2, padding="same", groups=8, name="dw_x2")(x)  # depth multiplier 2
    x = L.Conv2D(8, 3, dilation_rate=2, groups=4, name="grouped")(x)
    seq = L.Conv1D(6, 3, groups=2, name="grouped_1d")(L.Reshape((9, 8))(L.Conv2D(8, 1)(image)[:, :, 0, :]))
    out = L.Concatenate(name="out")([L.GlobalAveragePooling2D()(x), L.GlobalAveragePooling1D()(seq)])
    model = zoo.randomize(keras.Model(image, out, name="groups"))
    result = export.export_model(model)
    assert not {n.op for n in result.graph.node} & {"PartitionedCall", "StatefulPartitionedCall", "XlaLaunch"}
    assert sum(n.op == "DepthwiseConv2dNative" for n in result.graph.node) == 2
    export.write_export(result, tmp_path)
    frozen = freeze.freeze(result.graph, tmp_path / "ckpt", ["out"], "graph").graph
    x = np.random.default_rng(0).normal(size=(3, 9, 9, 8)).astype(np.float32)
    got = run(frozen, {"image": x}, ["out"])[0]
    want = np.asarray(model(x))
    assert float(np.max(np.abs(got - want)) / np.max(np.abs(want))) <= 1e-5


def test_a_layer_calling_a_compiled_function_is_refused_at_export():
    """Without the rewrite above a grouped convolution left a call to an XLA function that export
    dropped, and freeze blamed the checkpoint. A layer of the user's own that does it is named."""
    from kfreeze.errors import KfreezeError

    class Jit(keras.layers.Layer):
        def call(self, x):
            return tf.function(lambda t: t * 2.0, jit_compile=True)(x)

    image = keras.Input((4,), name="x")
    model = keras.Model(image, keras.layers.Dense(2)(Jit(name="jit")(image)))
    with pytest.raises(KfreezeError) as err:
        export.export_model(model)
    assert "layer 'jit' (Jit)" in err.value.line() and "jit_compile" in err.value.line()
