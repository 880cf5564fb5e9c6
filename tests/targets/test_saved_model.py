"""optimized.pb -> SavedModel: serving_default's keys, parity through tf.saved_model.load, same bytes twice
(TF's function counter renumbered, fingerprint.pb without its random uuid), saved_model_cli reads it,
and a corrupted saved_model.pb failing verify."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kfreeze import targets
from kfreeze.targets import saved_model as sm_target
from kfreeze.targets.check import check_target
from kfreeze.verify import probability_outputs
from tests.targets import graphs


def _build(tmp_path, graph):
    out = graph.write(tmp_path / "m")
    targets.write(out, "saved_model", targets.build("saved_model", out, "here"))
    return out


def _files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_serving_default_takes_and_returns_the_graphs_names(tmp_path):
    graph = graphs.conv_two_heads()
    out = _build(tmp_path, graph)
    sig = targets.read_signature(out, "saved_model")
    assert sig["requested"] and sig["file"] == "saved_model.pb" and sig["signature_key"] == "serving_default"
    assert sig["other_files"] == ["fingerprint.pb", "variables/variables.data-00000-of-00001",
                                  "variables/variables.index"]
    assert [(i["name"], i["shape"]) for i in sig["inputs"]] == [("image", [None, 6, 6, 2]), ("vec", [None, 4])]
    assert [(o["name"], o["shape"]) for o in sig["outputs"]] == [("fmap", [None, 6, 6, 4]), ("probs", [None, 3])]
    from kfreeze.tfenv import tf
    serve = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    assert set(serve.structured_input_signature[1]) == {"image", "vec"}
    assert set(serve.structured_outputs) == {"fmap", "probs"}
    feeds = graphs.feeds_for(graph, samples=5)
    got = sm_target.run_folder(out / "saved_model", feeds, graph.outputs, sig)
    assert graphs.rel_err(graphs.run_tf(graph, feeds), got) < 1e-6
    assert sm_target.op_count((out / "saved_model" / "saved_model.pb").read_bytes()) > 5


def test_same_graph_same_bytes_whatever_the_process_traced_before(tmp_path):
    """TF numbers a SavedModel's functions from a process-wide counter: renumbered, the files repeat."""
    first = _files(_build(tmp_path / "a", graphs.conv_two_heads()) / "saved_model")
    _build(tmp_path / "other", graphs.dense())  # advances TF's function counter
    second = _files(_build(tmp_path / "b", graphs.conv_two_heads()) / "saved_model")
    assert first.keys() == second.keys() and all(first[k] == second[k] for k in first), \
        [k for k in first if first[k] != second.get(k)]


def test_saved_model_cli_shows_the_signature(tmp_path):
    out = _build(tmp_path, graphs.conv_two_heads())
    cli = Path(sys.executable).parent / "saved_model_cli"
    shown = subprocess.run([str(cli), "show", "--dir", str(out / "saved_model"), "--tag_set", "serve",
                            "--signature_def", "serving_default"], capture_output=True, text=True, check=True).stdout
    assert "inputs['image'] tensor_info" in shown and "outputs['probs'] tensor_info" in shown
    assert "shape: (-1, 6, 6, 2)" in shown


def test_a_corrupted_constant_fails_verify_naming_the_target(tmp_path):
    """Negative control: a weight changed inside saved_model.pb is caught by verify's run of the SavedModel."""
    from tensorflow.core.framework import tensor_pb2  # noqa: F401 (the TensorProto inside the SavedModel)
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import tensor_util

    graph = graphs.conv_two_heads(batch=1)
    out = _build(tmp_path, graph)
    feeds = graphs.feeds_for(graph, samples=2)
    from kfreeze.verify import run_batched, run_graph
    reference = run_batched(lambda f: run_graph(graph.graph, f, graph.outputs), feeds, 1)
    check = lambda: check_target("saved_model", out, feeds, reference,  # noqa: E731
                                 probability_outputs(graph.graph, graph.outputs), 1e-4, 1e-5, 1)
    metrics, failures = check()
    assert failures == [] and metrics["passed"] and metrics["max_rel_diff"] < 1e-6
    path = out / "saved_model" / "saved_model.pb"
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(path.read_bytes())
    consts = [n for f in saved.meta_graphs[0].graph_def.library.function if "_pruned_" in f.signature.name
              for n in f.node_def if n.op == "Const" and n.attr["dtype"].type == 1]  # DT_FLOAT
    biggest = max(consts, key=lambda n: tensor_util.MakeNdarray(n.attr["value"].tensor).size)
    value = tensor_util.MakeNdarray(biggest.attr["value"].tensor) * np.float32(1.5)
    biggest.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value))
    path.write_bytes(saved.SerializeToString())
    metrics, failures = check()
    assert not metrics["passed"] and failures
    assert failures[0].startswith("target saved_model (saved_model/saved_model.pb): output ")
