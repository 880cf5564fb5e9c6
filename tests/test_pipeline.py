"""The DVC pipeline end to end in a temporary git repository: build, rerun rules, no-op."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import build_tiny
from tests.entries import graph_entry, params_text

pytestmark = pytest.mark.slow  # real dvc runs / child processes: minutes, not seconds

ROOT = Path(__file__).resolve().parents[1]
PARAMS = params_text(
    models={"alpha": {"source": "models/alpha/model.keras"}},  # only what differs from the defaults
    graphs={"gamma": graph_entry("models/gamma/graph.pbtxt", "models/gamma/model.ckpt-600", inputs=["IteratorGetNext"],
                                 outputs=["softmax_tensor"], input_shape=[1, 20, 20, 1], input_dtype="float32")},
    samples=4)


def sh(*cmd, cwd, **extra_env):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), **extra_env}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{cmd}: {result.stdout}\n{result.stderr}"
    return result.stdout


def repro(cwd) -> list[str]:
    """The per-model stages that ran; the project-wide `summary` and `resolve` stages (resolve runs on
    every params.yaml edit and changes only the settings files an edit changes) are left out."""
    out = sh("dvc", "repro", cwd=cwd)
    return sorted(s for s in re.findall(r"Running stage '([^']+)'", out)
                  if s not in ("summary", "resolve"))


def first_to_rerun(repo) -> list[str]:
    """The per-model stages that `dvc repro` would start with after an edit.

    ``resolve`` (no TensorFlow) runs for real and rewrites the settings files; ``dvc status`` then
    names each stage whose dependencies (its settings file, its source) changed. The stages
    downstream of those rerun only if their inputs' bytes change: the e2e tests below rerun for
    real to check that part.
    """
    sh("dvc", "repro", "resolve", cwd=repo)
    status = json.loads(sh("dvc", "status", "--json", cwd=repo) or "{}")
    return sorted(s for s in status if s not in ("summary", "resolve"))


@pytest.fixture
def undo(built):
    """Each rule test edits the built project; afterwards its params.yaml and models/ are put back
    and the project is up to date again (nothing to rerun), so the tests stay independent."""
    repo = built[0]
    params = (repo / "params.yaml").read_text()
    saved = repo.parent / f"{repo.name}-models"
    shutil.rmtree(saved, ignore_errors=True)
    shutil.copytree(repo / "models", saved, symlinks=True)
    yield repo
    (repo / "params.yaml").write_text(params)
    shutil.rmtree(repo / "models")
    shutil.copytree(saved, repo / "models", symlinks=True)
    assert first_to_rerun(repo) == []


def edit(repo, section, name, **keys):
    import yaml
    path = repo / "params.yaml"
    data = yaml.safe_load(path.read_text())
    data[section][name].update(keys)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    for item in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / item, repo / item)
    for item in ("stages", "kfreeze"):
        shutil.copytree(ROOT / item, repo / item, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "models" / "alpha").mkdir(parents=True)
    build_tiny(0).save(repo / "models" / "alpha" / "model.keras")
    # A TF1 graph + checkpoint: the committed example (training graph, tf.data input).
    shutil.copytree(ROOT / "models" / "digits_tf1", repo / "models" / "gamma",
                    ignore=shutil.ignore_patterns("*.py", "*.md"))
    (repo / "params.yaml").write_text(PARAMS)
    sh("git", "init", "-q", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    sh("dvc", "config", "core.analytics", "false", cwd=repo)
    return repo


@pytest.fixture(scope="module")
def built(repo):
    """The first `dvc repro` of the project: every stage of every model, for real."""
    return repo, repro(repo)


# onnx and tflite run for every model: without those targets they only write a marker (no TensorFlow).
from kfreeze.targets.registry import EXTRA  # noqa: E402

STAGES = ("convert", "export", "freeze", "optimize", *EXTRA, "verify")
TF1_STAGES = ("freeze_tf1", "optimize_tf1", *(f"{t}_tf1" for t in EXTRA), "verify_tf1")


def test_first_repro_builds_everything(built):
    repo, ran = built
    assert ran == sorted([f"{s}@alpha" for s in STAGES] +
                         [f"{s}@gamma" for s in TF1_STAGES])
    assert "alpha" in (repo / "plots" / "models.csv").read_text()  # the summary stage ran too
    for model in ("alpha", "gamma"):
        metrics = json.loads((repo / "metrics" / f"{model}.json").read_text())
        assert metrics["max_abs_diff"] <= 1e-5
        assert metrics["ops_optimized"] < metrics["ops_frozen"]
        assert metrics["opencv_error"] is None and metrics["opencv_max_abs_diff"] <= 1e-4
        assert metrics["targets"] == {}  # targets default to [tf]


def test_second_repro_runs_nothing(built):
    assert repro(built[0]) == []


# -- rerun rules: which stages an edit reaches (resolve + dvc status, no TensorFlow) -----------

def test_editing_outputs_reaches_only_that_models_freeze_optimize_verify(undo):
    edit(undo, "models", "alpha", outputs=["probs"])
    assert first_to_rerun(undo) == ["freeze@alpha", "optimize@alpha", "verify@alpha"]


def test_editing_input_shape_reaches_only_optimize_and_verify(undo):
    edit(undo, "models", "alpha", input_shape=[2, 8, 8, 1])
    assert first_to_rerun(undo) == ["optimize@alpha", "verify@alpha"]


def test_replacing_a_source_reaches_its_convert_and_verify(undo):
    """verify reads the source too: it is the reference the graph is compared with."""
    build_tiny(seed=5).save(undo / "models" / "alpha" / "model.keras")
    assert first_to_rerun(undo) == ["convert@alpha", "verify@alpha"]


def test_tf1_node_name_edit_reaches_only_its_freeze_optimize_verify(undo):
    edit(undo, "graphs", "gamma", inputs=["IteratorGetNext:0"])
    assert first_to_rerun(undo) == ["freeze_tf1@gamma", "optimize_tf1@gamma", "verify_tf1@gamma"]


def test_tf1_new_checkpoint_reaches_its_freeze_and_verify(undo):
    """Retrained weights under the same prefix: freeze reads them, and verify's checkpoint reference too."""
    from kfreeze.tfenv import tf
    from tests.conftest import save_checkpoint
    prefix = str(undo / "models" / "gamma" / "model.ckpt-600")
    reader = tf.compat.v1.train.NewCheckpointReader(prefix)
    values = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}
    save_checkpoint({k: v * 1.01 if k.endswith("kernel") else v for k, v in values.items()}, prefix)
    assert first_to_rerun(undo) == ["freeze_tf1@gamma", "verify_tf1@gamma"]


def test_editing_verify_atol_reaches_only_the_verify_stages(undo):
    import yaml
    path = undo / "params.yaml"
    data = yaml.safe_load(path.read_text())
    data["verify"]["atol"] = 2.0e-4
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert first_to_rerun(undo) == ["verify@alpha", "verify_tf1@gamma"]


def test_adding_a_target_reaches_only_that_targets_stage_and_verify(undo):
    edit(undo, "models", "alpha", targets=["tf", "tflite"])
    edit(undo, "graphs", "gamma", targets=["tf", "onnx"])
    assert first_to_rerun(undo) == ["onnx_tf1@gamma", "tflite@alpha", "verify@alpha", "verify_tf1@gamma"]


def test_a_misspelled_key_gets_kfreezes_did_you_mean(undo):
    edit(undo, "models", "alpha", ouputs=["probs"])
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT)}
    result = subprocess.run(["dvc", "repro"], cwd=undo, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode != 0
    assert "error: params.yaml: models.alpha: unknown key 'ouputs' (did you mean 'outputs'?)" in result.stderr
    assert "are missing" not in result.stdout + result.stderr


def test_a_model_name_with_shell_in_it_never_reaches_a_shell(undo):
    """dvc.yaml puts ${key} into shell commands: resolve, whose command holds no name, refuses it first."""
    import yaml
    path = undo / "params.yaml"
    evil = "x;touch${IFS}PWNED;#"
    data = yaml.safe_load(path.read_text())
    data["models"][evil] = {"source": f"models/{evil}/model.keras"}
    (undo / "models" / evil).mkdir()
    build_tiny().save(undo / "models" / evil / "model.keras")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT)}
    result = subprocess.run(["dvc", "repro"], cwd=undo, env=env, capture_output=True, text=True, timeout=900)
    assert not list(undo.rglob("PWNED")), "a model name ran as a shell command"
    assert result.returncode != 0
    assert "models.'x;touch${IFS}PWNED;#': model name may only use a-z" in result.stderr, result.stderr
    assert "Running stage 'convert@" not in result.stdout  # resolve refused the name: no per-model stage ran


def test_a_dvc_tracked_source_reruns_nothing_until_its_bytes_change(undo):
    """dvc add models/<name>/model.keras: the file leaves git; the stages still see it and rerun on a new one."""
    sh("dvc", "add", "-q", "models/alpha/model.keras", cwd=undo)
    assert (undo / "models" / "alpha" / "model.keras.dvc").is_file()
    assert first_to_rerun(undo) == []  # the same bytes: nothing to do
    build_tiny(seed=7).save(undo / "models" / "alpha" / "model.keras")
    sh("dvc", "add", "-q", "models/alpha/model.keras", cwd=undo)
    assert first_to_rerun(undo) == ["convert@alpha", "verify@alpha"]


# -- real reruns (make test-e2e): the cascade downstream and byte-identical rebuilds -----------

@pytest.mark.e2e
def test_forced_rerun_in_other_processes_changes_no_hash(built):
    """Byte-identical artifacts whatever the hash seed (set order) of the processes: the first build
    ran with Python's random hash seed, this one with a fixed one."""
    repo = built[0]
    before = (repo / "dvc.lock").read_text()
    sh("dvc", "repro", "-f", cwd=repo, PYTHONHASHSEED="1")
    assert (repo / "dvc.lock").read_text() == before


@pytest.mark.e2e
def test_editing_outputs_reruns_only_that_models_freeze_optimize_verify(built):
    repo = built[0]
    edit(repo, "models", "alpha", outputs=["probs"])
    # outputs [] already meant [probs]: optimized.pb comes out the same, so onnx and tflite do not rerun
    assert repro(repo) == ["freeze@alpha", "optimize@alpha", "verify@alpha"]


@pytest.mark.e2e
def test_editing_input_shape_reruns_only_optimize_and_verify(built):
    repo = built[0]
    edit(repo, "models", "alpha", input_shape=[2, 8, 8, 1])
    # a new optimized.pb: every target stage reads it (one not requested rewrites its marker)
    assert repro(repo) == sorted(["optimize@alpha", "verify@alpha", *(f"{t}@alpha" for t in EXTRA)])


@pytest.mark.e2e
def test_replacing_a_source_reruns_its_stages(built):
    repo = built[0]
    build_tiny(seed=5).save(repo / "models" / "alpha" / "model.keras")
    assert repro(repo) == sorted(f"{s}@alpha" for s in STAGES)
    assert repro(repo) == []


@pytest.mark.e2e
def test_tf1_new_checkpoint_reruns_its_stages(built):
    """Retrained weights under the same prefix: all the stages of that model, and its metrics stay honest."""
    from kfreeze.tfenv import tf
    from tests.conftest import save_checkpoint
    repo = built[0]
    prefix = str(repo / "models" / "gamma" / "model.ckpt-600")
    reader = tf.compat.v1.train.NewCheckpointReader(prefix)
    values = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}
    save_checkpoint({k: v * 1.01 if k.endswith("kernel") else v for k, v in values.items()}, prefix)
    assert repro(repo) == sorted(f"{s}@gamma" for s in TF1_STAGES)
    metrics = json.loads((repo / "metrics" / "gamma.json").read_text())
    assert metrics["max_abs_diff"] <= 1e-5 and metrics["reference"] == "checkpoint"


@pytest.mark.e2e
def test_adding_a_target_reruns_only_that_targets_stage_and_verify(built):
    repo = built[0]
    edit(repo, "models", "alpha", targets=["tf", "tflite"])
    assert repro(repo) == ["tflite@alpha", "verify@alpha"]
    assert json.loads((repo / "metrics" / "alpha.json").read_text())["targets"]["tflite"]["passed"]


def test_the_opencv_names_note_lists_only_the_names_that_differ():
    from kfreeze.pipeline import opencv_names_note
    assert opencv_names_note({"probs": "probs"}) == ""
    assert opencv_names_note({"probs": "probs"}, always=True) == " (net.forward takes the output names)"
    assert opencv_names_note({"probs": "probs", "grid": "grid/nchw", "c": None}) == \
        "; OpenCV net.forward names: grid -> 'grid/nchw', c -> none (OpenCV has no layer for it)"
