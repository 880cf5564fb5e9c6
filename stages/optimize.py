"""DVC stage 'optimize@<name>': see `kfreeze optimize --help`."""

import typer

from kfreeze.commands import optimize

if __name__ == "__main__":
    typer.run(optimize)
