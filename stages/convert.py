"""DVC stage 'convert@<name>': reads only build/<name>/settings/convert.json (see `kfreeze convert --help`)."""

import _venv

_venv.ensure()  # before any third-party import: the system Python may lack them

from kfreeze.cli_common import run_stage  # noqa: E402
from kfreeze.commands import stage_command  # noqa: E402

if __name__ == "__main__":
    run_stage(stage_command("convert"))
