"""Legacy recurrent sources through every stage, in-process: convert -> export -> freeze -> optimize -> verify.

The optimized graph is run here on inputs of our own and compared with the independent reference
(numpy for Keras 1, tf_keras itself for Keras 2), besides verify's own comparison.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import keras1_rnn as k1
from legacy_helpers import Saved, randomize
from test_legacy_rnn import KERAS2, _keras22, _rnn_model, keras1_sequential, tokens
from kfreeze import commands, graphio
from tests.entries import keras_entry, params_text
from kfreeze.verify import run_graph

import tf_keras  # noqa: E402



def run_pipeline(tmp_path, monkeypatch, name, source, arch=None):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(params_text({name: keras_entry(source, arch=arch)}, samples=8))
    for stage in (commands.convert, commands.export, commands.freeze, commands.optimize, commands.verify):
        stage(name, params_file="params.yaml", build=tmp_path / "build", **(
            {"metrics": tmp_path / "metrics"} if stage is commands.verify else {}), debug=True)
    out = tmp_path / "build" / name
    return graphio.read_graph(out / "optimized.pb"), graphio.read_json(out / "names.json"), \
        json.loads((tmp_path / "metrics" / f"{name}.json").read_text())


@pytest.mark.slow  # every stage (3.8 s); the other Keras 1 RNN paths stay in the quick tier
def test_keras1_lstm_json_and_weights_end_to_end(tmp_path, monkeypatch):
    folder = tmp_path / "models" / "k1lstm"
    folder.mkdir(parents=True)
    config, stored, forward = keras1_sequential()
    k1.write_keras1(folder / "weights.h5", config, stored, arch=folder / "model.json")
    graph, names, metrics = run_pipeline(tmp_path, monkeypatch, "k1lstm", "models/k1lstm/weights.h5",
                                         "models/k1lstm/model.json")
    assert metrics["max_abs_diff"] <= 1e-5 and metrics["reference"] == "legacy"
    x = tokens(n=6)
    got = run_graph(graph, {f"{names['inputs'][0]}:0": x}, names["outputs"])
    assert k1.relative_error(got[names["outputs"][0]], forward(x)) <= 1e-5
    assert not any(n.op.startswith("Random") for n in graph.node)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["lstm_hard_sigmoid", "bidirectional_lstm"])
def test_keras22_rnn_h5_end_to_end(tmp_path, monkeypatch, case):
    folder = tmp_path / "models" / "k2rnn"
    folder.mkdir(parents=True)
    m = _rnn_model(KERAS2[case], name=case)
    saved = Saved(m, folder)
    _keras22(saved.full)
    graph, names, metrics = run_pipeline(tmp_path, monkeypatch, "k2rnn", f"models/k2rnn/{saved.full.name}")
    assert metrics["max_abs_diff"] <= 1e-5
    x = np.random.default_rng(5).normal(size=(4, 6, 3)).astype(np.float32)
    got = run_graph(graph, {f"{names['inputs'][0]}:0": x}, names["outputs"])
    assert k1.relative_error(got[names["outputs"][0]], m(x)) <= 1e-5
