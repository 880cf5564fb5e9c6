"""Tests for the ``name_outputs`` pass (kfreeze/optimize/passes/name_outputs.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze import graphio, opencv_names, verify
from kfreeze.keras_io import keras
from kfreeze.optimize import Context, InputSpec, optimize, passes, passes_for
from kfreeze.tfenv import tf
from kfreeze.verify.inputs import placeholder_infos
from tests.optimize.helpers import ctx, ops, by_name, const, keras_frozen, run, same_numbers


def test_name_outputs_gives_the_output_name_to_its_producer(rng7):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4], name="x")
        tf.identity(tf.nn.softmax(tf.matmul(x, const(rng7, 4, 3)), name="softmax"), name="out")
    graph = g.as_graph_def()
    out = passes.name_outputs(graph, ctx())
    assert "Identity" not in ops(out) and "softmax" not in by_name(out)
    assert by_name(out)["out"].op == "Softmax"
    same_numbers(out, graph, rng7.normal(size=[1, 4]).astype(np.float32))


def test_name_outputs_keeps_the_producer_of_an_input_or_a_shared_tensor(rng7):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 4], name="x")
        r = tf.nn.relu(x)
        tf.identity(r, name="out")
        tf.identity(r * 2.0, name="out2")
        tf.identity(x, name="out3")
    graph = g.as_graph_def()
    c = ctx(outputs=("out", "out3"))
    out = passes.name_outputs(graph, c)
    nodes = by_name(out)
    assert nodes["Relu"].op == "Relu" and nodes["x"].op == "Placeholder"  # not renamed
    # OpenCV drops an Identity: each becomes a Mul by one, a layer of the output's name
    assert [nodes["out"].op, nodes["out"].input[0], nodes["out3"].op, nodes["out3"].input[0]] == \
        ["Mul", "Relu", "Mul", "x"]
    x = rng7.normal(size=[1, 4]).astype(np.float32)
    for name in ("out", "out3"):
        assert np.array_equal(run(out, {"x:0": x}, f"{name}:0"), run(graph, {"x:0": x}, f"{name}:0"))


# -- OpenCV dnn takes every output's own name ---------------------------------------------------

def _heads():
    """Two heads on one trunk (linear box_reg, softmax cls_probs), and logits that are an output
    and also feed the probs output."""
    f = keras.Input((6,), name="features")
    h = keras.layers.Dense(8, activation="relu", name="hidden")(f)
    logits = keras.layers.Dense(3, name="logits")(h)
    return keras.Model(f, [keras.layers.Dense(3, activation="softmax", name="cls_probs")(h),
                           keras.layers.Dense(4, name="box_reg")(h), logits,
                           keras.layers.Softmax(name="probs")(logits)])


def _image():
    """Conv outputs: a linear 1x1 conv, a linear depthwise conv, global average pooling, a flatten."""
    img = keras.Input((6, 6, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(img)
    x = keras.layers.ReLU(name="relu")(keras.layers.BatchNormalization(name="bn")(x))
    return keras.Model(img, [keras.layers.Conv2D(2, 1, name="seg")(x),
                             keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x),
                             keras.layers.GlobalAveragePooling2D(name="gap")(x),
                             keras.layers.Flatten(name="flat")(x)])


def _plain():
    """An input passed through (Identity), an Add of two Dense layers, a Reshape to rank 4."""
    a = keras.Input((8,), name="a")
    summed = keras.layers.Add(name="summed")([keras.layers.Dense(5, name="da")(a),
                                              keras.layers.Dense(5, name="db")(a)])
    reshaped = keras.layers.Reshape((2, 2, 4), name="reshaped")(keras.layers.Dense(16, name="dr")(a))
    return keras.Model(a, [keras.layers.Identity(name="passthrough")(a), summed, reshaped])


KINDS = {"heads": _heads, "image": _image, "plain": _plain}
# The one output whose OpenCV name cannot be its own: OpenCV permutes a rank-4 Reshape's
# result into '<name>/nchw' (the layer named 'reshaped' holds it in NHWC order).
NOT_OWN = {"reshaped": "reshaped/nchw"}


def _trained_looking(model, seed):
    """Every weight random (biases too), BatchNorm statistics random and positive variances."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if isinstance(layer, keras.layers.BatchNormalization):
            weights = [rng.uniform(0.5, 1.5, w.shape) if i in (0, 3) else rng.normal(0, 0.5, w.shape)
                       for i, w in enumerate(weights)]
        else:
            weights = [rng.normal(0, 0.5, w.shape) for w in weights]
        layer.set_weights([w.astype(np.float32) for w in weights])
    return model


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    """Each model exported, frozen and optimized; the graph before name_outputs too."""
    built = {}
    for seed, (label, build) in enumerate(KINDS.items()):
        keras.utils.set_random_seed(seed)
        frozen, ins, outs = keras_frozen(_trained_looking(build(), seed))
        c = Context(tuple(InputSpec(i) for i in ins), tuple(outs))
        steps = passes_for(c)
        before, _ = optimize(frozen, c, steps[:[s for s, _ in steps].index("name_outputs")])
        graph, _ = optimize(frozen, c)
        path = tmp_path_factory.mktemp(label) / "optimized.pb"
        graphio.write_graph(graph, path)
        rng = np.random.default_rng(seed)
        feeds = {i: rng.normal(size=(3, *placeholder_infos(graph, [i])[0].shape[1:])).astype(np.float32)
                 for i in ins}
        built[label] = (c, before, graph, path, feeds, outs)
    return built


@pytest.mark.parametrize("label", KINDS)
def test_opencv_forward_takes_each_output_name(kinds, label):
    """net.forward([output names]) in OpenCV (a child process: OpenCV can crash) gives TF's outputs.
    Before name_outputs made the layers, box_reg, logits, seg, dw, passthrough and reshaped had none."""
    c, _, graph, path, feeds, outs = kinds[label]
    names = [NOT_OWN.get(o, o) for o in outs]
    result = verify.run_opencv(path, feeds, names)  # the names alone: no fallback candidates
    assert result.error is None, result.error
    assert result.layers == {n: n for n in names}
    assert [opencv_names.layer_name(graph, o) for o in outs] == names
    tf_out = verify.run_graph(graph, feeds, outs)
    for o in outs:
        ref = tf_out[o]
        assert np.ptp(ref) > 1e-2, f"{o} hardly depends on the input"
        rel = np.abs(result.outputs[NOT_OWN.get(o, o)].reshape(ref.shape) - ref).max() / np.abs(ref).max()
        assert rel < 1e-5, (o, rel)


@pytest.mark.parametrize("label", KINDS)
def test_opencv_layers_leave_tf_outputs_bit_identical(kinds, label):
    """TF still fetches '<output>:0', and gets the same bits as before the pass."""
    c, before, graph, _, feeds, outs = kinds[label]
    assert {o for o in outs} <= {n.name for n in graph.node}
    want, got = verify.run_graph(before, feeds, outs), verify.run_graph(graph, feeds, outs)
    for o in outs:
        assert want[o].dtype == got[o].dtype and want[o].tobytes() == got[o].tobytes(), o
    added = ops(graph).get("Mul", 0) - ops(before).get("Mul", 0)
    assert added == {"heads": 2, "image": 2, "plain": 1}[label]  # box_reg, logits; seg, dw; passthrough


def test_a_tf1_bias_output_moves_aside_for_the_mul(rng7):
    """A graph whose output op is itself the bias add (no Identity): the op becomes 'out/BiasAdd',
    its other consumers keep reading it, and 'out' is the Mul OpenCV names."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        out = tf.nn.bias_add(tf.matmul(x, const(rng7, 4, 3)), const(rng7, 3), name="out")
        tf.nn.softmax(out, name="probs")
    graph = g.as_graph_def()
    new = passes.name_outputs(graph, ctx(outputs=("out", "probs")))
    nodes = by_name(new)
    assert nodes["out"].op == "Mul" and nodes["out"].input[0] == "out/BiasAdd"
    assert nodes["probs"].input == ["out/BiasAdd"]
    assert opencv_names.layer_name(new, "out") == "out" and opencv_names.layer_name(graph, "out") == "MatMul"
    x = rng7.normal(size=[2, 4]).astype(np.float32)
    assert np.array_equal(run(new, {"x:0": x}), run(graph, {"x:0": x}))


def test_a_constant_output_keeps_its_identity():
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        tf.identity(tf.constant([1.0, 2.0]), name="out")
        tf.nn.relu(x, name="r")
    graph = g.as_graph_def()
    assert passes.name_outputs(graph, ctx(outputs=("out", "r"))) is graph
