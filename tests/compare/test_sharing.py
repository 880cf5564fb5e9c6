"""Share and compare, for real, in one temporary git + DVC project (module-scoped: the tests run in order).

History built here:
  c1  two tiny Keras models (alpha: conv + BN, beta: two inputs, two outputs), a local DVC remote
  c2  models.alpha.layout: null -> channels_last (a param that cannot change the graph)
  c3  beta retrained (new weights, same architecture)
  c4  beta.outputs: [] -> [cls] (output 'reg' dropped)
Then: dvc push, fresh clones, dvc pull, kfreeze diff from the cache and from the remote.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.compare.repo_helpers import commit, edit_params, hashes, make_repo, repro, run, sh, stages_run

# The fixture runs the real five-stage pipeline on two models (minutes on a shared 2-core machine).
# Whole scratch projects across commits, DVC remotes and hash seeds: make test-e2e (run by .ci/run).
pytestmark = [pytest.mark.slow, pytest.mark.e2e]

from kfreeze.targets.registry import EXTRA

STAGES = ("convert", "export", "freeze", "optimize", *EXTRA, "verify")
UP_TO_DATE = "Data and pipelines are up to date."


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    base = tmp_path_factory.mktemp("sharing")
    (base / "repo").mkdir()
    repo = make_repo(base / "repo")
    remote = base / "remote"
    sh("dvc", "remote", "add", "-d", "storage", remote, cwd=repo)
    assert repro(repo) == sorted(f"{s}@{m}" for s in STAGES for m in ("alpha", "beta"))
    shas = {"c1": commit(repo, "c1: two models")}
    return {"base": base, "repo": repo, "remote": remote, "shas": shas}


def kfreeze(monkeypatch, cwd, *args):
    """``kfreeze diff|show ...`` in-process (TensorFlow is already imported), run in ``cwd``."""
    from kfreeze.compare.__main__ import app

    monkeypatch.chdir(cwd)
    return CliRunner().invoke(app, [str(a) for a in args])


def test_forced_rerun_gives_byte_identical_artifacts(project):
    """`dvc repro -f` in processes with another hash seed: every file under build/ and metrics/ keeps
    its bytes, dvc.lock keeps its hashes, and DVC sees nothing to do afterwards."""
    repo = project["repo"]
    before = hashes(repo)
    assert len(before) > 20
    out = sh("dvc", "repro", "-f", cwd=repo, PYTHONHASHSEED="7")
    assert stages_run(out) == sorted(f"{s}@{m}" for s in STAGES for m in ("alpha", "beta"))
    assert hashes(repo) == before
    assert sh("dvc", "status", cwd=repo).strip() == UP_TO_DATE


def test_param_that_cannot_change_the_graph_runs_only_the_stages_that_read_it(project):
    """models.alpha.layout: null -> channels_last. A .keras file says its own layout, which is
    channels_last, so the graph cannot change. DVC reruns the two stages whose settings hold the key:
    convert (its output, the canonical model, comes out byte-identical, so DVC skips export,
    freeze and optimize, whose deps did not change) and verify (it also reads layout).
    Only those two settings files change (they record the key)."""
    repo = project["repo"]
    before = hashes(repo, folders=("build", "metrics"))
    edit_params(repo, lambda p: p["models"]["alpha"].update(layout="channels_last"))
    assert repro(repo) == ["convert@alpha", "verify@alpha"]
    after = hashes(repo, folders=("build", "metrics"))
    changed = sorted(k for k in after if after[k] != before.get(k))
    assert changed == ["build/settings/alpha/convert.json", "build/settings/alpha/verify.json", "dvc.lock"]
    project["shas"]["c2"] = commit(repo, "c2: alpha layout explicit")


def test_diff_of_a_params_only_commit_is_equivalent(project, monkeypatch):
    shas = project["shas"]
    result = kfreeze(monkeypatch, project["repo"], "diff", shas["c1"], shas["c2"])
    assert result.exit_code == 0, result.output
    assert "equivalent: 2 model(s) compared, no difference" in result.stdout


def _beta_weights(seed):
    from tests.conftest import build_two_io
    return build_two_io(seed)


def test_retrained_weights(project, monkeypatch):
    """c3 retrains beta; diff reports the constants that changed, the largest change and the drift,
    each checked against numbers computed here from the two Keras models."""
    from kfreeze.verify import TensorInfo, make_inputs

    repo, shas = project["repo"], project["shas"]
    old, new = _beta_weights(0), _beta_weights(1)
    new.save(repo / "models" / "beta" / "model.keras")
    assert repro(repo) == sorted(f"{s}@beta" for s in STAGES)
    shas["c3"] = commit(repo, "c3: beta retrained")

    result = kfreeze(monkeypatch, repo, "diff", shas["c2"], shas["c3"], "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    alpha, beta = report["models"]
    assert alpha["model"] == "alpha" and alpha["equivalent"] and alpha["drift"]["max_abs_diff"] == 0.0
    assert beta["status"] == "changed" and not report["equivalent"]
    assert beta["signature"]["changes"] == [] and beta["ops"] == {}
    assert beta["nodes"] == {"added": [], "removed": [], "changed": []}

    pairs = [(a, b) for a, b in zip(old.get_weights(), new.get_weights())]
    moved = [(a, b) for a, b in pairs if not np.array_equal(a, b)]
    assert beta["weights"]["changed"] == len(moved) > 0
    expected_abs = max(float(np.max(np.abs(b.astype(np.float64) - a))) for a, b in moved)
    assert beta["weights"]["max_abs_change"] == pytest.approx(expected_abs, rel=1e-6)
    expected_rel = max(float(np.max(np.abs(b.astype(np.float64) - a)) / np.max(np.abs(a))) for a, b in moved)
    assert beta["weights"]["max_rel_change"] == pytest.approx(expected_rel, rel=1e-6)

    # Drift: both Keras models on the verification inputs (verify.samples=4, seed=0 in params).
    feeds = make_inputs([TensorInfo("img", "float32", (None, 6, 6, 2)), TensorInfo("vec", "float32", (None, 5))], 4, 0)
    ya, yb = old([feeds["img"], feeds["vec"]]), new([feeds["img"], feeds["vec"]])
    expected = {name: float(np.max(np.abs(np.asarray(b) - np.asarray(a)))) for name, a, b in zip(("cls", "reg"), ya, yb)}
    drift = beta["drift"]
    assert drift["inputs"] == [{"samples": 4, "seed": 0}]
    for name in ("cls", "reg"):
        assert drift["outputs"][name]["max_abs_diff"] == pytest.approx(expected[name], abs=1e-5)
    assert drift["max_abs_diff"] == pytest.approx(max(expected.values()), abs=1e-5)

    text = kfreeze(monkeypatch, repo, "diff", shas["c2"], shas["c3"], "--model", "beta")
    assert text.exit_code == 1
    assert f"weights: {len(moved)} of {beta['weights']['compared']} constants changed" in text.stdout
    md = kfreeze(monkeypatch, repo, "diff", shas["c2"], shas["c3"], "--md")
    assert md.exit_code == 1 and "| beta | changed |" in md.stdout and "| alpha | same |" in md.stdout
    project["beta_c3"] = beta


def test_output_node_change(project, monkeypatch, tmp_path):
    repo, shas = project["repo"], project["shas"]
    edit_params(repo, lambda p: p["models"]["beta"].update(outputs=["cls"]))
    # a new optimized.pb reruns every target stage too (they read it; one not requested rewrites its marker)
    assert repro(repo) == sorted(["freeze@beta", "optimize@beta", "verify@beta", *(f"{t}@beta" for t in EXTRA)])
    shas["c4"] = commit(repo, "c4: beta serves cls only")

    result = kfreeze(monkeypatch, repo, "diff", "HEAD~1", "HEAD", "--model", "beta", "--json",
                     "--svg", tmp_path / "pictures")
    assert result.exit_code == 1, result.output
    beta = json.loads(result.stdout)["models"][0]
    assert beta["signature"]["changes"] == ["output 'reg' removed (float32 [?,1])"]
    assert "reg" in beta["nodes"]["removed"] and beta["nodes"]["added"] == []
    ops_before = sum(a for a, _ in beta["ops"].values())
    ops_after = sum(b for _, b in beta["ops"].values())
    assert ops_before - ops_after == len(beta["nodes"]["removed"]) > 0  # the histogram agrees with the nodes
    assert beta["size"]["a"]["ops"] - beta["size"]["b"]["ops"] == len(beta["nodes"]["removed"])
    assert beta["weights"]["changed"] == 0
    assert beta["drift"]["outputs"]["cls"]["max_abs_diff"] == 0.0 and "reg" not in beta["drift"]["outputs"]
    svg = (tmp_path / "pictures" / "beta.svg").read_text()
    assert "#f8cccc" in svg  # the removed 'reg' drawn in red


def test_diff_against_the_workspace(project, monkeypatch):
    repo = project["repo"]
    result = kfreeze(monkeypatch, repo, "diff", "HEAD")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].endswith("-> workspace")


def test_diff_errors_exit_2_with_one_line(project, monkeypatch):
    repo = project["repo"]
    result = kfreeze(monkeypatch, repo, "diff", "no-such-rev")
    assert result.exit_code == 2
    assert "revision 'no-such-rev' not found" in result.output
    result = kfreeze(monkeypatch, repo, "diff", "HEAD", "--model", "gamma")
    assert result.exit_code == 2 and "no model 'gamma'" in result.output


def test_remote_round_trip(project):
    """dvc push; a fresh git clone; dvc pull: the same bytes, nothing to do, no stage runs."""
    repo, base = project["repo"], project["base"]
    sh("dvc", "push", cwd=repo)
    clone = base / "clone"
    sh("git", "clone", "-q", repo, clone, cwd=base)
    assert not list((clone / "build").rglob("*.pb"))  # only DVC's .gitignore files came with git
    sh("dvc", "pull", cwd=clone)
    assert hashes(clone) == hashes(repo)
    assert sh("dvc", "status", cwd=clone).strip() == UP_TO_DATE
    assert repro(clone) == []


def test_diff_in_a_fresh_clone_reads_the_remote(project, monkeypatch):
    """No checkout, no dvc pull: kfreeze diff fetches each revision's graphs from the remote."""
    repo, base, shas = project["repo"], project["base"], project["shas"]
    sh("dvc", "push", "--all-commits", cwd=repo)
    clone = base / "clone_for_diff"
    sh("git", "clone", "-q", repo, clone, cwd=base)
    result = kfreeze(monkeypatch, clone, "diff", shas["c2"], shas["c3"], "--model", "beta", "--json")
    assert result.exit_code == 1, result.output
    beta = json.loads(result.stdout)["models"][0]
    assert beta["weights"] == project["beta_c3"]["weights"]
    assert beta["drift"]["max_abs_diff"] == project["beta_c3"]["drift"]["max_abs_diff"]

    # Without a reachable remote, the error says what to do.
    sh("dvc", "remote", "modify", "--local", "storage", "url", base / "nowhere", cwd=clone)
    sh("rm", "-rf", ".dvc/cache", cwd=clone)
    result = kfreeze(monkeypatch, clone, "diff", shas["c1"], shas["c2"])
    assert result.exit_code == 2
    assert f"remote 'storage' points at {base / 'nowhere'}, which does not exist" in result.output
    assert "'dvc remote modify --local storage url PATH'" in result.output


def test_repro_pull_allow_missing_fetches_only_what_the_changed_stages_need(project):
    """A fresh clone that changes verify.atol: only the verify stages run, and only their inputs are
    pulled (the canonical Keras copies, which nothing downstream needs, stay in the remote)."""
    base = project["base"]
    clone = base / "partial"
    sh("git", "clone", "-q", project["repo"], clone, cwd=base)
    edit_params(clone, lambda p: p["verify"].update(atol=1.0e-3))
    out = sh("dvc", "repro", "--pull", "--allow-missing", cwd=clone)
    assert stages_run(out) == ["verify@alpha", "verify@beta"]
    assert (clone / "build" / "beta" / "optimized.pb").is_file()
    assert not (clone / "build" / "alpha" / "model").exists()
    assert json.loads((clone / "metrics" / "alpha.json").read_text())["atol"] == 1.0e-3
    run("dvc", "status", cwd=clone)  # still a working project
