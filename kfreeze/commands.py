"""The pipeline stages and ``nodes`` as typer commands: a signature and one library call each.

``kfreeze <stage>`` and ``python stages/<stage>.py`` run these same functions; the work is in
``kfreeze.pipeline``. TensorFlow is imported inside each call, so ``--help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path

import typer

from kfreeze.cli_common import BuildOpt, DebugOpt, MetricsOpt, Name, ParamsOpt, cli_errors


@cli_errors
def convert(name: str = Name, params_file: str = ParamsOpt, build: Path = BuildOpt, debug: bool = DebugOpt):
    """Load the model's source and write a canonical, byte-reproducible model to BUILD/<name>/model/."""
    from kfreeze import pipeline
    typer.echo(pipeline.convert(name, params_file, build))


@cli_errors
def export(name: str = Name, params_file: str = ParamsOpt, build: Path = BuildOpt, debug: bool = DebugOpt):
    """Write a TF checkpoint (ckpt/), the inference graph (graph.pbtxt), op_names.txt and signature.json."""
    from kfreeze import pipeline
    typer.echo(pipeline.export(name, params_file, build))


@cli_errors
def freeze(name: str = Name, params_file: str = ParamsOpt, build: Path = BuildOpt, debug: bool = DebugOpt):
    """Freeze graph + checkpoint into BUILD/<name>/frozen.pb (all variables become constants)."""
    from kfreeze import pipeline
    typer.echo(pipeline.freeze(name, params_file, build))


@cli_errors
def optimize(name: str = Name, params_file: str = ParamsOpt, build: Path = BuildOpt, debug: bool = DebugOpt):
    """Cut at the inputs, fold constants and batch norms, strip dropout and training-only nodes:
    BUILD/<name>/optimized.pb."""
    from kfreeze import pipeline
    typer.echo(pipeline.optimize(name, params_file, build))


@cli_errors
def verify(name: str = Name, params_file: str = ParamsOpt, build: Path = BuildOpt,
           metrics: Path = MetricsOpt, debug: bool = DebugOpt):
    """Compare the source model with optimized.pb in TensorFlow and OpenCV; write METRICS/<name>.json.

    A failing verify writes no metrics (DVC records no result for a failed stage):
    its report goes to BUILD/<name>/verify_failed.json and a stale METRICS/<name>.json is removed.
    """
    from kfreeze import pipeline
    typer.echo(pipeline.verify(name, params_file, build, metrics))


@cli_errors
def nodes(graph: Path = typer.Argument(..., help="A .pb, .pbtxt or .meta graph."),
          limit: int = typer.Option(10, help="How many candidates of each kind to list."),
          debug: bool = DebugOpt):
    """List the likely input and output nodes of a graph, most likely first."""
    from kfreeze import graphio
    from kfreeze import nodes as nodes_lib

    inputs, outputs = nodes_lib.discover(graphio.read_graph(graph))
    for title, cands in (("inputs", inputs), ("outputs", outputs)):
        typer.echo(f"{title}:")
        if not cands:
            typer.echo("  (none found)")
        for c in cands[:limit]:
            typer.echo(f"  {c.name:<40} {c.op:<18} {c.dtype:<10} {c.shape}")
