"""Keep other tools' chatter off the user's terminal: kfreeze says one line, not theirs before it.

The converters write to the process' stderr on their own: MLIR's diagnostics (``loc(fused[...]): error:``,
``Some ops in the model are custom ops...``) from C++, tf2onnx's ``Tensorflow op [y: Igamma] is not
supported`` through Python logging, LiteRT's ``INFO: Created TensorFlow Lite XNNPACK delegate``. kfreeze
reads their failures from the exceptions they raise and prints its own line, so what they write is
captured at the file descriptor (C++ and Python alike) and dropped, or with ``--debug``
(``KFREEZE_DEBUG=1``) replayed on stderr after the block.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile

_depth = 0


@contextlib.contextmanager
def captured_stderr():
    """Inside the block, whatever writes to file descriptor 2 (or ``sys.stderr``) goes to a temporary file.

    Nested blocks share the outer capture. Yields a list that holds the captured text once the block ends."""
    global _depth
    captured: list[str] = []
    if _depth:
        yield captured
        return
    _flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to keep quiet
        yield captured
        return
    _depth += 1
    sink = tempfile.TemporaryFile()
    try:
        os.dup2(sink.fileno(), 2)
        yield captured
    finally:
        _flush()
        os.dup2(saved, 2)
        os.close(saved)
        _depth -= 1
        sink.seek(0)
        captured.append(sink.read()[-65536:].decode("utf-8", "replace"))
        sink.close()
        if os.environ.get("KFREEZE_DEBUG") == "1" and captured[0]:
            sys.stderr.write(captured[0])
            sys.stderr.flush()


def _flush() -> None:
    for stream in (sys.stderr, sys.__stderr__):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


def quiet_stderr(fn):
    """``fn`` with its stderr captured (``captured_stderr``): for a function that runs a converter."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with captured_stderr():
            return fn(*args, **kwargs)
    return wrapper
