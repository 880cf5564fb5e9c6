"""keras-team/keras keras/src/export/saved_model_test.py, onnx_test.py and litert_test.py: the
peer's models, saved as ``.keras`` and fed through ``kfreeze run``.

The peers export a model (SavedModel, ONNX, LiteRT) and assert that the exported artifact answers
as ``model(x)``. Here the artifact is kfreeze's optimized.pb, judged the same way (their
tolerance for float32, atol and rtol 1e-5 here). Models that change state at inference, draw
random numbers at inference or look values up in a hash table are refused, with one error line.
"""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.keras_io import keras
from tests.peers.harness import invoke, run_keras, flags
from tests.peers import keras_custom

L = keras.layers
RNG = np.random.default_rng(0)


def _set_bn(model):
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            g, b, m, v = (w.shape for w in layer.weights)
            layer.set_weights([rng.uniform(0.5, 1.5, g), rng.normal(0, .3, b), rng.normal(0, .3, m),
                               rng.uniform(0.5, 2, v)])


def _functional():
    """get_model('functional') as the head of x; test_model_with_input_structure (a dict of inputs
    x, y: x + y); test_model_with_multiple_inputs; onnx_test's 'lstm'; test_model_with_tf_data_layer
    (preprocessing layers: Rescaling, RandomFlip, Normalization) in one functional model."""
    keras.utils.set_random_seed(0)
    x, y = keras.Input((10,), name="x"), keras.Input((10,), name="y")
    seq, img = keras.Input((4, 10), name="seq"), keras.Input((8, 8, 3), name="img")
    head = L.Dense(1, name="head")(L.BatchNormalization()(L.Dense(10, activation="relu")(x)))
    total = L.Add(name="sum")([x, y])
    lstm = L.LSTM(10, name="lstm")(seq)
    pre = L.Normalization(mean=[0.2, 0.4, 0.6], variance=[1.0, 2.0, 0.5])(L.RandomFlip()(L.Rescaling(1 / 255.0)(img)))
    data = L.GlobalAveragePooling2D(name="data")(L.Conv2D(2, 3)(pre))
    model = keras.Model({"x": x, "y": y, "seq": seq, "img": img}, [head, total, lstm, data], name="functional")
    _set_bn(model)
    return model


def _feeds():
    return {"x": RNG.normal(size=(3, 10)).astype(np.float32), "y": RNG.normal(size=(3, 10)).astype(np.float32),
            "seq": RNG.normal(size=(3, 4, 10)).astype(np.float32),
            "img": RNG.uniform(0, 255, size=(3, 8, 8, 3)).astype(np.float32)}


@pytest.fixture(scope="module")
def functional(tmp_path_factory):
    model = _functional()
    r = run_keras(tmp_path_factory.mktemp("functional"), model)
    return model, r


def test_functional_runs_and_verifies(functional):
    assert functional[1].ok, functional[1].output


@pytest.mark.parametrize("i,output", enumerate(["head", "sum", "lstm", "data"]))
def test_functional_outputs_match_the_model(functional, i, output):
    """test_standard_model_export('functional'), test_model_with_input_structure,
    test_model_with_multiple_inputs, onnx_test's lstm, test_model_with_tf_data_layer."""
    model, r = functional
    feeds = _feeds()
    want = np.asarray(model(feeds, training=False)[i])
    got = r.run({f"{k}:0": v for k, v in feeds.items()}, f"{output}:0")
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,)), L.Dense(10, activation="relu"), L.BatchNormalization(),
                              L.Dense(1)], name="sequential")
    _set_bn(model)
    return model, run_keras(tmp_path_factory.mktemp("sequential"), model)


def test_sequential(sequential):
    """test_standard_model_export('sequential') (and onnx_test's, litert_test's)."""
    model, r = sequential
    assert r.ok, r.output
    x = RNG.normal(size=(4, 10)).astype(np.float32)
    inp = [n.name for n in r.graph.node if n.op == "Placeholder"]
    out = r.output.split("output  import/")[1].split()[0]
    np.testing.assert_allclose(r.run({f"{inp[0]}:0": x}, out), np.asarray(model(x)), atol=1e-5, rtol=1e-5)


def test_subclass(tmp_path):
    """test_standard_model_export('subclass'): the class named with --custom-objects."""
    keras.utils.set_random_seed(0)
    model = keras_custom.SubclassModel()
    x = RNG.normal(size=(4, 10)).astype(np.float32)
    model(x)  # built, its input shape recorded (README: call it once before saving)
    r = run_keras(tmp_path, model, custom_objects="tests.peers.keras_custom:SubclassModel")
    assert r.ok, r.output
    inp = [n.name for n in r.graph.node if n.op == "Placeholder"]
    out = r.output.split("output  import/")[1].split()[0]
    np.testing.assert_allclose(r.run({f"{inp[0]}:0": x}, out), np.asarray(model(x)), atol=1e-5, rtol=1e-5)


def _refused(r) -> str:
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and len(r.errors()) == 1, r.output
    return r.errors()[0]


@pytest.fixture(scope="module")
def rng_run(tmp_path_factory):
    inp = keras.Input((4,), name="x")
    model = keras.Model(inp, keras_custom.RandomLayer(name="noise")(inp))
    return run_keras(tmp_path_factory.mktemp("rng"), model, custom_objects="tests.peers.keras_custom:RandomLayer")


def test_model_with_rng_is_refused(rng_run):
    """test_model_with_rng_export: a layer drawing noise from a SeedGenerator at inference. The
    peer exports it (a different answer each call); a frozen graph cannot advance the seed."""
    line = _refused(rng_run)
    assert "changes its variables at inference" in line and "AssignVariableOp" in line, line


def test_model_with_rng_refusal_names_the_layer(rng_run):
    assert "layer 'noise'" in _refused(rng_run), rng_run.output


def test_model_with_non_trainable_state_is_refused(tmp_path):
    """test_model_with_non_trainable_state_export: a counter updated in call, at inference too."""
    inp = keras.Input((4,), name="x")
    model = keras.Model(inp, keras_custom.StateLayer(name="state")(inp))
    line = _refused(run_keras(tmp_path, model, custom_objects="tests.peers.keras_custom:StateLayer"))
    assert "layer 'state' (StateLayer) changes its variables at inference" in line, line


def test_model_with_lookup_table_is_refused(tmp_path):
    """test_model_with_lookup_table: StringLookup on a string input (a hash table)."""
    inp = keras.Input((1,), dtype="string", name="x")
    model = keras.Model(inp, L.StringLookup(vocabulary=["a", "b", "c"], name="lookup")(inp))
    line = _refused(run_keras(tmp_path, model))
    assert "lookup" in line and "hash table" in line, line


def test_the_peers_own_artifact_a_saved_model(tmp_path):
    """saved_model_test's artifact itself: model.export(path) (a TF SavedModel) as kfreeze's input."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,)), L.Dense(10, activation="relu"), L.Dense(1)])
    model.export(str(tmp_path / "exported"), format="tf_saved_model", verbose=False)
    r = invoke([tmp_path / "exported", *flags(samples=2)], tmp_path / "out")
    assert r.ok, r.output


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """litert_test's, onnx_test's and saved_model_test's sequential model, with every kfreeze target."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,), name="x"), L.Dense(10, activation="relu"), L.Dense(3, name="y")])
    return model, run_keras(tmp_path_factory.mktemp("exported"), model, targets="tf,onnx,tflite,saved_model")


def test_the_tflite_file_has_a_serving_default_signature(exported):
    """litert_test: ``get_signature_list()`` gives ``serving_default`` with the input and output names, and
    its signature runner answers as the model does."""
    from ai_edge_litert.interpreter import Interpreter

    model, r = exported
    assert r.ok, r.output
    interpreter = Interpreter(model_path=str(r.out / "tflite" / "model.tflite"))
    assert interpreter.get_signature_list() == {"serving_default": {"inputs": ["x"], "outputs": ["y"]}}
    x = RNG.normal(size=(3, 10)).astype(np.float32)
    got = interpreter.get_signature_runner("serving_default")(x=x)["y"]
    np.testing.assert_allclose(got, np.asarray(model(x)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("target", ["tf", "onnx", "tflite", "saved_model"])
def test_a_file_runs_at_other_batch_sizes(exported, target):
    """The peers' 'different batch size' checks: what was verified at one batch runs at 1, 3 and 8, one
    loaded file (session, interpreter, SavedModel) for all three."""
    model, r = exported
    assert r.ok, r.output
    if target == "tf":
        run = lambda x: r.run({"x:0": x}, "y:0")  # noqa: E731
    elif target == "onnx":
        import onnxruntime as ort
        sess = ort.InferenceSession(str(r.out / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
        run = lambda x: sess.run(["y"], {"x": x})[0]  # noqa: E731
    elif target == "tflite":
        from ai_edge_litert.interpreter import Interpreter
        runner = Interpreter(model_path=str(r.out / "tflite" / "model.tflite")).get_signature_runner()
        run = lambda x: runner(x=x)["y"]  # noqa: E731
    else:
        from kfreeze.tfenv import tf
        serve = tf.saved_model.load(str(r.out / "saved_model")).signatures["serving_default"]
        run = lambda x: serve(x=tf.constant(x))["y"].numpy()  # noqa: E731
    for batch in (1, 3, 8):
        x = RNG.normal(size=(batch, 10)).astype(np.float32)
        np.testing.assert_allclose(run(x), np.asarray(model(x)), atol=1e-5, rtol=1e-5)
    assert r.metrics["targets"].get(target, {"other_batch": {"passed": True}})["other_batch"]["passed"]
