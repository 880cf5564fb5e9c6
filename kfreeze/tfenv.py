"""Import TensorFlow quietly and deterministically.

Every kfreeze module imports TensorFlow through here, lazily from the commands,
so ``kfreeze --help`` stays instant. In kfreeze's own processes (``kfreeze.pin_tensorflow``)
one intra-op thread makes float reductions run in one order, so the numbers in artifacts and
metrics repeat exactly; a program that imports kfreeze keeps its own TensorFlow settings.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings

import kfreeze


@contextlib.contextmanager
def _stderr_silenced():
    """TF's C++ loader prints CUDA and CPU-feature notes before its log level applies."""
    if os.environ.get("KFREEZE_DEBUG") or "tensorflow" in sys.modules:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


warnings.filterwarnings("ignore", module="tensorflow")
warnings.filterwarnings("ignore", module="keras")
warnings.filterwarnings("ignore", category=DeprecationWarning)

with _stderr_silenced():
    import tensorflow as tf
    # Session and Grappler start-up print CUDA probes too; load them now, silenced.
    tf.config.list_physical_devices()

tf.get_logger().setLevel(logging.ERROR)
logging.getLogger("absl").setLevel(logging.ERROR)
if os.environ.get(kfreeze.PINNED) == "1":
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised by the caller: keep its settings
        pass

__all__ = ["tf"]
