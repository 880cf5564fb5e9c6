"""``python -m kfreeze.compare diff|show ...``: the same commands as ``kfreeze diff`` and ``kfreeze show``."""

import typer

from kfreeze.compare import cli

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.command("diff")(cli.diff)
app.command("show")(cli.show)

if __name__ == "__main__":
    app()
