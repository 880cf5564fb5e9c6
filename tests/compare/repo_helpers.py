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
    # atol written out: the README's walkthrough edits it with sed (a default is not in the file).
    params = {"models": models, "graphs": {},
              "verify": {**project["verify"], "samples": 4, "seed": 0, "atol": 1.0e-4}}
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
    """The per-model stages that ran; the project-wide `summary` (a table of all metrics) and `names`
    (a check of the names) and the cheap `resolve` stages (they run on every params.yaml edit and
    rewrite only changed settings) are left out."""
    return sorted(s for s in re.findall(r"Running stage '([^']+)'", output)
                  if s not in ("summary", "resolve"))


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


# --------------------------------------------------------------------------- a light DVC project
# kfreeze diff only reads params.yaml and build/<name>/{optimized.pb,names.json} through git and
# DVC. A one-stage pipeline that copies hand-built graphs into build/ exercises exactly that
# reading (dvc.lock, the local cache, remotes) in seconds instead of minutes of TensorFlow stages.

LIGHT_DVC_YAML = """\
stages:
  build:
    foreach: ${models}
    do:
      cmd: mkdir -p build/${key} && cp src/${key}/optimized.pb src/${key}/names.json build/${key}/
      deps:
        - src/${key}
      outs:
        - build/${key}/optimized.pb
        - build/${key}/names.json
"""


def tiny_graph(scale: float = 1.0):
    """x[?,3] -> MatMul(W * scale) -> Identity 'y': (GraphDef bytes, names.json bytes)."""
    import json

    import numpy as np

    from kfreeze.tfenv import tf

    w = np.array([[0.5, -1.0], [2.0, 0.25], [-0.5, 1.5]], dtype=np.float32) * np.float32(scale)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        tf.identity(tf.raw_ops.MatMul(a=x, b=tf.constant(w, name="kernel"), name="matmul"), name="y")
    names = {"inputs": ["x"], "outputs": ["y"]}
    return g.as_graph_def().SerializeToString(deterministic=True), json.dumps(names).encode()


def put_graph(repo: Path, name: str, scale: float) -> None:
    """src/<name>/ gets the graph; the light pipeline copies it to build/<name>/."""
    graph, names = tiny_graph(scale)
    (repo / "src" / name).mkdir(parents=True, exist_ok=True)
    (repo / "src" / name / "optimized.pb").write_bytes(graph)
    (repo / "src" / name / "names.json").write_bytes(names)


def make_light_repo(repo: Path, models=("alpha", "beta")) -> Path:
    """git + DVC, params.yaml listing ``models``, the light pipeline, one graph per model (not built):
    the i-th model's kernel is W * (1 + i)."""
    import yaml

    (repo / "dvc.yaml").write_text(LIGHT_DVC_YAML)
    params = {"models": {m: {"source": f"src/{m}"} for m in models}, "verify": {"samples": 4, "seed": 0}}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for i, m in enumerate(models):
        put_graph(repo, m, 1.0 + i)  # distinct bytes: DVC's cache deduplicates equal files
    sh("git", "init", "-q", "-b", "main", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    sh("dvc", "config", "core.analytics", "false", cwd=repo)
    return repo
