"""kfreeze.saved_model: a signature frozen, named after its keys, the policy and size checks first."""

import numpy as np
import pytest

from kfreeze import saved_model as sm
from kfreeze.errors import KfreezeError
from kfreeze.tfenv import tf
from tests.saved_models import save_tf1_examples


def _save(folder):
    class M(tf.Module):
        def __init__(self):
            super().__init__()
            self.k = tf.Variable(3.0)

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="zeta"),
                                      tf.TensorSpec([None, 2], tf.float32, name="alpha")])
        def f(self, first, second):
            return {"b_out": first - second, "a_out": self.k * first, "same": first}

    m = M()
    tf.saved_model.save(m, str(folder), signatures={"serving_default": m.f})
    return folder


def test_inputs_and_outputs_take_the_signature_keys(tmp_path):
    """Spec names that are not the argument names, outputs in another order, an output that is an input."""
    folder = _save(tmp_path / "sm")
    frozen = sm.freeze(folder, "serving_default")
    assert frozen.inputs == ["alpha", "zeta"] and frozen.outputs == ["a_out", "b_out", "same"]
    assert frozen.converted == 1
    assert not {n.op for n in frozen.graph.node} & {"VarHandleOp", "ReadVariableOp"}
    zeta, alpha = np.ones((2, 2), np.float32), np.full((2, 2), 5.0, np.float32)
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(frozen.graph, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            got = sess.run(["a_out:0", "b_out:0", "same:0"], {"zeta:0": zeta, "alpha:0": alpha})
    want = sm.run_signature(folder, "serving_default", {"zeta": zeta, "alpha": alpha}, frozen.outputs)
    for name, value in zip(frozen.outputs, got):
        np.testing.assert_array_equal(value, want[name])
    np.testing.assert_array_equal(want["b_out"], zeta - alpha)


def test_a_missing_signature_lists_the_keys(tmp_path):
    folder = _save(tmp_path / "sm")
    meta = sm.read_meta_graph(folder)
    with pytest.raises(KfreezeError, match=r"has no signature 'predict' \(it has serving_default\)"):
        sm.signature_key(meta, "predict", folder, "params.yaml: graphs.g.signature")


def test_variables_over_2_gib_are_refused_before_loading(tmp_path):
    folder = _save(tmp_path / "sm")
    data = next((folder / "variables").glob("variables.data-*"))
    with open(data, "r+b") as f:  # sparse: no disk used
        f.truncate(2**31 + 10)
    with pytest.raises(KfreezeError, match="over protobuf's 2 GiB limit"):
        sm.check(folder, "serving_default", "params.yaml: graphs.g.graph", "graphs.g", False)


def test_nodes_lists_the_signatures_without_loading(tmp_path):
    from typer.testing import CliRunner

    from kfreeze.cli import app
    folder = _save(tmp_path / "sm")
    result = CliRunner().invoke(app, ["nodes", str(folder)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "signature serving_default (the default):"
    assert [line.split()[:3] for line in lines[1:]] == [
        ["input", "alpha", "float32"], ["input", "zeta", "float32"], ["output", "a_out", "float32"],
        ["output", "b_out", "float32"], ["output", "same", "float32"]]


def test_a_tf1_saved_model_cut_after_its_example_parsing(tmp_path):
    """A TF1 SavedModel with tf.Example input: refused as a whole (the parsing is no inference op kfreeze
    knows), checked from the cut at the parsed feature; frozen whole, its output named after its key."""
    folder = save_tf1_examples(tmp_path / "sm", tags=())
    with pytest.raises(KfreezeError, match="ParseExampleV2 op"):
        sm.check(folder, "serving_default", "w", None, False)
    sm.check(folder, "serving_default", "w", None, False, cut=["ParseExample/ParseExampleV2"])
    frozen = sm.freeze(folder, "serving_default")
    assert frozen.outputs == ["scores"] and frozen.renamed["output_node"] == "scores"
    assert frozen.converted == 1  # the reference variable, frozen inside the signature function
    assert not {n.op for n in frozen.graph.node} & {"VariableV2", "RestoreV2"}
    example = tf.train.Example(features=tf.train.Features(
        feature={"feature": tf.train.Feature(float_list=tf.train.FloatList(value=[2.0]))})).SerializeToString()
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(frozen.graph, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            assert sess.run("scores:0", {"examples:0": [example]}).tolist() == [2.0]
