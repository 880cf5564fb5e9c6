"""DVC stage 'freeze@<name>': see `kfreeze freeze --help`."""

import typer

from kfreeze.commands import freeze

if __name__ == "__main__":
    typer.run(freeze)
