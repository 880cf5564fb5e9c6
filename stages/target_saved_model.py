"""DVC stage 'saved_model@<name>': see `kfreeze saved_model --help`."""

import _venv

_venv.ensure()  # before any third-party import: the system Python may lack them

from kfreeze.cli_common import run_stage  # noqa: E402
from kfreeze.commands import TARGETS  # noqa: E402

if __name__ == "__main__":
    run_stage(TARGETS["saved_model"])
