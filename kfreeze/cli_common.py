"""What every ``kfreeze`` command shares: the error wrapper and the typer arguments and options.

Commands are typer functions in ``kfreeze.commands`` (the stages, ``nodes``) and
``kfreeze.compare.cli`` (``diff``, ``show``); each is a signature plus one library call.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
import traceback
from pathlib import Path

import typer

from kfreeze.errors import KfreezeError, printable
from kfreeze.params import PARAMS_FILE

Name = typer.Argument(..., help="Model name: an entry under 'models:' in params.yaml.")
ParamsOpt = typer.Option(PARAMS_FILE, "--params", help="The params file.")
BuildOpt = typer.Option(Path("build"), "--build", help="Where the artifacts go: BUILD/<name>/.")
MetricsOpt = typer.Option(Path("metrics"), "--metrics", help="Where verify writes <name>.json.")
DebugOpt = typer.Option(False, "--debug", help="Show the Python traceback on errors.")


def cli_errors(fn=None, *, exit_code: int = 1):
    """One line on stderr and a non-zero exit for any failure; the traceback only with --debug.

    ``kfreeze diff`` exits 2 on errors, because 1 means "the graphs differ", like diff(1).
    """
    if fn is None:
        return functools.partial(cli_errors, exit_code=exit_code)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        before = os.environ.get("KFREEZE_DEBUG")
        debug = kwargs.get("debug") or before
        if debug:  # for child processes and tfenv; restored after, so one in-process call does not leak it
            os.environ["KFREEZE_DEBUG"] = "1"
        try:
            return fn(*args, **kwargs)
        except KfreezeError as e:
            if debug:
                traceback.print_exc()
            print(f"error: {e.line()}", file=sys.stderr)
            raise typer.Exit(exit_code) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except OSError as e:
            if debug:
                traceback.print_exc()
            if e.errno not in _OS_FIXES:
                raise _internal(fn, e, exit_code) from None
            print(f"error: {os_error(e).line()}", file=sys.stderr)
            raise typer.Exit(exit_code) from None
        except Exception as e:  # a bug or an input kfreeze does not recognise yet
            if debug:
                traceback.print_exc()
            raise _internal(fn, e, exit_code) from None
        finally:
            if before is None:
                os.environ.pop("KFREEZE_DEBUG", None)
    return wrapper


_OS_FIXES = {
    errno.EACCES: "check the permissions of the file and its folder",
    errno.EPERM: "check the permissions of the file and its folder",
    errno.ENOSPC: "free some disk space and re-run",
    errno.EDQUOT: "free some disk space (you are over quota) and re-run",
    errno.EROFS: "the file system is read-only; use a writable --build/--metrics folder",
    errno.ENAMETOOLONG: "use a shorter name (a file name holds at most 255 bytes)",
}


def os_error(e: OSError) -> KfreezeError:
    """EACCES, ENOSPC, EROFS...: one line naming the path, not an internal error."""
    return KfreezeError(e.filename or "kfreeze", f"cannot write or read here ({e.strerror})",
                        _OS_FIXES.get(e.errno, "check the path"))


def _internal(fn, e: Exception, exit_code: int):
    reason = printable(" ".join(str(e).split())[:300])
    print(f"error: internal error in {fn.__name__}: {type(e).__name__}: {reason} "
          "(re-run with --debug for the traceback, and report it)", file=sys.stderr)
    return typer.Exit(max(exit_code, 2))


def run_stage(fn) -> None:
    """``typer.run(fn)`` for a stage script (stages/*.py), ended as ``run_and_exit`` does."""
    from kfreeze import progress
    progress.install()
    run_and_exit(lambda: typer.run(fn))


def run_and_exit(main) -> None:
    """``main()``, then end the process without Python's teardown.

    Tearing down an interpreter that has imported TensorFlow costs about 0.8 s of CPU
    (measured: a digits freeze, 3.9 s -> 3.1 s), a fifth of a small model's stage. Every
    file a stage writes is closed and renamed into place before ``main`` returns, so
    nothing is left to flush but stdout and stderr.
    """
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
