"""DVC stage 'resolve': every model's names and entry checked, each stage's settings written to
build/settings/<name>/ (see `kfreeze resolve --help`). It takes no model name: it checks them all,
before DVC runs any stage whose command line holds one."""

import _venv

_venv.ensure()  # before any third-party import: the system Python may lack them

from kfreeze.cli_common import run_stage  # noqa: E402
from kfreeze.commands import resolve  # noqa: E402

if __name__ == "__main__":
    run_stage(resolve)
