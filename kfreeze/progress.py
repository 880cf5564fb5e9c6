"""Progress on stderr: what a stage is doing as it does it, and how long each step took.

``[export digits] tracing the model ... 0.4 s``: the step's text is written when it
starts (so a slow step shows what it is doing) and its time when it ends. Times
go to stderr only, never into artifacts or metrics, which must repeat byte for byte.
On a terminal a step's sample count updates in place; elsewhere (DVC's log, CI)
there is no carriage return, only the final count. ``KFREEZE_QUIET=1`` (or
``kfreeze --quiet``) turns it all off. Steps go through ``logging`` (logger
``kfreeze.progress``); the command line's entry points install the handler.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time

# Steps are log records of the 'kfreeze.progress' logger (INFO): a program that calls kfreeze's
# library gets none unless it asks (logging's configuration); the kfreeze command and the stage
# scripts install ``LineHandler`` (``install``), which writes them as the lines above.
log = logging.getLogger("kfreeze.progress")
log.addHandler(logging.NullHandler())
log.propagate = False  # the root logger's handlers (lastResort) would print them a second time

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


class LineHandler(logging.Handler):
    """Steps as stderr lines: the text when a step starts, its time when it ends (on one line unless
    something else printed meanwhile), counts in place on a terminal. Writes to ``sys.stderr`` as it
    is at each record (pytest's capture replaces it)."""

    def emit(self, record: logging.LogRecord) -> None:
        global _open
        event, what = getattr(record, "event", None), record.getMessage()
        label = getattr(record, "label", _label)
        if event == "start":
            newline()
            _write(f"{label} {what} ...")
            _open = True
        elif event == "advance":
            if _open and _tty():
                _write(f"\r{label} {what} ... {record.count}")
        elif event == "end":
            if _open:
                _write(f"\r{label} {what} ... {record.took}\n" if _tty() and record.counted else f" {record.took}\n")
            else:  # something else printed meanwhile: a line of its own
                _write(f"{label} {what}: {record.took}\n")
            _open = False


def install() -> None:
    """The kfreeze command's and the stage scripts' progress lines on stderr (none with KFREEZE_QUIET)."""
    if not any(isinstance(h, LineHandler) for h in log.handlers):
        log.addHandler(LineHandler())
    log.setLevel(logging.INFO)


def _emit(event: str, what: str, **extra) -> None:
    if not quiet() and log.isEnabledFor(logging.INFO):
        log.info(what, extra={"event": event, "label": _label, **extra})


class Step:
    """A running step; ``advance(n)`` counts samples done (shown in place on a terminal)."""

    def __init__(self, what: str, total: int | None):
        self.what, self.total, self.done = what, total, 0
        self.start = time.monotonic()

    def advance(self, n: int = 1) -> None:
        self.done = self.done + n if self.total is None else min(self.done + n, self.total)
        _emit("advance", self.what, count=f"{self.done}/{self.total}")

    def count(self) -> str:
        return f"{self.done}/{self.total}, " if self.total is not None else ""


@contextlib.contextmanager
def step(what: str, total: int | None = None):
    """Time one step of a stage: ``with progress.step("freezing", total=16) as s: ... s.advance()``."""
    s = Step(what, total)
    _emit("start", what)
    failed = False
    try:
        yield s
    except BaseException:
        failed = True
        raise
    finally:
        took = f"{'failed after ' if failed else ''}{s.count()}{time.monotonic() - s.start:.1f} s"
        _emit("end", what, took=took, counted=s.total is not None)


def _tty() -> bool:
    return sys.stderr.isatty()


def _write(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()
