"""The openvino and saved_model targets on a Keras model with trained-looking weights (zoo.build: random
BatchNorm statistics): every stage, then each target's outputs against Keras' own by relative error."""

from __future__ import annotations

import json

import pytest

from tests.conformance import harness, zoo

NEW = ("openvino", "saved_model")


@pytest.fixture(scope="module")
def keras_run(tmp_path_factory):
    row = next(r for r in zoo.ROWS if r.id == "functional")  # conv + batch norm + dense
    model = zoo.build(row)
    run = harness.run_model(tmp_path_factory.mktemp("p"), row.id, model, targets=NEW)
    return run, model


@pytest.mark.slow
@pytest.mark.parametrize("target", NEW)
def test_verify_passes_each_target_against_keras(keras_run, target):
    run, _ = keras_run
    assert run.target_errors == {} and run.metrics["passed"]
    got = run.targets[target]
    assert got["passed"] and got["max_rel_diff"] < 1e-5 and got["ops"] > 3, got


@pytest.mark.parametrize("target", NEW)
def test_each_target_against_keras_directly(keras_run, target):
    """Not through verify: the target's runtime on Keras' inputs, against Keras' outputs."""
    from kfreeze.targets import get, read_signature

    run, model = keras_run
    names = json.loads((run.build / "names.json").read_text())
    from kfreeze import graphio
    feeds, ref = harness.keras_reference(model, graphio.read_graph(run.build / "optimized.pb"), names["inputs"])
    sig = read_signature(run.build, target)
    got = get(target).load().run_folder(run.build / target, feeds, list(ref), sig)
    assert harness.rel_err(ref, got) < 1e-5
    assert max(abs(v).max() for v in ref.values()) > 0.1  # outputs of a real scale, not near zero
