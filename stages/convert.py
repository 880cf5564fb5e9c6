"""DVC stage 'convert@<name>': see `kfreeze convert --help`."""

import _venv

_venv.ensure()  # before any third-party import: the system Python may lack them

import typer  # noqa: E402

from kfreeze.commands import convert  # noqa: E402

if __name__ == "__main__":
    typer.run(convert)
