"""The README's "Output of a real run" block is what `dvc repro` prints today (timing excepted)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.docs  # a full dvc repro of the examples: `make test-docs`, run by .ci/run
def test_readme_real_run_block_is_current():
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "readme_run.py"), "--check"], capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
