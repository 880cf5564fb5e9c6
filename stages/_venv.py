"""Run a stage with the project's ``.venv`` Python when DVC started it with another one.

``dvc.yaml`` says ``python stages/<stage>.py``: with the venv not activated
(``.venv/bin/dvc repro``), that ``python`` is the system's, which lacks kfreeze's
dependencies. Re-executing with ``.venv/bin/python`` makes ``dvc repro`` work
either way. Without a ``.venv`` (kfreeze installed elsewhere) nothing changes.
"""

import os
import sys
from pathlib import Path

VENV = Path(__file__).resolve().parents[1] / ".venv"


def ensure() -> None:
    python = VENV / "bin" / "python"
    if python.is_file() and Path(sys.prefix).resolve() != VENV.resolve():
        os.execv(str(python), [str(python), *sys.argv])
    import kfreeze
    kfreeze.pin_tensorflow()  # a stage pins TensorFlow as the CLI does
