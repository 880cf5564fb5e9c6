"""verify end to end on TF1 graphs built in the test: training-default dropout, an Estimator
queue graph with a fixed batch, a NaN weight, and reruns in separate processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer

from kfreeze import commands, graphio
from tests.verify import tf1_fixtures

ROOT = Path(__file__).resolve().parents[2]


def stage(fn, name, project: Path, monkeypatch, **kw):
    monkeypatch.chdir(project)
    args = dict(name=name, params_file="params.yaml", build=Path("build"), debug=False, **kw)
    if fn is commands.verify:
        args["metrics"] = Path("metrics")
    return fn(**args)


def pipeline(name, project, monkeypatch):
    for fn in (commands.freeze, commands.optimize, commands.verify):
        stage(fn, name, project, monkeypatch)
    return json.loads((project / "metrics" / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def dropout_project(tmp_path_factory):
    project = tmp_path_factory.mktemp("drop")
    tf1_fixtures.dropout_graph(project / "models" / "drop")
    tf1_fixtures.dropout_graph(project / "models" / "nanw", nan=True)
    text = tf1_fixtures.params_text("drop", "[]", "[1, 6, 6, 1]")
    nan_entry = tf1_fixtures.params_text("nanw", "[IteratorGetNext]", "null", "").split("graphs:\n", 1)[1]
    (project / "params.yaml").write_text(text.replace("verify:", nan_entry + "verify:"))
    return project


@pytest.mark.slow
def test_training_default_dropout_is_identity_and_verify_compares_inference(dropout_project, monkeypatch):
    """keep_prob = placeholder_with_default(0.5): before, optimized.pb kept RandomUniform and verify
    compared two random draws (diff 0.4, top1 0.5)."""
    metrics = pipeline("drop", dropout_project, monkeypatch)
    optimized = graphio.read_graph(dropout_project / "build" / "drop" / "optimized.pb")
    assert not {"RandomUniform", "SelectV2", "GreaterEqual", "Floor"} & {n.op for n in optimized.node}
    assert metrics["passed"] and metrics["max_abs_diff"] < 1e-5 and metrics["top1_agree"] == {"softmax_tensor": 1.0}
    assert metrics["outputs"]["softmax_tensor"]["constant"] is False
    # the deployed graph answers the same on every call
    from kfreeze.verify import run_graph
    x = {"IteratorGetNext": np.random.default_rng(0).random((1, 6, 6, 1), dtype=np.float32)}
    a, b = (run_graph(optimized, x, ["softmax_tensor"])["softmax_tensor"] for _ in range(2))
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_verify_data_feeds_real_inputs_and_flags_a_constant_output(dropout_project, monkeypatch):
    """Inputs from models/drop/samples.npz; four identical rows make every output constant across samples."""
    from kfreeze import params, verify
    monkeypatch.chdir(dropout_project)
    if not (dropout_project / "build" / "drop" / "optimized.pb").exists():
        pipeline("drop", dropout_project, monkeypatch)
    row = np.random.default_rng(5).random((1, 6, 6, 1), dtype=np.float32)
    data = dropout_project / "models" / "drop" / "samples.npz"
    np.savez(data, IteratorGetNext=np.repeat(row, 4, axis=0))
    try:
        spec = params.model_spec("drop", "params.yaml")
        verdict = verify.verify_model(spec, params.VerifySpec(data="samples.npz"), Path("build/drop"))
    finally:
        data.unlink()
    assert verdict.passed and verdict.metrics["inputs_from"] == "models/drop/samples.npz"
    assert verdict.metrics["samples"] == 4 and verdict.metrics["constant_outputs"] == ["softmax_tensor"]
    assert any("hardly depends on the input" in w for w in verdict.warnings)


@pytest.mark.slow
def test_a_nan_weight_fails_verify_and_leaves_no_metrics(dropout_project, monkeypatch, capsys):
    metrics = dropout_project / "metrics" / "nanw.json"
    metrics.parent.mkdir(exist_ok=True)
    metrics.write_text('{"max_abs_diff": 0.0}\n')  # a stale result from an earlier, passing run
    stage(commands.freeze, "nanw", dropout_project, monkeypatch)
    stage(commands.optimize, "nanw", dropout_project, monkeypatch)
    with pytest.raises(typer.Exit):
        stage(commands.verify, "nanw", dropout_project, monkeypatch)
    err = capsys.readouterr().err
    assert "output 'softmax_tensor': NaN or Inf in the reference and the optimized graph" in err
    assert "verify_failed.json" in err and "Traceback" not in err
    assert not metrics.exists()
    report = json.loads((dropout_project / "build" / "nanw" / "verify_failed.json").read_text())
    assert report["passed"] is False and report["failures"]


@pytest.fixture(scope="module")
def estimator_project(tmp_path_factory):
    project = tmp_path_factory.mktemp("est")
    tf1_fixtures.estimator_graph(project / "models" / "est")
    return project


def _params(project, inputs, shape):
    (project / "params.yaml").write_text(tf1_fixtures.params_text("est", inputs, shape))


def test_queue_graph_discovery_picks_the_float_features(estimator_project):
    from kfreeze import nodes
    inputs, _ = nodes.discover(graphio.read_graph(estimator_project / "models" / "est" / "graph.pbtxt"))
    assert inputs[0].name == "fifo_queue_DequeueMany:1" and inputs[0].dtype == "float"
    assert "fifo_queue_DequeueMany" not in [c.name for c in inputs]  # the int64 row index feeds no output


@pytest.mark.slow
def test_fixed_batch_graph_verifies_at_its_own_batch(estimator_project, monkeypatch):
    """inputs: [] and input_shape: null: the discovered [100, 64] features; 16 samples padded to 100."""
    _params(estimator_project, "[]", "null")
    metrics = pipeline("est", estimator_project, monkeypatch)
    assert metrics["passed"] and metrics["samples"] == 16 and metrics["max_abs_diff"] < 1e-5


@pytest.mark.slow
def test_fixed_batch_cut_to_batch_one(estimator_project, monkeypatch):
    """The seed recipe's strip_unused_nodes(shape="1,...") cut: Reshape [100, 8, 8, 1] becomes a [1, 8, 8, 1] input."""
    _params(estimator_project, "[input_layer]", "[1, 8, 8, 1]")
    metrics = pipeline("est", estimator_project, monkeypatch)
    optimized = graphio.read_graph(estimator_project / "build" / "est" / "optimized.pb")
    placeholder = next(n for n in optimized.node if n.name == "input_layer")
    assert [d.size for d in placeholder.attr["shape"].shape.dim] == [1, 8, 8, 1]
    assert metrics["passed"] and metrics["samples"] == 16 and metrics["max_abs_diff"] < 1e-5


@pytest.mark.slow
def test_rebatching_before_the_reshape_names_the_node_to_cut(estimator_project, monkeypatch, capsys):
    _params(estimator_project, "['fifo_queue_DequeueMany:1']", "[1, 64]")
    stage(commands.freeze, "est", estimator_project, monkeypatch)
    with pytest.raises(typer.Exit):
        stage(commands.optimize, "est", estimator_project, monkeypatch)
    err = capsys.readouterr().err
    assert "node 'input_layer' needs that batch" in err and "input_shape [100, 64]" in err


@pytest.mark.slow
@pytest.mark.e2e  # several processes: make test-e2e
def test_verify_metrics_are_byte_identical_across_processes_and_cpus(dropout_project, monkeypatch):
    """two_heads gave max_abs_diff 1.46e-06 on an AVX-512 CPU and 1.39e-06 on AVX2: oneDNN's
    sgemm picks its kernel by CPU. The rerun here pretends to be each machine in turn."""
    project = dropout_project
    for fn in (commands.freeze, commands.optimize):  # also when this test runs alone
        stage(fn, "drop", project, monkeypatch)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("KFREEZE_CPU_ISA", None)
    outs = []
    for i, isa in enumerate(("AVX512_CORE", "AVX2")):
        metrics = project / f"m{i}"
        proc = subprocess.run([sys.executable, "-m", "kfreeze.cli", "verify", "drop", "--metrics", str(metrics)],
                              cwd=project, env={**env, "ONEDNN_MAX_CPU_ISA": isa}, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        outs.append((metrics / "drop.json").read_bytes())
    assert outs[0] == outs[1]
