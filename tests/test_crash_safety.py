"""SIGKILL each stage while it writes its largest output: the old artifact survives, or none exists.

A ``sitecustomize`` injected into the stage's process makes ``os.fsync`` of the
chosen output's temp file announce itself and wait, so the kill lands exactly
inside the write, before the ``os.replace`` that would publish it.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import tiny_project

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # a stage process per case, killed mid-write: make test-e2e

ROOT = Path(__file__).resolve().parents[1]
HOOK = '''
import os, time
_fsync = os.fsync
def fsync(fd):
    target = os.environ.get("KILL_WHILE_WRITING", "")
    path = os.readlink(f"/proc/self/fd/{fd}")
    if target and f"/.{target}." in path:
        open(os.environ["KILL_MARKER"], "w").write(path)
        time.sleep(600)
    return _fsync(fd)
os.fsync = fsync
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tiny_project(tmp_path_factory.mktemp("crash"), samples=2)
    (root / "hook").mkdir()
    (root / "hook" / "sitecustomize.py").write_text(HOOK)
    for stage in ("convert", "export", "freeze", "optimize", "verify"):
        assert run(root, stage).returncode == 0
    return root


def run(root, stage, **env):
    return subprocess.run([sys.executable, "-m", "kfreeze.cli", stage, "tiny"], cwd=root, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def snapshot(path: Path) -> dict:
    if path.is_dir():
        return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    return {"": path.read_bytes()} if path.exists() else {}


# (stage, the file whose write is interrupted, the artifact that must stay whole)
CASES = [
    ("convert", "model.keras", "build/tiny/model"),
    ("export", "checkpoint", "build/tiny/ckpt"),  # the last file of the directory, after TF's Saver
    ("export", "graph.pbtxt", "build/tiny/graph.pbtxt"),
    ("freeze", "frozen.pb", "build/tiny/frozen.pb"),
    ("optimize", "optimized.pb", "build/tiny/optimized.pb"),
    ("verify", "tiny.json", "metrics/tiny.json"),
]


@pytest.mark.parametrize("stage, writing, artifact", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_sigkill_mid_write_leaves_the_previous_artifact(project, stage, writing, artifact):
    before = snapshot(project / artifact)
    assert before
    marker = project / "killed-at"
    marker.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": f"{project / 'hook'}{os.pathsep}{ROOT}",
           "KILL_WHILE_WRITING": writing, "KILL_MARKER": str(marker)}
    proc = subprocess.Popen([sys.executable, "-m", "kfreeze.cli", stage, "tiny"], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), f"{stage} never wrote {writing}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert snapshot(project / artifact) == before  # whole, and the old version
    # The next run clears the killed run's temp files and publishes a complete artifact again.
    assert run(project, stage).returncode == 0
    assert snapshot(project / artifact) == before  # deterministic: same inputs, same bytes
    leftovers = [p.name for p in (project / artifact).parent.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers
