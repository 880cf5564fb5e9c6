"""The stage scripts: thin, and started by DVC with whatever `python` is on PATH."""

import ast
from pathlib import Path

import pytest

STAGES = Path(__file__).resolve().parents[1] / "stages"


@pytest.mark.parametrize("script", sorted(p.name for p in STAGES.glob("*.py") if p.name != "_venv.py"))
def test_stage_switches_to_the_venv_before_any_third_party_import(script):
    body = ast.parse((STAGES / script).read_text()).body
    calls = [i for i, n in enumerate(body) if isinstance(n, ast.Expr) and ast.unparse(n) == "_venv.ensure()"]
    imports = [i for i, n in enumerate(body) if isinstance(n, (ast.Import, ast.ImportFrom))
               and ast.unparse(n) != "import _venv"]
    assert calls and imports and calls[0] < min(imports), f"{script}: call _venv.ensure() before importing typer/kfreeze"


@pytest.mark.parametrize("script", sorted(p.name for p in STAGES.glob("*.py") if p.name != "_venv.py"))
def test_no_stage_script_shadows_a_package(script):
    """Python puts stages/ first on sys.path: a stages/onnx.py would be imported as the onnx package."""
    import importlib.machinery
    import sys

    installed = [p for p in sys.path if p.endswith("-packages")]
    spec = importlib.machinery.PathFinder.find_spec(Path(script).stem, installed)
    assert spec is None, f"stages/{script} hides the installed package of that name"
