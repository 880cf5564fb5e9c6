"""Node names: parsing, closest-name suggestions, require, and input/output discovery."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze import nodes
from kfreeze.errors import KfreezeError
from kfreeze.tfenv import tf

# -- split_tensor / closest / require -------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("probs", ("probs", 0)),
    ("probs:0", ("probs", 0)),
    ("IteratorGetNext:1", ("IteratorGetNext", 1)),
    ("scope/split:12", ("scope/split", 12)),
    ("^init", ("init", 0)),
])
def test_split_tensor(name, expected):
    assert nodes.split_tensor(name) == expected


NAMES = ["image", "conv/Conv2D", "conv/BiasAdd", "dense/MatMul", "dense/BiasAdd", "probs", "logits"]


def test_closest_suggests_the_near_name_first():
    found = nodes.closest("prob", NAMES)
    assert found[0] == "probs"
    assert "conv/Conv2D" not in found
    assert len(found) <= 5


def test_closest_also_offers_names_with_the_same_last_component():
    found = nodes.closest("dense_1/BiasAdd", NAMES)
    assert found[:2] == ["dense/BiasAdd", "conv/BiasAdd"]
    assert nodes.closest("x", ["image", "probs"], n=1) == []  # nothing close, nothing made up


def graph_of(names):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name=names[0])
        for name in names[1:]:
            x = tf.identity(x, name=name)
    return g.as_graph_def()


def test_require_accepts_known_nodes_and_tensors():
    graph = graph_of(["image", "logits", "probs"])
    nodes.require(graph, ["image", "probs:0", "logits"], "output", "params.yaml")  # no exception


def test_require_lists_close_names():
    graph = graph_of(["image", "logits", "probs"])
    with pytest.raises(KfreezeError) as e:
        nodes.require(graph, ["probs", "prob:0"], "output", "params.yaml")
    message = str(e.value)
    assert message.startswith("params.yaml: output node 'prob:0' is not in the graph")
    assert "closest names: probs" in message
    assert "\n" not in message
    assert e.value.where == "params.yaml"


def test_require_without_close_names_points_to_kfreeze_nodes():
    graph = graph_of(["image", "probs"])
    with pytest.raises(KfreezeError, match="kfreeze nodes") as e:
        nodes.require(graph, ["zzz_qqq"], "input", "params.yaml")
    assert "closest names" not in str(e.value)


# -- discover -------------------------------------------------------------------

def tf1_graph(*, optimizer: bool = False, loss_fn: bool = False):
    """A TF1 estimator-style training graph: tf.data input, an is_training flag, a dense
    layer from a variable, 'softmax_tensor', gradients, and a Saver."""
    with tf.Graph().as_default() as g:
        ds = tf.data.Dataset.from_tensor_slices((np.zeros([8, 4], np.float32), np.zeros([8], np.int32))).batch(2)
        feats, labels = tf.compat.v1.data.make_one_shot_iterator(ds).get_next()
        is_training = tf.compat.v1.placeholder_with_default(False, [], name="is_training")
        w = tf.compat.v1.get_variable("dense/kernel", [4, 3])
        keep = 1.0 - 0.5 * tf.cast(is_training, tf.float32)
        logits = tf.identity(tf.matmul(feats * keep, w), name="logits")
        tf.nn.softmax(logits, name="softmax_tensor")
        if loss_fn:
            loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(labels=labels, logits=logits)
        else:
            with tf.name_scope("loss"):
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        if optimizer:
            step = tf.compat.v1.train.get_or_create_global_step()
            tf.compat.v1.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=step)
        else:
            tf.compat.v1.gradients(loss, [w])
        tf.compat.v1.train.Saver()
    return g.as_graph_def()


def test_discover_tf1_graph_ranks_iterator_and_softmax_first():
    graph = tf1_graph()
    ops = {n.op for n in graph.node}
    assert {"IteratorGetNext", "PlaceholderWithDefault", "SaveV2", "RestoreV2"} <= ops
    assert any(n.name.startswith("gradients/") for n in graph.node)

    inputs, outputs = nodes.discover(graph)
    assert inputs[0].name == "IteratorGetNext" and inputs[0].op == "IteratorGetNext"
    assert inputs[0].dtype == "float"  # the image tensor (port 0); the label feeds only the loss
    assert "is_training" not in [c.name for c in inputs]
    assert outputs[0].name == "softmax_tensor" and outputs[0].op == "Softmax"
    assert all(outputs[0].score > c.score for c in outputs[1:])
    listed = [c.name for c in outputs]
    assert not [n for n in listed if n.startswith(("save/", "gradients/", "loss/"))], listed
    assert "logits" not in listed  # it feeds softmax_tensor, so it is no sink
    # scores sort descending, ties by name
    assert [(-c.score, c.name) for c in outputs] == sorted((-c.score, c.name) for c in outputs)


def test_discover_prefers_data_placeholders_over_scalar_flags():
    with tf.Graph().as_default() as g:
        image = tf.compat.v1.placeholder(tf.float32, [None, 4], name="image")
        keep = tf.compat.v1.placeholder(tf.float32, [], name="keep_prob")
        dead = tf.compat.v1.placeholder(tf.float32, [None, 4], name="unused_input")
        tf.nn.softmax(image * keep, name="probs")
        del dead
    inputs, outputs = nodes.discover(g.as_graph_def())
    assert [c.name for c in inputs] == ["image", "keep_prob"]  # unused_input reaches no output
    assert inputs[0].shape == "[?,4]" and inputs[0].dtype == "float"
    assert [c.name for c in outputs] == ["probs"]


def test_discover_ignores_the_gradient_descent_optimizer():
    _, outputs = nodes.discover(tf1_graph(optimizer=True))
    listed = [c.name for c in outputs]
    assert listed[0] == "softmax_tensor"
    assert not [n for n in listed if n.startswith("GradientDescent")], listed


def test_discover_ignores_a_tf_losses_loss():
    _, outputs = nodes.discover(tf1_graph(loss_fn=True))
    listed = [c.name for c in outputs]
    assert listed[0] == "softmax_tensor"
    assert not [n for n in listed if "_loss/" in n], listed


def test_discover_lists_only_the_inference_head_as_output():
    _, outputs = nodes.discover(tf1_graph())
    assert [c.name for c in outputs] == ["softmax_tensor"]


def _head_graph(variable: bool):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        w = tf.compat.v1.get_variable("w", [4, 3]) if variable else tf.ones([4, 3])
        logits = tf.nn.bias_add(tf.matmul(x, w, name="dense/MatMul"), tf.ones([3]), name="logits")
        tf.nn.softmax(logits, name="probs")
        tf.identity(logits, name="raw")
    return g.as_graph_def()


def test_listing_shows_the_opencv_name_of_each_output_of_a_frozen_graph():
    lines = nodes.listing(_head_graph(variable=False))
    header = next(ln for ln in lines if ln.startswith("outputs:"))
    col = header.index("OpenCV net.forward name")
    rows = {ln.split()[0]: ln[col:].strip() for ln in lines[lines.index(header) + 1:]}
    # the bias add is fused into the MatMul layer, and OpenCV drops the Identity
    assert rows == {"probs": "probs", "raw": "dense/MatMul"}


def test_listing_shows_no_opencv_names_for_a_graph_with_variables():
    assert not any("OpenCV" in ln for ln in nodes.listing(_head_graph(variable=True)))


def test_require_refuses_an_output_index_the_node_does_not_have():
    from kfreeze import nodes
    from kfreeze.errors import KfreezeError
    from kfreeze.tfenv import tf

    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        a, b = tf.split(x, 2, axis=1, name="halves")
        tf.identity(a + b, name="y")
    graph = g.as_graph_def()
    nodes.require(graph, ["x", "halves:1", "y:0"], "input", "--inputs")
    with pytest.raises(KfreezeError, match=r"input 'x:7': node 'x' \(Placeholder\) has 1 output; use 'x'"):
        nodes.require(graph, ["x:7"], "input", "--inputs")
    with pytest.raises(KfreezeError, match=r"node 'halves' \(Split\) has 2 outputs"):
        nodes.require(graph, ["halves:2"], "input", "--inputs")


@pytest.mark.parametrize("name", ["^x", "x:y", "x:", " x", "x\n", "-x", "x:0:1"])
def test_require_refuses_what_is_no_tensor_name_in_one_line(name):
    """'--inputs ^x' reached TensorFlow's importer as a placeholder named '^x': an internal error (issue 25)."""
    graph = graph_of(["x", "y"])
    with pytest.raises(KfreezeError, match=r"--inputs: input .* is no tensor name") as e:
        nodes.require(graph, [name], "input", "--inputs")
    assert "\n" not in e.value.line() and "e.g. 'x' or 'x:0'" in e.value.line()
    if name == "^x":
        assert "control input" in e.value.line()
    nodes.require(graph, ["x", "x:0", "y"], "input", "--inputs")
