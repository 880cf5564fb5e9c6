"""The ``kfreeze`` command: the pipeline stages as subcommands, plus node discovery."""

from __future__ import annotations

import os

import typer

from kfreeze import commands
from kfreeze.cli_common import DebugOpt, run_and_exit
from kfreeze.compare import cli as compare_cli

app = typer.Typer(
    help="Turn Keras models into frozen, inference-optimized TensorFlow graphs. 'run' does one file in one "
         "command; 'add' registers a model in params.yaml. The stages "
         "(resolve, convert, export, freeze, optimize, the targets (onnx, tflite...), verify) are what 'dvc repro' runs "
         "per model "
         "in params.yaml; "
         "'nodes' lists a graph's likely inputs and outputs, 'diff' compares two commits' graphs, "
         "'show' draws one.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def _options(debug: bool = DebugOpt,
             quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines on stderr "
                                        "(as KFREEZE_QUIET=1, which the stage scripts read).")):
    """Options for every command: ``kfreeze --debug <command>`` is ``kfreeze <command> --debug``."""
    from kfreeze import progress
    progress.install()  # the steps' lines on stderr (a program calling the library gets log records)
    if debug:
        os.environ["KFREEZE_DEBUG"] = "1"
    if quiet:
        os.environ["KFREEZE_QUIET"] = "1"


for fn in (commands.resolve, commands.convert, commands.export, commands.freeze, commands.optimize,
           *commands.TARGETS.values(), commands.verify, commands.nodes):
    app.command(fn.__name__)(fn)
app.command("run")(commands.run)
app.command("add")(commands.add)
app.command("diff")(compare_cli.diff)
app.command("show")(compare_cli.show)


def main() -> None:
    import kfreeze
    kfreeze.pin_tensorflow()
    run_and_exit(app)


if __name__ == "__main__":
    main()
