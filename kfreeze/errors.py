"""One error type for everything a user can fix, printed as one line without a traceback."""

from __future__ import annotations


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
