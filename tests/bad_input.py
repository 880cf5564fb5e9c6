"""Helpers for the bad-input and fuzz tests: a project on disk and the CLI run in-process."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml
from typer.testing import CliRunner

from kfreeze.cli import app
from tests.conftest import build_tiny
from tests.entries import graph_entry, keras_entry

ROOT = Path(__file__).resolve().parents[1]
TF1_EXAMPLE = {"inputs": ["IteratorGetNext"], "outputs": ["softmax_tensor"], "input_shape": [1, 20, 20, 1],
               "input_dtype": "float32"}  # the digits_tf1 example's names
STAGE_OUTPUTS = {
    "convert": ["model"], "export": ["ckpt", "graph.pbtxt", "op_names.txt", "signature.json"],
    "freeze": ["frozen.pb", "names.json"], "optimize": ["optimized.pb", "passes.json"], "verify": [],
}


@dataclass
class Result:
    code: int
    stderr: str
    stdout: str


class Project:
    """A kfreeze project in a temp dir, with one good Keras model and the TF1 example."""

    def __init__(self, root: Path):
        self.root = root
        self.params = {"models": {}, "graphs": {}, "verify": {"samples": 2, "seed": 0, "atol": 1e-4, "atol_float16": 5e-3}}
        (root / "models" / "good").mkdir(parents=True)
        build_tiny().save(root / "models" / "good" / "model.keras")
        self.add_keras("good", "models/good/model.keras")
        shutil.copytree(ROOT / "models" / "digits_tf1", root / "models" / "tf1",
                        ignore=shutil.ignore_patterns("*.py", "*.md"))

    def add_keras(self, name: str, source: str, **keys) -> None:
        self.params["models"][name] = keras_entry(source, **keys)
        self.save()

    def add_graph(self, name: str, graph: str, checkpoint: str, **keys) -> None:
        self.params["graphs"][name] = graph_entry(graph, checkpoint, **{**TF1_EXAMPLE, **keys})
        self.save()

    def save(self) -> None:
        (self.root / "params.yaml").write_text(yaml.safe_dump(self.params, sort_keys=False))

    def file(self, rel: str, data: bytes | None = None, copy_from: Path | None = None) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if copy_from is not None:
            shutil.copy(copy_from, path)
        if data is not None:
            path.write_bytes(data)
        return path

    def run(self, *args: str) -> Result:
        import os
        cwd = os.getcwd()
        os.chdir(self.root)
        try:
            result = CliRunner().invoke(app, list(args))
        finally:
            os.chdir(cwd)
        return Result(result.exit_code, result.stderr, result.stdout)

    def outputs(self, stage: str, name: str) -> list[str]:
        found = [o for o in STAGE_OUTPUTS[stage] if (self.root / "build" / name / o).exists()]
        if stage == "verify" and (self.root / "metrics" / f"{name}.json").exists():
            found.append("metrics")
        return found

    def tree(self, name: str) -> dict:
        base = self.root / "build" / name
        return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def refuse(problem: str):
    """A function that fails as kfreeze refuses an input (run in a kfreeze.child by the tests)."""
    from kfreeze.errors import KfreezeError
    raise KfreezeError("w", problem)
