"""The pipeline stages and ``nodes`` as typer commands: a signature and one library call each.

``kfreeze <stage>`` and ``python stages/<stage>.py`` run these same functions; the work is in
``kfreeze.pipeline``. TensorFlow is imported inside each call, so ``--help`` stays instant.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

import typer

from kfreeze.cli_common import BuildOpt, DebugOpt, MetricsOpt, Name, ParamsOpt, cli_errors


@cli_errors
def resolve(name: str = Name, params_file: str = ParamsOpt, build: Path = BuildOpt, debug: bool = DebugOpt):
    """Validate the entry and write each stage's settings (defaults filled in) to BUILD/<name>/settings/."""
    from kfreeze import pipeline
    typer.echo(pipeline.resolve(name, params_file, build))


@cli_errors
def names(params_file: str = ParamsOpt, build: Path = BuildOpt, debug: bool = DebugOpt):
    """Check every model name in params.yaml (DVC stage 'names', before any stage built from a name)."""
    from kfreeze import pipeline
    typer.echo(pipeline.check_names(params_file, build))


def stage_command(stage: str, doc: str = "", by_hand: bool = False):
    """The command of one stage, the same signature for every stage.

    As DVC runs it (``stages/<stage>.py``): it reads BUILD/<name>/settings/<stage>.json and nothing
    else (``kfreeze.pipeline.from_settings``), so dvc.lock's hash of that file is what the artifact was
    built with. By hand (``kfreeze <stage> NAME``, ``by_hand``): the resolve step writes that file from
    params.yaml first (no TensorFlow, a few milliseconds), then the same stage runs.
    """
    def body(name, params_file, build, metrics):
        from kfreeze import pipeline
        if by_hand:
            pipeline.resolve(name, params_file, build)
        typer.echo(pipeline.from_settings(stage, name, build, metrics))

    if by_hand and stage == "verify":
        def command(name: str = Name, params_file: str = ParamsOpt, build: Path = BuildOpt,
                    metrics: Path = MetricsOpt, debug: bool = DebugOpt):
            body(name, params_file, build, metrics)
    elif by_hand:
        def command(name: str = Name, params_file: str = ParamsOpt, build: Path = BuildOpt, debug: bool = DebugOpt):
            body(name, params_file, build, Path("metrics"))
    elif stage == "verify":
        def command(name: str = Name, build: Path = BuildOpt, metrics: Path = MetricsOpt, debug: bool = DebugOpt):
            body(name, None, build, metrics)
    else:
        def command(name: str = Name, build: Path = BuildOpt, debug: bool = DebugOpt):
            body(name, None, build, Path("metrics"))
    command.__name__ = command.__qualname__ = stage
    command.__doc__ = doc + ("\n\nRuns 'kfreeze resolve NAME' first, then reads what it wrote to "
                             f"BUILD/<name>/settings/{stage}.json, as 'dvc repro' does." if by_hand else "")
    return cli_errors(command)


STAGE_DOCS = {
    "convert": "Load the model's source and write a canonical, byte-reproducible model to BUILD/<name>/model/.",
    "export": "Write a TF checkpoint (ckpt/), the inference graph (graph.pbtxt), op_names.txt and signature.json.",
    "freeze": "Freeze graph + checkpoint into BUILD/<name>/frozen.pb (all variables become constants).",
    "optimize": "Cut at the inputs, fold constants and batch norms, strip dropout and training-only nodes: "
                "BUILD/<name>/optimized.pb.",
    "verify": "Compare the source model with optimized.pb in TensorFlow and OpenCV; write METRICS/<name>.json."
              "\n\nA failing verify writes no metrics (DVC records no result for a failed stage): its report goes "
              "to BUILD/<name>/verify_failed.json and a stale METRICS/<name>.json is removed.",
}
convert, export, freeze, optimize, verify = (stage_command(s, STAGE_DOCS[s], by_hand=True)
                                             for s in ("convert", "export", "freeze", "optimize", "verify"))


def _target_commands() -> dict:
    from kfreeze.targets.registry import EXTRA, get
    return {target: stage_command(target, f"With '{target}' in the model's targets: BUILD/<name>/{target}/"
                                           f"{get(target).file} from optimized.pb, and its signature.json (else "
                                           "only a 'not requested' marker).", by_hand=True)
            for target in EXTRA}


TARGETS = _target_commands()  # one command per target: its stage script runs it (stages/target_<name>.py)
globals().update(TARGETS)  # commands.onnx, commands.tflite...: as the other stages' commands
onnx = TARGETS["onnx"]
tflite = TARGETS["tflite"]


@cli_errors
def nodes(graph: Path = typer.Argument(..., help="A GraphDef (binary or text), a .meta graph, or a SavedModel folder "
                                               "(its signatures)."),
          limit: int = typer.Option(10, help="How many candidates of each kind to list."),
          debug: bool = DebugOpt):
    """List the likely input and output nodes of a graph, most likely first.

    On a frozen graph (no variables) each output also shows the layer name OpenCV dnn gives it:
    the name to pass to net.forward.
    """
    from kfreeze import sources

    if sources.kind(graph) == "savedmodel":
        from kfreeze import saved_model
        lines = saved_model.listing(graph)
    else:
        from kfreeze import graphio
        from kfreeze import nodes as nodes_lib
        lines = nodes_lib.listing(graphio.read_graph(graph), limit)
    for line in lines:
        typer.echo(line)


def _with_param_flags(fn):
    """Give ``fn`` one option per params key (``kfreeze.oneshot.flag_keys``), passed on as ``settings``.

    Generated from the params table, so a new key gets its flag without an edit here;
    a flag left out takes the table's default.
    """
    import inspect

    from kfreeze import oneshot

    flags = oneshot.flag_keys()
    sig = inspect.signature(fn)
    extra = []
    for flag, (key, spec) in flags.items():
        default = "null" if spec.default is None else spec.default
        if oneshot.is_switch(spec):
            option = typer.Option(None, f"--{flag}/--no-{flag}", help=f"params key {key} (default {default}).")
            extra.append(inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=option,
                                           annotation=Optional[bool]))
        else:
            option = typer.Option(None, f"--{flag}", metavar="YAML",
                                  help=f"params key {key} (default {default}).")
            extra.append(inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=option,
                                           annotation=Optional[str]))

    @functools.wraps(fn)
    def wrapper(**kwargs):
        settings = {}
        for flag, (key, spec) in flags.items():
            value = kwargs.pop(key, None)
            if value is not None:
                settings[key] = value if oneshot.is_switch(spec) else oneshot.parse_flag(key, spec, value)
        return fn(settings=settings, **kwargs)

    params = [p for p in sig.parameters.values() if p.name != "settings"]
    wrapper.__signature__ = sig.replace(parameters=params + extra)
    wrapper.__annotations__ = {p.name: p.annotation for p in params + extra}
    del wrapper.__wrapped__  # typer must see the generated signature
    return wrapper


@cli_errors
@_with_param_flags
def run(source: Optional[Path] = typer.Argument(None, help="A Keras file (.keras or .h5, under any name; weights .h5 "
                                                 "with --arch), a frozen GraphDef or a SavedModel folder."),
        out: Optional[Path] = typer.Option(None, "--out", help="Where the results go; default ./<stem>_frozen/."),
        arch: Optional[Path] = typer.Option(None, "--arch", help="Keras JSON architecture beside a weights .h5."),
        graph: Optional[Path] = typer.Option(None, "--graph", help="A TF GraphDef (binary or text) with "
                                     "--checkpoint, or frozen without one; or a SavedModel folder."),
        checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="The TF1 checkpoint prefix or folder "
                                          "(none for a frozen graph or a SavedModel)."),
        debug: bool = DebugOpt, settings: dict = None):
    """Freeze, optimize and verify one model file, without params.yaml or DVC.

    Every params.yaml key is a flag (--input-shape '[1, 224, 224, 3]', --opencv, --samples 32 ...).
    Prints the tensor names for TensorFlow and the layer names for OpenCV.
    """
    from kfreeze import oneshot
    result = oneshot.run(source, out, settings or {}, arch=arch, graph=graph, checkpoint=checkpoint, echo=typer.echo)
    for line in oneshot.report(result):
        typer.echo(line)


@cli_errors
@_with_param_flags
def add(name: str = typer.Argument(..., help="The model's name in params.yaml (a-z, 0-9, '_', '-')."),
        source: Optional[Path] = typer.Argument(None, help="A Keras file (.keras or .h5, under any name; weights .h5 "
                                                    "with --arch), a frozen GraphDef or a SavedModel folder."),
        arch: Optional[Path] = typer.Option(None, "--arch", help="Keras JSON architecture beside a weights .h5."),
        graph: Optional[Path] = typer.Option(None, "--graph", help="A TF GraphDef (binary or text) with "
                                     "--checkpoint, or frozen without one; or a SavedModel folder."),
        checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="The TF1 checkpoint prefix or folder "
                                          "(none for a frozen graph or a SavedModel)."),
        dvc_add: Optional[bool] = typer.Option(None, "--dvc-add/--no-dvc-add",
                                               help="Track a source over 10 MB with 'dvc add' (default: ask, "
                                                    "when run in a terminal)."),
        params_file: str = ParamsOpt, debug: bool = DebugOpt, settings: dict = None):
    """Register a model: copy its file(s) into models/NAME/ and add its entry to params.yaml.

    Only what differs from the defaults is written (the flags are the params keys:
    --input-shape '[1, 224, 224, 3]', --opencv ...); the file's comments stay.
    """
    import sys

    from kfreeze import register
    register.add(name, source, settings or {}, arch=arch, graph=graph, checkpoint=checkpoint,
                 params_file=params_file, dvc_add=dvc_add, interactive=sys.stdin.isatty(), echo=typer.echo)
