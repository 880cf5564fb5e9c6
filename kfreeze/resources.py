"""Keep a hostile input from exhausting or crashing the machine: memory estimates and crash isolation."""

from __future__ import annotations

import os
import pickle
import signal
import struct
from pathlib import Path
from typing import Callable

from kfreeze.errors import KfreezeError


def available_memory() -> int:
    """Bytes the machine can still give (MemAvailable), or a huge value when unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 2**62


def release_memory() -> None:
    """Collect garbage and hand freed heap memory back to the system (glibc's malloc_trim).

    A freed copy of a big graph otherwise stays in the process' heap: verify's RSS kept
    every phase's peak (VGG16: the weights read, then Keras', then the session's).
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def activation_bytes(graph) -> tuple[int, str, int]:
    """(sum of every op output's bytes, the largest output's node, its bytes), from static shapes.

    An upper bound of what running the graph once allocates (not every tensor is
    alive at once); unknown dimensions count as 1. Constants are not counted:
    they are already in memory.
    """
    from kfreeze.optimize.graph import light_graph
    from kfreeze.tfenv import tf

    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(light_graph(graph), name="")
    total, largest, largest_bytes = 0, "", 0
    for op in g.get_operations():
        if op.type in ("Const", "Placeholder") and op.name not in _placeholders(graph):
            continue
        for t in op.outputs:
            if t.shape.rank is None or t.dtype == tf.resource or t.dtype == tf.variant:
                continue
            n = 1
            for d in t.shape.as_list():
                n *= d if d is not None and d > 0 else 1
            size = n * (t.dtype.size if t.dtype != tf.string else 1)
            total += size
            if size > largest_bytes:
                largest, largest_bytes = op.name, size
    return total, largest, largest_bytes


def _placeholders(graph) -> set[str]:
    return {n.name for n in graph.node if n.op == "Placeholder"}


def check_activations(graph, where: str, param: str) -> None:
    """Refuse a graph whose activations, at the shapes it has now, cannot fit in memory."""
    total, largest, largest_bytes = activation_bytes(graph)
    free = available_memory()
    if total > free:
        raise KfreezeError(where, f"at this input_shape the activations need about {total / 2**30:.1f} GiB "
                           f"(the largest, '{largest}', {largest_bytes / 2**30:.1f} GiB) and the machine has "
                           f"{free / 2**30:.1f} GiB free", f"use a smaller {param}")


ISOLATED_TIMEOUT_S = 3600.0


def _read_result(fd: int, timeout: float) -> memoryview:
    """The child's length-prefixed answer, a view (not a copy: VGG16's graph is 553 MB); empty if it died first."""
    import select
    import time

    deadline = time.monotonic() + timeout
    buf = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        buf += chunk
    if len(buf) < 8 or len(buf) - 8 != struct.unpack("<Q", bytes(buf[:8]))[0]:
        return memoryview(b"")
    return memoryview(buf)[8:]


def isolated(fn: Callable, *args, what: str = "optimize", where: str = "graph", timeout: float = ISOLATED_TIMEOUT_S):
    """``fn(*args)`` in a forked child; a native crash there (a segfault in Grappler) becomes one error line.

    Forked, not spawned: the child inherits the imported TensorFlow and the
    arguments, so isolation costs a fork and one pickle of the result, not a
    second TensorFlow start-up. The parent has run no TF session or eager op by
    then, so no thread pool is left half-copied in the child.
    """
    import tempfile

    if os.environ.get("KFREEZE_DEBUG") == "1":  # --debug: in-process, so the traceback is the real one
        return fn(*args)
    read_fd, write_fd = os.pipe()
    log = tempfile.TemporaryFile()  # the child's stderr: TF's own crash report, quoted in the one line
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        code = 0
        try:
            import faulthandler
            faulthandler.disable()
            os.dup2(log.fileno(), 2)
            try:
                payload = pickle.dumps(("ok", fn(*args)), protocol=pickle.HIGHEST_PROTOCOL)
            except KfreezeError as e:
                payload = pickle.dumps(("error", (e.where, e.problem, e.fix)))
            except BaseException as e:  # re-raised in the parent as the same kind of failure
                payload = pickle.dumps(("exception", (type(e).__name__, str(e))))
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(struct.pack("<Q", len(payload)))
                pipe.write(payload)
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        data = _read_result(read_fd, timeout)
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise KfreezeError(where, f"{what} did not finish within {timeout:.0f} s", "report this model") from None
    finally:
        os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    log.seek(0)
    said = [ln.strip() for ln in log.read()[-4096:].decode("utf-8", "replace").splitlines() if ln.strip()]
    log.close()
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        last = f": {said[-1][:200]}" if said else ""
        raise KfreezeError(where, f"TensorFlow crashed during {what} ({name}, signal {sig}){last}",
                           "the graph or its input_shape is beyond what TensorFlow handles; report this model")
    if not data:
        raise KfreezeError(where, f"{what} ended without a result (exit status {os.WEXITSTATUS(status)})",
                           "re-run with --debug; report this model")
    kind, value = pickle.loads(data)
    del data
    if kind == "ok":
        return value
    if kind == "error":
        raise KfreezeError(*value)
    raise RuntimeError(f"{value[0]}: {value[1]}")
