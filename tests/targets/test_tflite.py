"""optimized.pb -> model.tflite: names, dynamic batch, float16 weights, parity in the LiteRT interpreter."""

from __future__ import annotations

import pytest

from kfreeze.errors import KfreezeError
from kfreeze.targets import tflite
from tests.targets import graphs


@pytest.fixture(scope="module")
def two_heads():
    return graphs.conv_two_heads()


def test_names_dynamic_batch_and_parity(two_heads):
    sibling = tflite.convert(two_heads.graph, two_heads.inputs, two_heads.outputs, "float32", "here")
    sig = sibling.signature
    assert sig["weights"] == "float32"
    assert [(i["name"], i["shape"]) for i in sig["inputs"]] == [("image", [None, 6, 6, 2]), ("vec", [None, 4])]
    assert [(o["name"], o["shape"]) for o in sig["outputs"]] == [("fmap", [None, 6, 6, 4]), ("probs", [None, 3])]
    feeds = graphs.feeds_for(two_heads, samples=5)
    ref = graphs.run_tf(two_heads, feeds)
    got = tflite.run(sibling.data, feeds, two_heads.outputs)  # the batch of 5 resized in
    assert graphs.rel_err(ref, got) < 1e-5
    assert sibling.data == tflite.convert(graphs.conv_two_heads().graph, two_heads.inputs, two_heads.outputs,
                                          "float32", "here").data


def test_fixed_batch_and_float16_weights():
    graph = graphs.dense(batch=1)
    f32 = tflite.convert(graph.graph, graph.inputs, graph.outputs, "float32", "here")
    f16 = tflite.convert(graph.graph, graph.inputs, graph.outputs, "float16", "here")
    assert f16.signature["weights"] == "float16" and f16.signature["inputs"][0]["shape"] == [1, 5]
    feeds = graphs.feeds_for(graph, samples=1)
    ref = graphs.run_tf(graph, feeds)
    exact, half = (graphs.rel_err(ref, tflite.run(s.data, feeds, graph.outputs)) for s in (f32, f16))
    assert exact < 1e-6 and 1e-6 < half < 5e-3  # the weights were rounded to float16, and only that


def test_an_op_outside_the_builtins_is_refused_by_name():
    graph = graphs.matrix_inverse()
    with pytest.raises(KfreezeError) as e:
        tflite.convert(graph.graph, graph.inputs, graph.outputs, "float32", "params.yaml: models.m.targets")
    assert e.value.problem.startswith("op MatrixInverse (node 'inverse') is not a TFLite builtin op")
    assert "\n" not in e.value.line()


def test_why_select_tf_ops_are_refused_the_litert_interpreter_cannot_run_them():
    """The reason for TFLITE_BUILTINS only: a TF Select (Flex) file converts, but the maintained
    interpreter refuses it. If a later ai-edge-litert runs it, the refusal can become an option."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from kfreeze.tfenv import tf

    graph = graphs.matrix_inverse()
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph.graph, name="")
    converter = tf.compat.v1.lite.TFLiteConverter(graph.graph, [g.get_tensor_by_name("x:0")],
                                                  [g.get_tensor_by_name("inverse:0")])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    interpreter = Interpreter(model_content=converter.convert())
    with pytest.raises(RuntimeError, match="Select TensorFlow op"):
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.eye(3, dtype=np.float32)[None])
        interpreter.invoke()


def test_serving_default_signature_named_after_the_inputs_and_outputs(two_heads):
    """As Keras' own LiteRT export: get_signature_list() names the inputs and outputs, and the signature
    runner computes what the interpreter's input/output tensors do (a dynamic batch of 3 resized in)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    sibling = tflite.convert(two_heads.graph, two_heads.inputs, two_heads.outputs, "float32", "here")
    interpreter = Interpreter(model_content=sibling.data)
    assert interpreter.get_signature_list() == {"serving_default": {"inputs": ["image", "vec"],
                                                                    "outputs": ["fmap", "probs"]}}
    assert sibling.signature["signature_key"] == "serving_default"
    feeds = graphs.feeds_for(two_heads, samples=3)
    got = interpreter.get_signature_runner("serving_default")(**feeds)
    ref = graphs.run_tf(two_heads, feeds)
    assert sorted(got) == ["fmap", "probs"] and got["probs"].shape == (3, 3)
    assert graphs.rel_err(ref, got) < 1e-5
    np.testing.assert_array_equal(got["probs"], tflite.run(sibling.data, feeds, two_heads.outputs)["probs"])
    lines = tflite.usage("m/tflite/model.tflite", sibling.signature, {})
    assert lines[-1] == ("  or get_signature_runner('serving_default')(image=..., vec=...) -> dict with keys "
                         "'fmap', 'probs'")


def test_signing_a_signed_file_keeps_its_bytes_and_a_count_mismatch_is_one_line():
    from ai_edge_litert.interpreter import Interpreter

    graph = graphs.dense()
    signed = tflite.convert(graph.graph, graph.inputs, graph.outputs, "float32", "here").data
    assert tflite.with_signature(signed, ["other"], ["names"], "here") == signed
    unsigned = _unsigned(graph)
    assert Interpreter(model_content=unsigned).get_signature_list() == {}  # why the target adds one
    assert Interpreter(model_content=tflite.with_signature(unsigned, ["x"], ["logits"], "here")
                       ).get_signature_list() == {"serving_default": {"inputs": ["x"], "outputs": ["logits"]}}
    with pytest.raises(KfreezeError, match="wrote 1 inputs and 1 outputs for optimized.pb's 2 and 1") as e:
        tflite.with_signature(unsigned, ["x", "y"], graph.outputs, "here")
    assert "\n" not in e.value.line()


def _unsigned(graph) -> bytes:
    from kfreeze.tfenv import tf

    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph.graph, name="")
    converter = tf.compat.v1.lite.TFLiteConverter(graph.graph, [g.get_tensor_by_name(f"{i}:0") for i in graph.inputs],
                                                  [g.get_tensor_by_name(f"{o}:0") for o in graph.outputs])
    return converter.convert()
