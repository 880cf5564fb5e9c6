"""kfreeze diff reads each revision from the local DVC cache, then the remote, in a light project
(one DVC stage copies hand-built graphs into build/; see repo_helpers.make_light_repo).

History (module-scoped, the tests run in order):
  c1  alpha and beta built, no remote
  c2  beta's weights doubled
  c3  gamma registered in params.yaml but never built (dvc.lock does not list it)
Every fix that an error message gives is run here, and the diff works afterwards.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from typer.testing import CliRunner

from tests.compare.repo_helpers import commit, edit_params, env, make_light_repo, put_graph, sh

@pytest.fixture(scope="module")
def project(tmp_path_factory):
    base = tmp_path_factory.mktemp("revisions")
    (base / "repo").mkdir()
    repo = make_light_repo(base / "repo")
    sh("dvc", "repro", "-q", cwd=repo)
    shas = {"c1": commit(repo, "c1: alpha and beta")}
    put_graph(repo, "beta", 4.0)
    sh("dvc", "repro", "-q", cwd=repo)
    shas["c2"] = commit(repo, "c2: beta retrained")
    return {"base": base, "repo": repo, "shas": shas}


def kfreeze(monkeypatch, cwd, *args):
    from kfreeze.compare.__main__ import app

    monkeypatch.chdir(cwd)
    return CliRunner().invoke(app, [str(a) for a in args])


def shell(command: str, cwd) -> None:
    """Run a command exactly as an error message gives it."""
    proc = subprocess.run(["bash", "-c", command], cwd=cwd, env=env(), capture_output=True, text=True)
    assert proc.returncode == 0, f"{command}: {proc.stdout}\n{proc.stderr}"


def error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def assert_beta_retrained(result) -> None:
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    by_name = {m["model"]: m for m in report["models"]}
    assert by_name["alpha"]["status"] == "same"
    beta = by_name["beta"]
    assert beta["status"] == "changed" and beta["ops"] == {} and beta["weights"]["changed"] == 1
    assert beta["weights"]["max_rel_change"] == pytest.approx(1.0)  # 2W -> 4W
    assert beta["drift"]["max_abs_diff"] > 0


@pytest.mark.slow
def test_diff_without_a_remote(project, monkeypatch):
    """The state right after `dvc repro` and two commits: no remote, everything in .dvc/cache."""
    repo, shas = project["repo"], project["shas"]
    assert sh("dvc", "remote", "list", cwd=repo).strip() == ""
    assert_beta_retrained(kfreeze(monkeypatch, repo, "diff", shas["c1"], shas["c2"], "--json"))
    assert_beta_retrained(kfreeze(monkeypatch, repo, "diff", "HEAD~1", "HEAD", "--json"))
    result = kfreeze(monkeypatch, repo, "diff", "HEAD")
    assert result.exit_code == 0, result.output
    assert "equivalent: 2 model(s) compared" in result.stdout


@pytest.mark.slow
def test_missing_from_the_cache_without_a_remote_the_rebuild_advice_works(project, monkeypatch):
    """c1's beta graph garbage-collected: one line naming the file, its md5 and the missing remote,
    and a rebuild command that, run as given, makes the diff work again."""
    repo, shas = project["repo"], project["shas"]
    sh("dvc", "gc", "--workspace", "--force", "-q", cwd=repo)  # keeps only what HEAD uses
    line = error_line(kfreeze(monkeypatch, repo, "diff", shas["c1"], shas["c2"]))
    assert line.startswith(f"error: build/beta/optimized.pb at {shas['c1']}: the optimized graph of 'beta' (md5 ")
    assert "not in the local DVC cache, and no default DVC remote is configured" in line
    fix = re.search(r"rebuild it into the cache: '([^']+)'", line).group(1)
    assert fix == f"git checkout {shas['c1'][:7]} && dvc repro && git checkout - && dvc checkout"
    shell(fix, repo)
    assert sh("git", "status", "--porcelain", cwd=repo).strip() == ""
    assert sh("git", "rev-parse", "--abbrev-ref", "HEAD", cwd=repo).strip() == "main"
    assert_beta_retrained(kfreeze(monkeypatch, repo, "diff", shas["c1"], shas["c2"], "--json"))


def test_model_never_built_at_a_commit(project, monkeypatch):
    """gamma is in params.yaml at c3 but dvc.lock there does not list its graph: nothing to fetch
    anywhere, and the message says so; building it and comparing against the workspace works."""
    repo, shas = project["repo"], project["shas"]
    put_graph(repo, "gamma", 5.0)
    edit_params(repo, lambda p: p["models"].update(gamma={"source": "src/gamma"}))
    shas["c3"] = commit(repo, "c3: gamma registered, not built")
    line = error_line(kfreeze(monkeypatch, repo, "diff", shas["c2"], shas["c3"]))
    assert "was not built at that commit (its dvc.lock does not list build/gamma/optimized.pb)" in line
    build = re.search(r"'(git checkout \w+ && dvc repro)', then 'kfreeze diff OTHER_REV'", line).group(1)
    shell(build, repo)
    result = kfreeze(monkeypatch, repo, "diff", shas["c2"], "--json")
    assert result.exit_code == 1, result.output
    assert {m["model"]: m["status"] for m in json.loads(result.stdout)["models"]} == \
        {"alpha": "same", "beta": "same", "gamma": "added"}
    sh("git", "checkout", "-q", "main", cwd=repo)  # c3's dvc.lock, now listing gamma, comes along
    shas["c4"] = commit(repo, "c4: gamma built")


def test_push_all_commits_skips_commits_before_the_remote_and_the_documented_way_works(project):
    """`dvc push --all-commits` reads each commit with that commit's .dvc/config, so it skips c1..c4
    (made before the remote was committed). With the remote also in .dvc/config.local, it pushes all."""
    repo, base, shas = project["repo"], project["base"], project["shas"]
    remote = base / "remote"
    sh("dvc", "remote", "add", "-d", "storage", remote, cwd=repo)
    shas["c5"] = commit(repo, "c5: DVC remote")
    c1_beta = _md5_at(repo, shas["c1"], "build/beta/optimized.pb")
    assert c1_beta != _md5_at(repo, shas["c5"], "build/beta/optimized.pb")
    sh("dvc", "push", "--all-commits", "-q", cwd=repo)
    assert not _in_remote(remote, c1_beta)  # DVC's behaviour this section documents
    sh("dvc", "remote", "add", "--local", "-f", "storage", remote, cwd=repo)
    sh("dvc", "push", "--all-commits", "-r", "storage", "-q", cwd=repo)
    assert _in_remote(remote, c1_beta)
    project["remote"], project["c1_beta"] = remote, c1_beta


def test_fresh_clone_reads_old_commits_from_the_remote(project, monkeypatch):
    """A clone, no dvc pull: c1 and c2 (older than the remote) come from the remote."""
    base, shas = project["base"], project["shas"]
    clone = base / "clone"
    sh("git", "clone", "-q", project["repo"], clone, cwd=base)
    assert not (clone / ".dvc" / "cache").exists()
    assert_beta_retrained(kfreeze(monkeypatch, clone, "diff", shas["c1"], shas["c2"], "--json"))
    project["clone"] = clone


def test_missing_from_cache_and_remote_the_push_advice_works(project, monkeypatch):
    """The remote lost c1's beta graph: a second clone gets one line naming the remote, and the push
    command it gives, run in the original project, makes the diff work in that clone."""
    base, shas, remote, md5 = project["base"], project["shas"], project["remote"], project["c1_beta"]
    (remote / "files" / "md5" / md5[:2] / md5[2:]).unlink()
    clone = base / "clone2"
    sh("git", "clone", "-q", project["repo"], clone, cwd=base)
    line = error_line(kfreeze(monkeypatch, clone, "diff", shas["c1"], shas["c2"]))
    assert f"is neither in the local DVC cache nor in remote 'storage' ({remote})" in line
    push = re.search(r"push every commit's artifacts: '([^']+)'", line).group(1)
    shell(push, project["repo"])
    assert _in_remote(remote, md5)
    assert_beta_retrained(kfreeze(monkeypatch, clone, "diff", shas["c1"], shas["c2"], "--json"))


def test_remote_pointing_nowhere_the_advice_works(project, monkeypatch):
    """A clone whose remote URL is wrong and whose cache is empty: the message says the remote's
    directory does not exist; pointing it at the real one, as advised, makes the diff work."""
    clone, shas, remote = project["clone"], project["shas"], project["remote"]
    nowhere = project["base"] / "nowhere"
    sh("dvc", "remote", "modify", "--local", "storage", "url", nowhere, cwd=clone)
    sh("rm", "-rf", ".dvc/cache", cwd=clone)
    line = error_line(kfreeze(monkeypatch, clone, "diff", shas["c1"], shas["c2"]))
    assert f"is not in the local DVC cache, and remote 'storage' points at {nowhere}, which does not exist" in line
    fix = re.search(r"point the remote at its real location \('([^']+)'\)", line).group(1)
    assert fix == "dvc remote modify --local storage url PATH"
    shell(fix.replace("PATH", str(remote)), clone)
    assert_beta_retrained(kfreeze(monkeypatch, clone, "diff", shas["c1"], shas["c2"], "--json"))


def _md5_at(repo, sha, path) -> str:
    from kfreeze.compare.revisions import git_file, locked_md5
    return locked_md5(git_file(repo, sha, "dvc.lock"), path)


def _in_remote(remote, md5) -> bool:
    return (remote / "files" / "md5" / md5[:2] / md5[2:]).is_file()
