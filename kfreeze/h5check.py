"""Check an HDF5 file's structure (``check_structure``: no external storage, links or virtual datasets,
no oversized datasets), then read every attribute and dataset in a child process, with a time limit.

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
KFREEZE_PREFIX = "kfreeze-refused: "


def check(path: str | Path, timeout: float = TIMEOUT_S) -> None:
    cmd = [sys.executable, "-m", "kfreeze.h5check", str(path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise KfreezeError(path, f"reading this HDF5 file did not finish in {timeout:.0f} s",
                           "the file is damaged; re-save it") from None
    if proc.returncode == 3 and KFREEZE_PREFIX in proc.stderr:
        problem, _, fix = proc.stderr.split(KFREEZE_PREFIX, 1)[1].strip().partition("\t")
        raise KfreezeError(path, problem, fix)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        reason = lines[-1][:200] if lines else f"exit status {proc.returncode}"
        raise KfreezeError(path, f"not a readable HDF5 file ({reason})", "the file is damaged; re-save it")


def declared_limit(file_size: int) -> int:
    """How many bytes of datasets a file of ``file_size`` bytes may declare.

    Keras writes weights uncompressed, so their declared size is about the file's
    size; this leaves room for compression without letting a small file (a
    chunked dataset of fill values, or a compressed one) expand to gigabytes.
    """
    return 4 * file_size + DECLARED_SLACK


DECLARED_SLACK = 64 * 2**20


def check_structure(path: str | Path) -> None:
    """Refuse, from metadata alone, an HDF5 file whose datasets would read other files or too much.

    External links and external storage name files outside (``/etc/passwd``),
    virtual datasets map other files' data in, and a dataset's declared size is
    what reading it allocates. No dataset is read here. Keras 3's own reader
    refuses some of these; h5py and tf_keras read them all.
    """
    import h5py

    path = Path(path)
    limit = declared_limit(path.stat().st_size)
    problems: list[str] = []
    total = 0

    def link(name: str) -> None:
        kind = f.get(name, getlink=True)
        if isinstance(kind, h5py.ExternalLink):
            problems.append(f"'{name}' is an external link to {kind.filename}:{kind.path}")
        elif isinstance(kind, h5py.SoftLink) and f.get(name) is None:
            problems.append(f"'{name}' is a soft link to '{kind.path}', which is not in the file")

    def dataset(name: str, obj) -> None:
        nonlocal total
        if not isinstance(obj, h5py.Dataset):
            return
        if obj.external:
            problems.append(f"dataset '{name}' keeps its data in external file(s) "
                            f"{', '.join(str(e[0], 'utf8', 'replace') if isinstance(e[0], bytes) else str(e[0]) for e in obj.external)}")
        elif obj.is_virtual:
            problems.append(f"dataset '{name}' is a virtual dataset (it maps data from other files)")
        total += int(obj.size or 0) * obj.dtype.itemsize

    try:
        with h5py.File(path, "r") as f:
            f.visit_links(link)
            if not problems:
                f.visititems(dataset)
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as e:
        raise KfreezeError(path, f"not a readable HDF5 file ({type(e).__name__}: {' '.join(str(e).split())[:160]})",
                           "the file is damaged; re-save it") from None
    if problems:
        raise KfreezeError(path, f"{problems[0]}; kfreeze reads only data stored inside the file",
                           "re-save the model with model.save() from a copy you trust")
    if total > limit:
        raise KfreezeError(path, f"its datasets declare {total / 2**20:.0f} MiB, far more than a "
                           f"{path.stat().st_size / 2**20:.1f} MiB file holds", "the file is damaged or hostile; "
                           "re-save the model")


def _read_all(path: str) -> None:
    import h5py

    check_structure(path)

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
    except KfreezeError as e:  # the whole line for the parent, which re-raises it
        print(f"{KFREEZE_PREFIX}{e.problem}\t{e.fix}", file=sys.stderr)
        sys.exit(3)
    except Exception as e:  # reported to the parent as the one-line reason
        print(f"{type(e).__name__}: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)
