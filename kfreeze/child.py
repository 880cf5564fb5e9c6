"""Every child process kfreeze starts: a fresh interpreter, bounded in time and memory.

Never a fork of a process that runs TensorFlow: a forked optimize child deadlocked in Grappler's
thread-pool destructor (a mutex copied locked at fork time) 4 times in about 200 runs. A child here
is a new ``python`` (``subprocess``), whose address space is capped with ``prlimit`` right after it
starts, and which is killed at its deadline. A runaway (a graph that makes OpenCV allocate without
bound, a 2^62-step loop) becomes one line naming the bound, which ``KFREEZE_MEMORY_LIMIT_GB`` and
``KFREEZE_TIME_LIMIT_S`` override.

``run`` starts a script or module; ``call`` runs ``fn(*args)`` from an importable module in a child
and returns its result (arguments and result travel as pickles in a private temporary folder).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kfreeze.errors import KfreezeError

GiB = 2**30
# A TensorFlow process reserves about 2 GiB of address space before it computes anything
# (thread stacks, malloc arenas): the floor under every bound.
BASE_MEMORY = 4 * GiB
DEFAULT_TIMEOUT_S = 3600.0


def memory_bound(model_bytes: int, factor: int = 16) -> int:
    """The address-space cap for a child working on a model of ``model_bytes``: the floor plus
    ``factor`` copies of it, or ``KFREEZE_MEMORY_LIMIT_GB`` when set. Grappler holds the graph
    several times over: VGG16's optimize (a 553 MB frozen.pb) failed under 6 copies (7.1 GiB)."""
    override = os.environ.get("KFREEZE_MEMORY_LIMIT_GB")
    if override:
        return int(float(override) * GiB)
    return BASE_MEMORY + factor * max(int(model_bytes), 0)


def time_bound(default: float = DEFAULT_TIMEOUT_S) -> float:
    override = os.environ.get("KFREEZE_TIME_LIMIT_S")
    return float(override) if override else default


@contextlib.contextmanager
def bounded_memory(extra: int):
    """This process may grow by at most ``extra`` bytes of address space inside the block (a soft
    RLIMIT_AS over what it maps now, restored after): for a step that cannot run in a child, such as
    Keras building a model from a config whose layer sizes no file backs (Dense(2**29) in 6 KB)."""
    override = os.environ.get("KFREEZE_MEMORY_LIMIT_GB")
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        now = _address_space()
    except (OSError, ValueError):
        yield
        return
    limit = int(float(override) * GiB) if override else now + extra
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _address_space() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise ValueError("no VmSize")


@dataclass
class Outcome:
    """How a child ended: ``problem`` is None when it exited 0, else one sentence."""
    returncode: int
    stderr: str
    problem: str | None


_OUT_OF_MEMORY = ("MemoryError", "bad_alloc", "Cannot allocate memory", "OOM", "out of memory",
                  "Insufficient memory", "Failed to allocate")


def run(cmd: list[str], *, what: str, timeout: float, memory: int | None, env: dict | None = None,
        cwd: str | Path | None = None) -> Outcome:
    """Run ``cmd`` with stdin closed and stderr kept (its last lines give the reason)."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                env=env, cwd=cwd, start_new_session=True)
        if memory:
            try:
                resource.prlimit(proc.pid, resource.RLIMIT_AS, (memory, memory))
            except (OSError, ValueError):  # gone already, or no prlimit: the deadline still holds
                pass
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            return Outcome(-signal.SIGKILL, "", f"{what} did not finish within {timeout:.0f} s (the time bound; "
                                               "KFREEZE_TIME_LIMIT_S sets another)")
        err.seek(0)
        said = err.read()[-16384:].decode("utf-8", "replace")
    return Outcome(code, said, None if code == 0 else _problem(what, code, said, memory))


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()
    proc.wait()


def _problem(what: str, code: int, said: str, memory: int | None) -> str:
    lines = [ln.strip() for ln in said.splitlines() if ln.strip()]
    last = lines[-1][:300] if lines else ""
    if memory and any(m in said for m in _OUT_OF_MEMORY):
        return (f"{what} needed more than the memory bound of {memory / GiB:.1f} GiB "
                "(KFREEZE_MEMORY_LIMIT_GB sets another)")
    if code < 0:
        sig = -code
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        bound = f" under a memory bound of {memory / GiB:.1f} GiB" if memory else ""
        return f"{what} crashed ({name}, signal {sig}){bound}" + (f": {last}" if last else "")
    return last or f"{what} exited with status {code}"


def call(fn: Callable, *args, what: str, where: str, timeout: float | None = None, memory: int | None = None):
    """``fn(*args)`` in a fresh interpreter; its KfreezeError comes back as the same error, any other
    exception as a RuntimeError naming it, a crash or a bound as one KfreezeError line."""
    if os.environ.get("KFREEZE_DEBUG") == "1":  # --debug: in-process, so the traceback is the real one
        return fn(*args)
    with tempfile.TemporaryDirectory(prefix="kfreeze-child-") as tmp:
        job, result = Path(tmp) / "job.pickle", Path(tmp) / "result.pickle"
        with open(job, "wb") as f:
            pickle.dump((fn.__module__, fn.__qualname__, args), f, protocol=pickle.HIGHEST_PROTOCOL)
        outcome = run([sys.executable, "-m", "kfreeze.child", str(job), str(result)], what=what,
                      timeout=time_bound(timeout or DEFAULT_TIMEOUT_S), memory=memory)
        if not result.is_file():
            raise KfreezeError(where, outcome.problem or f"{what} ended without a result",
                               "re-run with --debug; if the model is large, raise the bound; report this model")
        with open(result, "rb") as f:
            kind, value = pickle.load(f)
    if kind == "ok":
        return value
    if kind == "error":
        raise KfreezeError(*value)
    if kind == "memory":
        bound = f" of {memory / GiB:.1f} GiB" if memory else ""
        raise KfreezeError(where, f"{what} needed more than the memory bound{bound}",
                           "raise KFREEZE_MEMORY_LIMIT_GB (in GiB) if the machine has the memory")
    raise RuntimeError(f"{value[0]}: {value[1]}")


def _main(job: str, result: str) -> int:
    import importlib

    die_with_parent()

    with open(job, "rb") as f:
        module, qualname, args = pickle.load(f)
    fn = importlib.import_module(module)
    for part in qualname.split("."):
        fn = getattr(fn, part)
    try:
        payload = ("ok", fn(*args))
    except KfreezeError as e:
        payload = ("error", (e.where, e.problem, e.fix))
    except MemoryError:
        payload = ("memory", None)
    except Exception as e:  # re-raised in the parent as the same kind of failure
        payload = ("exception", (type(e).__name__, str(e)))
    tmp = Path(result).with_suffix(".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, result)
    return 0


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when the process that started it dies (a killed stage takes
    its child along, instead of leaving it writing or sleeping on its own)."""
    import ctypes
    import signal as _signal
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, _signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux/glibc: the parent's deadline still bounds the child
        pass


def script_main(main: Callable, args: list[str]) -> None:
    """The end of a child script (verify's OpenCV and default-TF runners): killed with its parent, and
    any failure reported to the parent as one line on stderr and exit status 2."""
    die_with_parent()
    try:
        sys.exit(main(*args))
    except Exception as e:
        print(" ".join(str(e).split())[:400], file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    sys.exit(_main(*sys.argv[1:3]))
