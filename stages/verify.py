"""DVC stage 'verify@<name>': see `kfreeze verify --help`."""

import typer

from kfreeze.commands import verify

if __name__ == "__main__":
    typer.run(verify)
