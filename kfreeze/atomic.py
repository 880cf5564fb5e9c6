"""Atomic outputs: write beside the target, then ``os.replace``.

An interrupted stage leaves either the previous artifact or none, never a
half-written one that DVC would cache and push.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def _prefix(path: Path) -> str:
    """Temp names carry the writer's pid: a concurrent run of the same stage keeps its own files."""
    return f".{path.name}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale(path: Path) -> None:
    """Remove temp files a killed run left beside ``path`` (SIGKILL skips every cleanup).

    Only those of processes that are gone: a run still writing keeps its temp files.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = stale.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and _alive(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(stale) if stale.is_dir() and not stale.is_symlink() else stale.unlink()
    old = path.parent / f".{path.name}.old"  # the name older kfreeze versions used
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with writing(path) as f:
        f.write(data)


@contextlib.contextmanager
def writing(path: str | os.PathLike):
    """A binary file to write ``path`` through, streamed: in place when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:  # fsync/write name no file: say which one
            raise OSError(e.errno, e.strerror, str(path)) from e
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
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, path: Path, attempts: int = 10) -> None:
    """Move the old directory aside (under a temp name of this process), then ``tmp`` in.

    A concurrent run may publish its own copy between the two renames; then that
    copy is moved aside too and this one replaces it (same inputs, same bytes).
    """
    for _ in range(attempts):
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent))
            try:
                os.replace(path, old / "old")
            except FileNotFoundError:  # another run moved it first
                pass
        try:
            os.replace(tmp, path)
            return
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    raise OSError(errno.EBUSY, "another run keeps replacing this directory", str(path))
