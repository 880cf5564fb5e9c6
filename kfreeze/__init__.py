"""kfreeze: Keras models and TF1 checkpoints to frozen, inference-optimized TensorFlow graphs."""

import os as _os

# Keras 3 must run on TensorFlow for anything kfreeze does; a caller's explicit choice stays.
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

# Set by pin_tensorflow() in kfreeze's own processes; read by kfreeze.tfenv.
PINNED = "KFREEZE_PINNED"


def pin_tensorflow() -> None:
    """Pin TensorFlow the way kfreeze's own processes (the CLI, the DVC stages, the tests) run it.

    Called by the entry points, never on import: a program that imports kfreeze to use its
    graph keeps TensorFlow's defaults (oneDNN on), which is how verify also checks the graph.
    Pinned: quiet C++ logs; no oneDNN rewrites, which change float summation order between runs
    and machines; and one oneDNN ISA, because sgemm picks its kernels by CPU (AVX-512 and AVX2
    sum in another order: two_heads max_abs_diff 1.46e-06 vs 1.39e-06), so metrics and folded
    weights repeat across every x86-64 machine since 2013. KFREEZE_CPU_ISA overrides the ISA
    (e.g. ALL for the machine's best). Must run before TensorFlow is imported.
    """
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    _os.environ["ONEDNN_MAX_CPU_ISA"] = _os.environ.get("KFREEZE_CPU_ISA", "AVX2")
    _os.environ[PINNED] = "1"
