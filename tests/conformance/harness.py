"""Run one Keras model through convert -> export -> freeze -> optimize -> verify, in-process.

What a DVC stage runs is called (``pipeline.resolve``, then ``pipeline.from_settings`` per stage, so
a KfreezeError reaches the caller as an exception, not as an exit code), in a throwaway project
folder with its own params.yaml.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from kfreeze import graphio, pipeline
from kfreeze.keras_io import keras
from kfreeze.tfenv import tf

SAMPLES = 4
SEED = 0
REL_TOL = 1e-5  # float32: max|diff| / max|ref| over every output
TIMES: dict[str, float] = {}  # seconds per stage over the session: where the budget goes
STAGES = ("convert", "export", "freeze", "optimize", "onnx", "tflite", "verify")
TARGETS = ("onnx", "tflite")  # the siblings each row is also built for (kfreeze.targets)
RANDOM_OPS = {"RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal", "Multinomial",
              "RandomShuffle", "RandomGamma", "RandomPoisson", "RandomPoissonV2"}


@contextlib.contextmanager
def chdir(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def entry(source: str, **overrides) -> dict:
    from tests.entries import keras_entry
    return keras_entry(source, **overrides)


@dataclass
class Run:
    name: str
    project: Path
    metrics: dict = field(default_factory=dict)
    rel_err: float | None = None           # TF session on optimized.pb vs Keras
    opencv_rel_err: float | None = None
    opencv_error: str | None = None
    random_ops: list = field(default_factory=list)
    reference: dict = field(default_factory=dict)
    targets: dict = field(default_factory=dict)        # verify's metrics per sibling that was built
    target_errors: dict = field(default_factory=dict)  # target -> why its stage could not make it

    @property
    def build(self) -> Path:
        return self.project / "build" / self.name


def run_stages(project: Path, name: str, stages=STAGES) -> None:
    with chdir(project):
        for stage in stages:
            t = time.perf_counter()
            if stage == stages[0]:  # what 'dvc repro' runs first: the settings files the stages read
                pipeline.resolve(name, "params.yaml", Path("build"))
            pipeline.from_settings(stage, name, Path("build"), Path("metrics"))
            TIMES[stage] = TIMES.get(stage, 0.0) + time.perf_counter() - t


def write_project(project: Path, name: str, model: keras.Model, suffix: str = ".keras", **overrides) -> Path:
    folder = project / "models" / name
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / f"model{suffix}")
    params = {"models": {name: entry(f"models/{name}/model{suffix}", **overrides)}, "graphs": {},
              "verify": {"samples": SAMPLES, "seed": SEED, "atol": 1.0e-4}}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=True))
    return project


def keras_reference(model: keras.Model, optimized, inputs: list[str]) -> dict[str, np.ndarray]:
    """Keras' own outputs on verify's feeds (same seed and samples), keyed by the exported output names."""
    from kfreeze import verify as verify_lib
    from kfreeze.export import output_layer_names
    from kfreeze.keras_io import input_structure

    if not getattr(model, "inputs", None):  # subclassed: called as the pipeline calls it
        from kfreeze.keras_io import as_functional
        model = as_functional(model, model.name)
    feeds = verify_lib.make_inputs(verify_lib.placeholder_infos(optimized, inputs), SAMPLES, SEED)
    batch = next(iter(feeds.values())).shape[0]
    fixed = [t.shape[0] for t in tf.nest.flatten(input_structure(model))][0]

    def call(chunk):
        for layer in model._flatten_layers():
            if getattr(layer, "stateful", False):
                layer.reset_states()
        args = [tf.constant(chunk[n]) for n in inputs]
        out = model(tf.nest.pack_sequence_as(input_structure(model), args), training=False)
        return dict(zip(output_layer_names(model), (np.asarray(t) for t in tf.nest.flatten(out))))

    return feeds, verify_lib.run_batched(call, feeds, fixed if fixed and fixed != batch else None)


def rel_err(ref: dict, got: dict) -> float:
    worst = 0.0
    for k, r in ref.items():
        r = np.asarray(r, np.float64)
        g = np.asarray(got[k], np.float64).reshape(r.shape)
        scale = float(np.max(np.abs(r))) or 1.0
        worst = max(worst, float(np.max(np.abs(g - r))) / scale)
    return worst


def _build_targets(project: Path, name: str, result: Run) -> None:
    """Each target stage on its own: one that cannot be made is recorded and left out of verify."""
    from kfreeze.errors import KfreezeError

    params = yaml.safe_load((project / "params.yaml").read_text())
    for target in [t for t in params["models"][name]["targets"] if t != "tf"]:
        try:
            run_stages(project, name, (target,))
        except KfreezeError as e:
            result.target_errors[target] = e.problem
            params["models"][name]["targets"].remove(target)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=True))


def _verify(project: Path, name: str) -> dict:
    """verify's metrics; a verify failed by a sibling alone still gives them (from verify_failed.json)."""
    from kfreeze.errors import KfreezeError

    try:
        run_stages(project, name, ("verify",))
    except KfreezeError:
        report = project / "build" / name / "verify_failed.json"
        failed = json.loads(report.read_text()) if report.is_file() else {}
        if not failed.get("failures") or not all(f.startswith("target ") for f in failed["failures"]):
            raise
        return failed
    return json.loads((project / "metrics" / f"{name}.json").read_text())


def run_model(tmp: Path, name: str, model: keras.Model, suffix: str = ".keras", targets: tuple = (),
              **overrides) -> Run:
    """Every stage, then Keras vs the TF session on optimized.pb by relative error, and OpenCV's outcome;
    ``targets`` are built too, each recorded as it comes out (made and verified, or why not)."""
    from kfreeze import verify as verify_lib

    project = write_project(tmp, name, model, suffix, **{"targets": ["tf", *targets], **overrides})
    run_stages(project, name, STAGES[:4])
    result = Run(name, project)
    _build_targets(project, name, result)
    result.metrics = _verify(project, name)
    result.targets = result.metrics.get("targets", {})
    optimized = graphio.read_graph(result.build / "optimized.pb")
    names = json.loads((result.build / "names.json").read_text())
    feeds, ref = keras_reference(model, optimized, names["inputs"])
    batch = verify_lib.placeholder_infos(optimized, names["inputs"])[0].shape[0]
    got = verify_lib.run_batched(lambda f: verify_lib.run_graph(optimized, f, names["outputs"]), feeds, batch)
    result.reference = ref
    result.rel_err = rel_err(ref, got)
    result.random_ops = sorted({n.op for n in optimized.node if n.op in RANDOM_OPS or n.op.startswith("StatelessRandom")})
    result.opencv_error = result.metrics.get("opencv_error")
    ocv = result.metrics.get("opencv_max_abs_diff")
    if ocv is not None:
        scale = max(float(np.max(np.abs(r))) for r in ref.values()) or 1.0
        result.opencv_rel_err = ocv / scale
    return result
