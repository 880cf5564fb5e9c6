"""Read every attribute and dataset of an HDF5 file in a child process, with a time limit.

libhdf5 can loop forever on a damaged file (seen when fuzzing: one inserted byte
is enough), inside C code that no Python signal interrupts. Keras and h5py
then read the same file only after a child process has read it all within the limit.
Usage: python -m kfreeze.h5check FILE.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kfreeze.errors import KfreezeError

TIMEOUT_S = 60


def check(path: str | Path, timeout: float = TIMEOUT_S) -> None:
    cmd = [sys.executable, "-m", "kfreeze.h5check", str(path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise KfreezeError(path, f"reading this HDF5 file did not finish in {timeout:.0f} s",
                           "the file is damaged; re-save it") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        reason = lines[-1][:200] if lines else f"exit status {proc.returncode}"
        raise KfreezeError(path, f"not a readable HDF5 file ({reason})", "the file is damaged; re-save it")


def _read_all(path: str) -> None:
    import h5py

    def visit(_name, obj):
        dict(obj.attrs)
        if isinstance(obj, h5py.Dataset):
            obj[()]

    with h5py.File(path, "r") as f:
        dict(f.attrs)
        f.visititems(visit)


if __name__ == "__main__":
    try:
        _read_all(sys.argv[1])
    except Exception as e:  # reported to the parent as the one-line reason
        print(f"{type(e).__name__}: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)
