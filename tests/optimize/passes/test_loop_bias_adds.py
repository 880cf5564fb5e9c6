"""loop_bias_adds: a ConvLSTM2D graph runs in a default (oneDNN) TF process, and the BiasAdd form would not."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from kfreeze import graphio
from kfreeze.cli import app
from kfreeze.keras_io import keras
from kfreeze.verify import run_default_tf


@pytest.mark.slow
def test_convlstm2d_runs_with_tf_defaults_and_bias_adds_in_the_loop_would_not(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4, 8, 8, 2)), keras.layers.ConvLSTM2D(3, 3, padding="same"),
                              keras.layers.Flatten(), keras.layers.Dense(4)])
    model.save(tmp_path / "convlstm.keras")
    result = CliRunner().invoke(app, ["run", str(tmp_path / "convlstm.keras"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["passed"] and metrics["tf_default_passed"]
    passes = json.loads((tmp_path / "out" / "passes.json").read_text())
    assert next(p for p in passes if p["pass"] == "loop_bias_adds")  # ran, in its place

    # The control: the loop's bias sums written back as BiasAdd fail in a default TF process.
    graph = graphio.read_graph(tmp_path / "out" / "optimized.pb")
    in_loops = graphio.loop_nodes(graph)
    by_name = {n.name: n for n in graph.node}
    flipped = 0
    for node in graph.node:
        bias = by_name.get(node.input[1].split(":")[0]) if node.op == "AddV2" else None
        if node.name in in_loops and bias is not None and bias.op == "Const" \
                and len(bias.attr["value"].tensor.tensor_shape.dim) == 1:
            node.op = "BiasAdd"
            node.attr["data_format"].s = b"NHWC"
            flipped += 1
    assert flipped
    graphio.write_graph(graph, tmp_path / "broken.pb")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 4, 8, 8, 2)).astype(np.float32)
    names = json.loads((tmp_path / "out" / "names.json").read_text())
    inp = names["inputs"][0].split(":")[0]
    ok, error = run_default_tf(tmp_path / "out" / "optimized.pb", {inp: x}, names["outputs"])
    assert error is None and np.all(np.isfinite(ok[names["outputs"][0]]))
    got, error = run_default_tf(tmp_path / "broken.pb", {inp: x}, names["outputs"])
    if not _has_avx512():  # oneDNN's failing rewrite was measured on AVX-512 kernels; AVX2 ones run the BiasAdd form
        pytest.skip("the control (a BiasAdd in the loop fails in default TF) reproduces on AVX-512 CPUs only; "
                    f"here it {'ran' if got is not None else 'failed: ' + str(error)[:100]}")
    assert got is None and "does not have value" in error


def _has_avx512() -> bool:
    from pathlib import Path
    info = Path("/proc/cpuinfo")
    return info.is_file() and " avx512f" in info.read_text()
