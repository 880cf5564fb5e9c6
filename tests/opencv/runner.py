"""Run a graph in OpenCV dnn under a memory limit: verify's own child (kfreeze/verify/opencv_child.py).

Usage: python tests/opencv/runner.py LIMIT_MB GRAPH.pb IN.npz OUT.npz INPUT_NAMES OUTPUTS.
Started as a fresh interpreter (never a fork of a TF process). The limit (RLIMIT_AS) is set
before cv2 is imported, so a graph that makes OpenCV allocate without bound fails here
(std::bad_alloc, or a kill) instead of taking the machine.
"""

from __future__ import annotations

import importlib.util
import resource
import sys
from pathlib import Path


def main() -> int:
    limit = int(sys.argv[1]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    child = Path(__file__).resolve().parents[2] / "kfreeze" / "verify" / "opencv_child.py"
    spec = importlib.util.spec_from_file_location("opencv_child", child)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # numpy and cv2 only: no kfreeze package import, no TensorFlow
    try:
        return module.main(*sys.argv[2:7])
    except Exception as e:
        print(" ".join(str(e).split())[:400], file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
