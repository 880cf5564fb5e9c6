"""Many models, more than one machine: workers build subsets against one DVC remote and push DVC's
run cache; a fresh clone then restores every build stage instead of running it (docs/scaling.md)."""

from __future__ import annotations

import re

import pytest
import yaml

from kfreeze.layout import STAGES
from tests.compare.repo_helpers import ROOT, commit, make_repo, run, sh, stages_run

MODELS = ("alpha", "beta")


def test_the_documented_ci_file_runs_the_tested_commands():
    """docs/scaling.md's workflow is the recipe the test below runs, not a variant of it."""
    text = (ROOT / "docs" / "scaling.md").read_text()
    workflow = yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))
    steps = {job: [s["run"] for s in spec["steps"] if "run" in s] for job, spec in workflow["jobs"].items()}
    assert steps["build"][-2:] == ["dvc repro ${{ matrix.models }}", "dvc push --run-cache"], steps
    assert all(m.startswith("verify@") for ms in workflow["jobs"]["build"]["strategy"]["matrix"]["models"]
               for m in ms.split()), workflow
    assert workflow["jobs"]["assemble"]["needs"] == "build" and "dvc repro --pull" in steps["assemble"], steps


@pytest.mark.slow
@pytest.mark.e2e
def test_two_workers_one_remote_then_a_fresh_clone_runs_no_model_stage(tmp_path):
    (tmp_path / "origin").mkdir()
    origin = make_repo(tmp_path / "origin")
    remote = tmp_path / "remote"
    sh("dvc", "remote", "add", "-d", "storage", remote, cwd=origin)
    commit(origin, "two models, no artifacts yet")
    for worker, model in zip(("w1", "w2"), MODELS):  # as two CI matrix jobs would
        clone = tmp_path / worker
        sh("git", "clone", "-q", origin, clone, cwd=tmp_path)
        ran = stages_run(sh("dvc", "repro", f"verify@{model}", cwd=clone))
        assert ran and all(s.endswith(f"@{model}") for s in ran), ran
        sh("dvc", "push", "--run-cache", cwd=clone)
    final = tmp_path / "final"
    sh("git", "clone", "-q", origin, final, cwd=tmp_path)
    # Why `dvc fetch --run-cache` + `dvc repro` rebuilt everything: the fetch brings only the run
    # records (.dvc/cache/runs), not the outputs they name (with no dvc.lock, no output is known to
    # fetch), and a record whose outputs are not in the local cache is a miss.
    sh("dvc", "fetch", "--run-cache", cwd=final)
    objects = [p for p in (final / ".dvc" / "cache").rglob("*") if p.is_file() and "runs" not in p.parts]
    assert not objects, f"DVC now fetches outputs with the run cache; docs/scaling.md can say so: {objects}"
    # `repro --pull` downloads the outputs of each stage it finds in the run cache.
    out = sh("dvc", "repro", "--pull", cwd=final)
    # verify runs again: its metrics are kept in git (cache: false, for dvc metrics diff), so `dvc push`
    # never sends them and its run record cannot be restored.
    assert stages_run(out) == [f"verify@{m}" for m in MODELS], out
    restored = {s for s in re.findall(r"Stage '([^']+)' is cached - skipping run", out) if "@" in s}
    assert restored == {f"{s.name}@{m}" for s in STAGES if s.name != "verify" for m in MODELS}, out
    assert (final / "build" / "alpha" / "optimized.pb").is_file() and (final / "metrics" / "beta.json").is_file()
    assert run("dvc", "status", cwd=final).stdout.strip() == "Data and pipelines are up to date."
