"""kfreeze add: files into models/NAME/, the minimal entry into params.yaml with its comments kept."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kfreeze import params
from kfreeze.cli import app

ROOT = Path(__file__).resolve().parents[1]
PARAMS = """# my project
models:
  old:                      # keep this comment
    source: models/old/model.keras
# TF1 models
graphs: {}   # none yet
verify:
  samples: 8                # fewer
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(PARAMS)
    (tmp_path / "models" / "old").mkdir(parents=True)
    (tmp_path / "models" / "old" / "model.keras").write_bytes(b"old")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "net.keras").write_bytes(b"a model")
    return tmp_path


def add(*args):
    return CliRunner().invoke(app, ["add", *map(str, args)])


def test_add_writes_only_the_new_lines_and_copies_the_file(project):
    result = add("mynet", "in/net.keras", "--input-shape", "[1, 224, 224, 3]", "--opencv")
    assert result.exit_code == 0, result.output
    assert (project / "models" / "mynet" / "net.keras").read_bytes() == b"a model"
    assert (project / "params.yaml").read_text() == PARAMS.replace(
        "# TF1 models", "  mynet:\n    source: models/mynet/net.keras\n    input_shape: [1, 224, 224, 3]\n"
                        "    opencv: true\n# TF1 models")
    spec = params.model_spec("mynet")
    assert spec.input_shape == [1, 224, 224, 3] and spec.opencv and spec.precision == "float32"
    assert result.output.strip().endswith("next: dvc repro")


def test_add_a_graph_into_an_empty_flow_section(project):
    (project / "in" / "g.pbtxt").write_text("node {}")
    for part in ("model.ckpt-5.index", "model.ckpt-5.data-00000-of-00001"):
        (project / "in" / part).write_bytes(b"x")
    result = add("g1", "--graph", "in/g.pbtxt", "--checkpoint", "in/model.ckpt-5", "--outputs", "probs")
    assert result.exit_code == 0, result.output
    text = (project / "params.yaml").read_text()
    assert "graphs:  # none yet\n  g1:\n    graph: models/g1/g.pbtxt\n    checkpoint: models/g1/model.ckpt-5\n" \
           "    outputs: [probs]\nverify:" in text
    assert sorted(p.name for p in (project / "models" / "g1").iterdir()) == [
        "g.pbtxt", "model.ckpt-5.data-00000-of-00001", "model.ckpt-5.index"]


def test_an_existing_name_is_refused_and_nothing_changes(project):
    result = add("old", "in/net.keras")
    assert result.exit_code == 1 and "params.yaml: models.old: already exists" in result.output
    assert (project / "params.yaml").read_text() == PARAMS
    assert (project / "models" / "old" / "model.keras").read_bytes() == b"old"


def test_a_bad_value_is_refused_before_anything_is_written(project):
    result = add("mynet", "in/net.keras", "--precision", "float8")
    assert result.exit_code == 1 and "models.mynet.precision: must be float32 or float16" in result.output
    assert (project / "params.yaml").read_text() == PARAMS
    assert not (project / "models" / "mynet").exists()


def test_a_large_source_is_offered_to_dvc(project):
    big = project / "in" / "big.keras"
    with big.open("wb") as f:
        f.truncate(11 * 2**20)
    result = add("big1", big)  # CliRunner's stdin is no terminal: no prompt, a hint
    assert result.exit_code == 0, result.output
    assert "to keep it out of git: dvc add models/big1/big.keras" in result.output
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=project, check=True, env=env)
    result = add("big2", big, "--dvc-add")
    assert result.exit_code == 0, result.output
    assert (project / "models" / "big2" / "big.keras.dvc").is_file()
    assert "/big.keras" in (project / "models" / "big2" / ".gitignore").read_text()


def test_add_the_first_model_of_a_new_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.keras").write_bytes(b"a model")
    result = add("first", "net.keras")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "params.yaml").read_text() == "models:\n  first:\n    source: models/first/net.keras\ngraphs: {}\n"
    assert params.model_spec("first").source == "models/first/net.keras"


@pytest.mark.slow
def test_add_a_frozen_graph_without_a_checkpoint_and_build_it(project):
    """A frozen graph (told by its bytes, here named .model) under graphs: with no checkpoint key;
    the stages dvc repro runs build and verify it."""
    from tests.frozen_graphs import build
    build("seed", project / "in" / "seed.model")
    result = add("seed", "in/seed.model", "--inputs", "IteratorGetNext", "--input-shape", "[1, 20, 20, 1]")
    assert result.exit_code == 0, result.output
    text = (project / "params.yaml").read_text()
    assert "  seed:\n    graph: models/seed/seed.model\n    inputs: [IteratorGetNext]\n" \
           "    input_shape: [1, 20, 20, 1]\nverify:" in text
    from kfreeze import graphio, pipeline
    build_dir, metrics = project / "build", project / "metrics"
    pipeline.resolve("seed", "params.yaml", build_dir)
    assert "frozen already" in pipeline.from_settings("freeze", "seed", build_dir, warn=lambda line: None)
    pipeline.from_settings("optimize", "seed", build_dir)
    assert "max_abs_diff" in pipeline.from_settings("verify", "seed", build_dir, metrics, warn=lambda line: None)
    result = graphio.read_json(metrics / "seed.json")
    assert result["passed"] and result["reference"] == "graph"  # the frozen graph itself, fed at the cut


def test_add_refuses_a_file_of_no_known_kind(project):
    (project / "in" / "notes.model").write_text("hello")
    result = add("n1", "in/notes.model")
    assert result.exit_code == 1
    assert "notes.model: is no Keras file (HDF5 or zip), GraphDef or SavedModel folder" in result.output
    assert not (project / "models" / "n1").exists()


def test_add_an_hdf5_model_named_dot_model_and_convert_it(project):
    from tests.conftest import build_tiny
    build_tiny().save(project / "in" / "saved.h5")
    (project / "in" / "net.model").write_bytes((project / "in" / "saved.h5").read_bytes())
    result = add("h5net", "in/net.model")
    assert result.exit_code == 0, result.output
    assert "  h5net:\n    source: models/h5net/net.model\n" in (project / "params.yaml").read_text()
    from kfreeze import pipeline
    pipeline.resolve("h5net", "params.yaml", project / "build")
    assert "converted models/h5net/net.model" in pipeline.from_settings("convert", "h5net", project / "build")


@pytest.mark.slow
def test_add_a_savedmodel_folder_with_a_signature_and_build_it(project):
    from tests.saved_models import save_two_signatures
    save_two_signatures(project / "in" / "exported")
    result = add("sm", "in/exported", "--signature", "doubled")
    assert result.exit_code == 0, result.output
    assert "  sm:\n    graph: models/sm/exported\n    signature: doubled\nverify:" in (project / "params.yaml").read_text()
    assert (project / "models" / "sm" / "exported" / "saved_model.pb").is_file()
    from kfreeze import graphio, pipeline
    build_dir = project / "build"
    pipeline.resolve("sm", "params.yaml", build_dir)
    assert "SavedModel signature 'doubled'" in pipeline.from_settings("freeze", "sm", build_dir)
    pipeline.from_settings("optimize", "sm", build_dir)
    pipeline.from_settings("verify", "sm", build_dir, project / "metrics", warn=lambda line: None)
    metrics = graphio.read_json(project / "metrics" / "sm.json")
    assert metrics["passed"] and metrics["reference"] == "savedmodel"


def test_a_large_savedmodel_folder_is_offered_to_dvc(project):
    folder = project / "in" / "big_sm"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"x")
    with (folder / "variables" / "variables.data-00000-of-00001").open("wb") as f:
        f.truncate(11 * 2**20)
    result = add("bigsm", folder)
    assert result.exit_code == 0, result.output
    assert "to keep it out of git: dvc add models/bigsm/big_sm" in result.output
    assert "  bigsm:\n    graph: models/bigsm/big_sm\n" in (project / "params.yaml").read_text()


# -- hostile destinations (issue 25): refused before a byte is copied ------------------------

def _outside_untouched(outside: Path) -> None:
    assert sorted(os.listdir(outside)) == [], "kfreeze add wrote outside the project"


@pytest.mark.parametrize("link", ["models/evil", "models"])
def test_add_through_a_symlinked_model_folder_writes_nothing_outside(project, tmp_path_factory, link):
    outside = tmp_path_factory.mktemp("outside")
    if link == "models":
        (project / "models").rename(project / "models_real")
    os.symlink(outside, project / link)
    result = add("evil", "in/net.keras")
    assert result.exit_code == 1, result.output
    line = result.output.strip()
    assert len(line.splitlines()) == 1 and f"{link}: is a symlink" in line and "Traceback" not in line, line
    _outside_untouched(outside)
    assert (project / "params.yaml").read_text() == PARAMS


def test_add_onto_a_symlinked_file_in_the_model_folder_writes_nothing_outside(project, tmp_path_factory):
    """A dangling link models/evil/net.keras -> outside/net.keras: copying onto it would create the target."""
    outside = tmp_path_factory.mktemp("outside")
    (project / "models" / "evil").mkdir()
    os.symlink(outside / "net.keras", project / "models" / "evil" / "net.keras")
    result = add("evil", "in/net.keras")
    assert result.exit_code == 1 and "models/evil/net.keras: is a symlink" in result.output, result.output
    _outside_untouched(outside)
    for part in ("model.ckpt-5.index", "model.ckpt-5.data-00000-of-00001"):
        (project / "in" / part).write_bytes(b"x")
    (project / "in" / "g.pbtxt").write_text("node {}")
    os.symlink(outside / "idx", project / "models" / "evil" / "model.ckpt-5.index")
    result = add("evil", "--graph", "in/g.pbtxt", "--checkpoint", "in/model.ckpt-5", "--outputs", "p")
    assert result.exit_code == 1 and "models/evil/model.ckpt-5.index: is a symlink" in result.output, result.output
    _outside_untouched(outside)
    assert (project / "params.yaml").read_text() == PARAMS


def test_add_refuses_a_fifo_source_without_reading_it(project):
    import threading

    os.mkfifo(project / "in" / "pipe.keras")
    results = []
    worker = threading.Thread(target=lambda: results.append(add("piped", "in/pipe.keras")), daemon=True)
    worker.start()
    worker.join(30)
    assert results, "kfreeze add blocked on a FIFO"
    assert results[0].exit_code == 1 and "is a FIFO, not a regular file" in results[0].output, results[0].output
    assert not (project / "models" / "piped").exists()
