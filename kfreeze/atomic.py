"""Atomic outputs: write beside the target, then ``os.replace``.

An interrupted stage leaves either the previous artifact or none, never a
half-written one that DVC would cache and push.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def clean_stale(path: Path) -> None:
    """Remove temp files a killed run left beside ``path`` (SIGKILL skips every cleanup)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
    old = path.parent / f".{path.name}.old"
    if old.is_dir():
        shutil.rmtree(old)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp directory beside ``path``; on success it replaces ``path``.

    A directory cannot be swapped in one ``rename`` when the target exists, so the
    old one is first moved aside; a crash in that instant leaves the old copy under
    a dot-name next to it, never a partial directory under the real name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old"
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
