"""DVC stage 'export@<name>': see `kfreeze export --help`."""

import typer

from kfreeze.commands import export

if __name__ == "__main__":
    typer.run(export)
