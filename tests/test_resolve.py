"""kfreeze.resolve: node names, shapes and dtypes from a params entry, each error naming its key."""

import json

import pytest

from kfreeze import resolve
from kfreeze.errors import KfreezeError
from kfreeze.params import TF1, ModelSpec, Origin
from kfreeze.tfenv import tf


def tf1(**keys) -> ModelSpec:
    return ModelSpec("m", TF1, **{"graph": "models/m/g.pbtxt", "checkpoint": "models/m/ckpt", **keys},
                     origin=Origin.project(TF1, "m", "p.yaml"))


def test_shapes_single_list_and_mapping():
    assert resolve.resolve_shapes(tf1(), ["a"]) == [None]
    assert resolve.resolve_shapes(tf1(input_shape=[1, 4, -1]), ["a"]) == [(1, 4, -1)]
    assert resolve.resolve_shapes(tf1(input_shape=[[1, 2], [1, 3]]), ["a", "b"]) == [(1, 2), (1, 3)]
    assert resolve.resolve_shapes(tf1(input_shape={"b": [1, 3]}), ["a", "b"]) == [None, (1, 3)]


def test_an_empty_shape_is_a_scalar_input():
    assert resolve.resolve_shapes(tf1(input_shape=[]), ["x"]) == [()]
    assert resolve.resolve_shapes(tf1(input_shape={"x": []}), ["x", "y"]) == [(), None]
    assert resolve.resolve_shapes(tf1(input_shape=[[], [2]]), ["x", "y"]) == [(), (2,)]


@pytest.mark.parametrize("raw, inputs, message", [
    ([1, 2], ["a", "b"], "one shape given for 2 inputs"),
    ({"c": [1]}, ["a", "b"], r"names \['c'\] are not inputs"),
    ([[1, 2]], ["a", "b"], "cannot read"),
    ([[1, 0]], ["a"], r"\[1, 0\] is not a shape"),
])
def test_bad_shapes_name_the_key(raw, inputs, message):
    with pytest.raises(KfreezeError, match=rf"^p.yaml: graphs.m.input_shape: {message}"):
        resolve.resolve_shapes(tf1(input_shape=raw), inputs)


def test_dtypes():
    assert resolve.resolve_dtypes(tf1(), ["a", "b"]) == [None, None]
    assert resolve.resolve_dtypes(tf1(input_dtype="uint8"), ["a", "b"]) == ["uint8", "uint8"]
    assert resolve.resolve_dtypes(tf1(input_dtype=["uint8", None]), ["a", "b"]) == ["uint8", None]
    with pytest.raises(KfreezeError, match=r"graphs.m.input_dtype: 1 dtypes for 2 inputs"):
        resolve.resolve_dtypes(tf1(input_dtype=["uint8"]), ["a", "b"])
    with pytest.raises(KfreezeError, match=r"graphs.m.input_dtype: 'float99' is not a TensorFlow dtype"):
        resolve.resolve_dtypes(tf1(input_dtype="float99"), ["a"])


def _graph():
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="image")
        tf.nn.softmax(tf.matmul(x, tf.ones([3, 2])), name="probs")
    return g.as_graph_def()


def test_names_keras_from_the_signature_unless_set(tmp_path):
    (tmp_path / "signature.json").write_text(json.dumps({"inputs": [{"name": "in"}], "outputs": [{"name": "out"}]}))
    keras = ModelSpec("k", source="models/k/m.keras")
    assert resolve.resolve_names(keras, tmp_path, None) == (["in"], ["out"])
    assert resolve.resolve_names(ModelSpec("k", outputs=["x"]), tmp_path, None) == (["in"], ["x"])


def test_names_tf1_discovered_with_a_warning():
    warnings = []
    inputs, outputs = resolve.resolve_names(tf1(), None, _graph(), warn=warnings.append)
    assert (inputs, outputs) == (["image"], ["probs"])
    assert len(warnings) == 2 and "m: inputs not set; using the top candidate 'image'" in warnings[0]
    assert resolve.resolve_names(tf1(inputs=["image"], outputs=["probs"]), None, _graph(),
                                 warn=warnings.append) == (["image"], ["probs"])
    assert len(warnings) == 2  # nothing to discover, nothing to say


def test_names_tf1_nothing_found_names_the_key():
    with tf.Graph().as_default() as g:
        tf.constant(1.0, name="c")
    with pytest.raises(KfreezeError, match=r"p.yaml: graphs.m.outputs: no likely outputs found"):
        resolve.resolve_names(tf1(), None, g.as_graph_def(), warn=lambda m: None)
    with tf.Graph().as_default() as g:  # a placeholder that reaches no output
        tf.compat.v1.placeholder(tf.float32, [1], name="x")
        tf.constant(1.0, name="c")
    with pytest.raises(KfreezeError, match=r"p.yaml: graphs.m.inputs: no likely inputs found"):
        resolve.resolve_names(tf1(outputs=["c"]), None, g.as_graph_def(), warn=lambda m: None)


def test_names_tf1_a_graph_without_placeholders_has_no_inputs():
    """Variables -> output, nothing to feed: no inputs (said once), and the output discovered."""
    with tf.Graph().as_default() as g:
        v = tf.compat.v1.Variable(1.0, name="v", use_resource=False)
        tf.math.multiply(v, 2.0, name="out")
    warnings = []
    assert resolve.resolve_names(tf1(outputs=["out"]), None, g.as_graph_def(), warn=warnings.append) == ([], ["out"])
    assert len(warnings) == 1 and "has no inputs (no placeholder)" in warnings[0]


def test_graph_and_checkpoint_keras_and_tf1(tmp_path):
    tf.io.write_graph(_graph(), str(tmp_path), "graph.pbtxt", as_text=True)
    graph, ckpt, path = resolve.graph_and_checkpoint(ModelSpec("k", source="s"), tmp_path)
    assert (ckpt, path) == (tmp_path / "ckpt", tmp_path / "graph.pbtxt") and len(graph.node) > 2
    spec = tf1(graph=str(tmp_path / "graph.pbtxt"), checkpoint=str(tmp_path / "model.ckpt-1"))
    graph, ckpt, path = resolve.graph_and_checkpoint(spec, tmp_path / "unused")
    assert (str(ckpt), path) == (spec.checkpoint, tmp_path / "graph.pbtxt") and len(graph.node) > 2
