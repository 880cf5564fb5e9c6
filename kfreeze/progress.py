"""Progress on stderr: what a stage is doing as it does it, and how long each step took.

``[export digits] tracing the model ... 0.4 s``: the step's text is written when it
starts (so a slow step shows what it is doing) and its time when it ends. Times
go to stderr only, never into artifacts or metrics, which must repeat byte for byte.
On a terminal a step's sample count updates in place; elsewhere (DVC's log, CI)
there is no carriage return, only the final count. ``KFREEZE_QUIET=1`` (or
``kfreeze --quiet``) turns it all off.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

_label = ""
_open = False  # a step's line is written up to its "..." and waits for its time


def quiet() -> bool:
    return os.environ.get("KFREEZE_QUIET", "") not in ("", "0")


def begin(stage: str, name: str) -> None:
    """Name the stage and model that prefix every line: ``[stage name]``."""
    global _label
    _label = f"[{stage} {name}]"


def newline() -> None:
    """End a step's open line, so that another message (a warning, an error) starts its own."""
    global _open
    if _open:
        _write("\n")
        _open = False


class Step:
    """A running step; ``advance(n)`` counts samples done (shown in place on a terminal)."""

    def __init__(self, what: str, total: int | None):
        self.what, self.total, self.done = what, total, 0
        self.start = time.monotonic()

    def advance(self, n: int = 1) -> None:
        self.done = self.done + n if self.total is None else min(self.done + n, self.total)
        if _open and _tty():
            _write(f"\r{_label} {self.what} ... {self.done}/{self.total}")

    def count(self) -> str:
        return f"{self.done}/{self.total}, " if self.total is not None else ""


@contextlib.contextmanager
def step(what: str, total: int | None = None):
    """Time one step of a stage: ``with progress.step("freezing", total=16) as s: ... s.advance()``."""
    global _open
    s = Step(what, total)
    if quiet():
        yield s
        return
    newline()
    _write(f"{_label} {what} ...")
    _open = True
    failed = False
    try:
        yield s
    except BaseException:
        failed = True
        raise
    finally:
        took = f"{'failed after ' if failed else ''}{s.count()}{time.monotonic() - s.start:.1f} s"
        if _open:
            _write(f"\r{_label} {what} ... {took}\n" if _tty() and s.total is not None else f" {took}\n")
        else:  # something else printed meanwhile: a line of its own
            _write(f"{_label} {what}: {took}\n")
        _open = False


def _tty() -> bool:
    return sys.stderr.isatty()


def _write(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()
