"""Integer inputs are drawn over the ids their first layer takes (an Embedding's input_dim)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from kfreeze import graphio, verify
from kfreeze.cli import app
from kfreeze.keras_io import keras


@pytest.mark.slow
def test_a_text_model_is_fed_every_id_of_its_embedding(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12,), dtype="int32"), keras.layers.Embedding(5000, 8),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(3)])
    model.save(tmp_path / "text.keras")
    result = CliRunner().invoke(app, ["run", str(tmp_path / "text.keras"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.stderr
    assert "hardly depends on the input" not in result.stderr
    graph = graphio.read_graph(tmp_path / "out" / "optimized.pb")
    names = json.loads((tmp_path / "out" / "names.json").read_text())
    feed = names["inputs"][0].split(":")[0]
    assert verify.index_limits(graph, [feed]) == {feed: 5000}
    infos = verify.placeholder_infos(graph, [feed])
    ids = verify.make_inputs(infos, 16, 0, index_limits={feed: 5000})[feed]
    assert ids.min() >= 0 and ids.max() < 5000 and ids.max() > 1000
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["constant_outputs"] == []
