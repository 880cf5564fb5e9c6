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
        return " ".join(text.split())  # always one line
