"""kfreeze: Keras models and TF1 checkpoints to frozen, inference-optimized TensorFlow graphs."""

import os as _os

# Set before anything imports TensorFlow: quiet C++ logs, and no oneDNN
# rewrites, which change float summation order between runs and machines.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"
