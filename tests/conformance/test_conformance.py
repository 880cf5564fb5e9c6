"""The conformance matrix: one tiny model per model kind and layer family, through every stage
in-process, compared with Keras by relative error; docs/conformance.md must match the run."""

from __future__ import annotations

import re

import numpy as np
import pytest

from kfreeze import graphio
from tests.conformance import harness, matrix, zoo

RESULTS: dict[str, dict] = {}   # row id -> matrix outcome, filled by test_row
RUNS: dict[str, harness.Run] = {}


# make test (and test-quick) runs one row per kind of thing that broke before (and the rows the
# rerun test needs); make test-matrix runs them all, and only a full run checks docs/conformance.md.
QUICK_ROWS = {"seq_input", "functional", "nested_functional", "shared_layers", "multi_io", "subclassed",
              "lstm_seq", "bidirectional", "stateful"}


@pytest.mark.parametrize("row", [pytest.param(r, id=r.id, marks=() if r.id in QUICK_ROWS else
                                              (pytest.mark.slow, pytest.mark.matrix))
                                 for r in zoo.ROWS])
def test_row(row, tmp_path):
    run, RESULTS[row.id] = matrix.run_row(row, tmp_path)
    assert run is not None, RESULTS[row.id]["tf"]
    RUNS[row.id] = run
    assert run.rel_err <= harness.REL_TOL, f"{row.id}: relative error {run.rel_err:.2e}"
    # Both ways: kfreeze's pinned session (above) and a TF process with TF's defaults (oneDNN on).
    assert run.metrics["tf_default_passed"], f"{row.id}: fails in a default TensorFlow process"
    assert not run.random_ops, f"{row.id}: random ops left in optimized.pb: {run.random_ops}"
    # Outputs depend on the input: different samples give different outputs.
    for name, ref in run.reference.items():
        ref = np.asarray(ref).reshape(len(ref), -1)
        assert np.ptp(ref, axis=0).max() > 1e-3, f"{row.id}: output {name} does not depend on the input"
    # OpenCV's outcome is recorded either way; when it loads the graph, it must agree too.
    if run.opencv_error is None:
        assert run.opencv_rel_err <= matrix.OPENCV_REL_TOL, f"{row.id}: OpenCV relative error {run.opencv_rel_err:.2e}"
    # Each target is made and agrees within verify's tolerances, or its stage names the op that blocks it.
    assert set(run.targets) | set(run.target_errors) == set(harness.TARGETS), row.id
    for target, got in run.targets.items():
        assert got["passed"] and got["max_rel_diff"] <= harness.REL_TOL, f"{row.id}: {target} {got}"
    for target, error in run.target_errors.items():
        assert re.match(r"op \w+", error) and "\n" not in error, f"{row.id}: {target}: {error}"


def test_a_broken_fold_fails_the_parity_check():
    """Negative control: one weight in optimized.pb off by 1% gives a relative error over tolerance."""
    run = RUNS.get("functional")
    if run is None:
        pytest.skip("the functional row did not run")
    from kfreeze import verify as verify_lib
    from kfreeze.tfenv import tf

    import json
    graph = graphio.read_graph(run.build / "optimized.pb")
    names = json.loads((run.build / "names.json").read_text())
    const = max((n for n in graph.node if n.op == "Const" and n.attr["dtype"].type == tf.float32.as_datatype_enum),
                key=lambda n: (tf.make_ndarray(n.attr["value"].tensor).size, n.name))
    value = tf.make_ndarray(const.attr["value"].tensor).copy()
    flat = value.reshape(-1)
    flat[np.argmax(np.abs(flat))] *= 1.01
    const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    feeds = verify_lib.make_inputs(verify_lib.placeholder_infos(graph, names["inputs"]), harness.SAMPLES, harness.SEED)
    got = verify_lib.run_graph(graph, feeds, names["outputs"])
    assert harness.rel_err(run.reference, got) > harness.REL_TOL


@pytest.mark.parametrize("row_id", ["bidirectional", "subclassed",  # the other three: make test-matrix
                                    *(pytest.param(r, marks=pytest.mark.matrix)
                                      for r in ("stateful", "nested_functional", "shared_layers"))])
def test_rerun_is_byte_identical(row_id, tmp_path):
    """Same source file, second run in this process (Keras' name counters moved on): same bytes,
    for RNN loop bodies, nested models, shared layers and subclassed models."""
    import shutil

    first = RUNS.get(row_id)
    if first is None:
        pytest.skip(f"the {row_id} row did not run")
    shutil.copytree(first.project / "models", tmp_path / "models")
    shutil.copy(first.project / "params.yaml", tmp_path / "params.yaml")
    harness.run_stages(tmp_path, row_id, ("convert", "export", "freeze", "optimize"))
    for artifact in ("model/model.keras", "graph.pbtxt", "ckpt/model.ckpt.index", "frozen.pb", "optimized.pb"):
        again = (tmp_path / "build" / row_id / artifact).read_bytes()
        assert again == (first.build / artifact).read_bytes(), artifact
    if row_id == "bidirectional":  # loop frames are named after the layers, with no counter of kfreeze's
        import json
        import zipfile
        with zipfile.ZipFile(first.build / "model" / "model.keras") as archive:
            layers = json.loads(archive.read("config.json"))["config"]["layers"]
        bi = next(x for x in layers if x["config"]["name"] == "bi")["config"]
        # 'forward_lstm', or 'forward_lstm_2' when other tests made LSTMs first in this process
        names = [bi[key]["config"]["name"] for key in ("layer", "backward_layer")]
        frames = {n.attr["frame_name"].s.decode() for n in graphio.read_graph(first.build / "frozen.pb").node
                  if n.op == "Enter"}
        assert frames == {f"bidir/bi/{name}/while" for name in names}, frames


def test_docs_conformance_matches_the_run():
    if set(RESULTS) != {r.id for r in zoo.ROWS}:
        pytest.skip("only part of the matrix ran")
    expected = matrix.render(RESULTS)
    assert matrix.DOC.is_file(), "run: python -m tests.conformance.matrix"
    assert matrix.DOC.read_text() == expected, "docs/conformance.md is stale: run python -m tests.conformance.matrix"
