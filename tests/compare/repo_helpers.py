"""A small kfreeze project in a temporary git repository, and the commands the tests run in it."""

from __future__ import annotations

import copy
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]



def params_text() -> str:
    """Two Keras models with every key DVC tracks. The keys and their defaults come from the
    project's own params.yaml (its first Keras entry), so a new key there needs no edit here."""
    import yaml

    template = next(iter(yaml.safe_load((ROOT / "params.yaml").read_text())["models"].values()))
    defaults = {"arch": None, "layout": None, "theano_kernels": None, "inputs": [], "outputs": [],
                "input_shape": None}
    models = {name: copy.deepcopy({**template, **defaults, "source": f"models/{name}/model.keras"})
              for name in ("alpha", "beta")}
    project = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = {"models": models, "graphs": {}, "verify": {**project["verify"], "samples": 4, "seed": 0}}
    return yaml.safe_dump(params, sort_keys=False)


def edit_params(repo: Path, fn) -> None:
    """Load params.yaml, let ``fn`` change the dict in place, write it back."""
    import yaml

    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    fn(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def env(**extra) -> dict:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(ROOT), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com", **extra}


def run(*cmd, cwd, check=True, **extra_env) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env(**extra_env), capture_output=True, text=True,
                            timeout=900)
    if check:
        assert result.returncode == 0, f"{cmd}: {result.stdout}\n{result.stderr}"
    return result


def sh(*cmd, cwd, **extra_env) -> str:
    return run(*cmd, cwd=cwd, **extra_env).stdout


def stages_run(output: str) -> list[str]:
    """The per-model stages that ran; the project-wide `summary` (a table of all metrics) and the cheap
    `resolve` stages (they run on every params.yaml edit and rewrite only changed settings) are left out."""
    return sorted(s for s in re.findall(r"Running stage '([^']+)'", output)
                  if s != "summary" and not s.startswith("resolve"))


def repro(cwd, *args) -> list[str]:
    return stages_run(sh("dvc", "repro", *args, cwd=cwd))


def commit(cwd, message: str) -> str:
    sh("git", "add", "-A", cwd=cwd)
    sh("git", "commit", "-q", "-m", message, cwd=cwd)
    return sh("git", "rev-parse", "HEAD", cwd=cwd).strip()


def hashes(repo: Path, folders=("build", "metrics")) -> dict[str, str]:
    """sha256 of every file under the artifact folders, plus dvc.lock."""
    found = {}
    for folder in folders:
        for path in sorted((repo / folder).rglob("*")):
            if path.is_file():
                found[str(path.relative_to(repo))] = hashlib.sha256(path.read_bytes()).hexdigest()
    found["dvc.lock"] = hashlib.sha256((repo / "dvc.lock").read_bytes()).hexdigest()
    return found


def make_repo(repo: Path) -> Path:
    """The project's pipeline and code, two tiny Keras models, git and DVC initialised."""
    from tests.conftest import build_tiny, build_two_io

    for item in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / item, repo / item)
    for item in ("stages", "kfreeze"):
        shutil.copytree(ROOT / item, repo / item, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / ".gitignore").write_text("__pycache__/\n*.pyc\n")
    (repo / "models" / "alpha").mkdir(parents=True)
    (repo / "models" / "beta").mkdir(parents=True)
    build_tiny(0).save(repo / "models" / "alpha" / "model.keras")
    build_two_io(0).save(repo / "models" / "beta" / "model.keras")
    (repo / "params.yaml").write_text(params_text())
    sh("git", "init", "-q", "-b", "main", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    sh("dvc", "config", "core.analytics", "false", cwd=repo)
    return repo
