"""One error type for everything a user can fix, printed as one line without a traceback."""

from __future__ import annotations

import contextlib
import sys


class KfreezeError(Exception):
    """A problem with the user's input: which file, what is wrong, and what to do.

    The CLI prints ``str(error)`` as a single line on stderr and exits non-zero;
    the traceback is shown only with ``--debug``.
    """

    def __init__(self, where: str, problem: str, fix: str = ""):
        self.where = str(where)
        self.problem = problem
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        text = f"{self.where}: {self.problem}"
        if self.fix:
            text += f"; {self.fix}"
        return printable(" ".join(text.split()))  # always one line


LINE_MAX = 2000  # a line, not a dump: values quoted from a hostile file can be huge


def printable(text: str, limit: int = LINE_MAX) -> str:
    """``text`` with control characters (ANSI escapes, newlines, C1 codes) shown as \\xNN, cut to ``limit``."""
    out = "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii") for c in text)
    return out if len(out) <= limit else out[: limit - 3] + "..."


def _read_errors() -> tuple[type[BaseException], ...]:
    """What a file reader (h5py, zipfile, protobuf, Keras' loaders) raises for a file it cannot read."""
    import zipfile

    from google.protobuf.message import DecodeError

    # RecursionError: a config nested 100,000 deep, which json and Keras' deserializers recurse into.
    # SystemError: h5py on some malformed attributes ("error return without exception set").
    return (OSError, EOFError, zipfile.BadZipFile, DecodeError, ValueError, KeyError, TypeError, RecursionError,
            SystemError)


def _raised_by_kfreeze(e: BaseException) -> bool:
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE)


_PACKAGE = __file__.rsplit("errors.py", 1)[0]


@contextlib.contextmanager
def reading(path):
    """While a user's file is read, a reader's own exception means the file is not what it should be.

    Only a reader library's error types count, and a TypeError only when a library raised it
    (Keras' deserializers do; kfreeze's own is a bug). Anything else stays an internal error.
    """
    try:
        yield
    except KfreezeError:
        raise
    except _read_errors() as e:
        if isinstance(e, TypeError) and _raised_by_kfreeze(e):
            raise
        reason = " ".join(str(e).split())[:200]
        raise KfreezeError(path, f"cannot be read ({type(e).__name__}: {reason})",
                           "the file is damaged or not the kind the model's settings say; re-save it") from None


def warn(message: str) -> None:
    """A warning that does not stop the stage: one line on stderr."""
    from kfreeze import progress
    progress.newline()
    print(printable(message), file=sys.stderr)
