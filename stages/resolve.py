"""DVC stages 'resolve@<name>' and 'resolve_tf1@<name>': see `kfreeze resolve --help`."""

import _venv

_venv.ensure()  # before any third-party import: the system Python may lack them

import typer  # noqa: E402

from kfreeze.commands import resolve  # noqa: E402

if __name__ == "__main__":
    typer.run(resolve)
