"""DVC stage 'convert@<name>': see `kfreeze convert --help`."""

import typer

from kfreeze.commands import convert

if __name__ == "__main__":
    typer.run(convert)
