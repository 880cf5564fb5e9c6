"""The README's pasted outputs are what the commands print today: `dvc repro` (timing excepted),
`kfreeze run`, `kfreeze nodes` and the error examples (docs/readme_run.py writes them)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.docs  # a full dvc repro of the examples: `make test-docs`, run by .ci/run
def test_readme_real_run_block_is_current():
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "readme_run.py"), "--check", "repro"],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.docs  # about a minute: seven kfreeze processes (two kfreeze runs, a convert, export, freeze...)
def test_readme_command_blocks_are_current():
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "readme_run.py"), "--check", "run", "nodes", "errors"],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "README blocks are current: run, nodes, errors" in proc.stdout
