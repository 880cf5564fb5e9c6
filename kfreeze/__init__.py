"""kfreeze: Keras models and TF1 checkpoints to frozen, inference-optimized TensorFlow graphs."""

import os as _os

# Set before anything imports TensorFlow: quiet C++ logs, and no oneDNN
# rewrites, which change float summation order between runs and machines.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TF's matmul/conv call oneDNN's sgemm, which picks its kernels by CPU: AVX-512 and
# AVX2 sum in another order (two_heads: max_abs_diff 1.46e-06 vs 1.39e-06). One ISA
# for every x86-64 machine since 2013 makes metrics and folded weights repeat across
# machines; KFREEZE_CPU_ISA overrides it (e.g. ALL for the machine's best).
_os.environ["ONEDNN_MAX_CPU_ISA"] = _os.environ.get("KFREEZE_CPU_ISA", "AVX2")

__version__ = "0.1.0"
