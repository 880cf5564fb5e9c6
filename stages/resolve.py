"""DVC stages 'resolve@<name>' and 'resolve_tf1@<name>': see `kfreeze resolve --help`."""

import typer

from kfreeze.commands import resolve

if __name__ == "__main__":
    typer.run(resolve)
