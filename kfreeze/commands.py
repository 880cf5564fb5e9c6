"""The pipeline stages as commands: parse arguments, call the library, write outputs.

``kfreeze <stage>`` and ``python stages/<stage>.py`` run these same functions.
TensorFlow is imported inside each command, so ``--help`` stays instant.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
import traceback
from pathlib import Path
from typing import Optional

import typer

from kfreeze import params
from kfreeze.errors import KfreezeError

Name = typer.Argument(..., help="Model name: an entry under 'models:' in params.yaml.")
ParamsOpt = typer.Option(params.PARAMS_FILE, "--params", help="The params file.")
BuildOpt = typer.Option(Path("build"), "--build", help="Where the artifacts go: BUILD/<name>/.")
MetricsOpt = typer.Option(Path("metrics"), "--metrics", help="Where verify writes <name>.json.")
DebugOpt = typer.Option(False, "--debug", help="Show the Python traceback on errors.")


def cli_errors(fn=None, *, exit_code: int = 1):
    """One line on stderr and a non-zero exit for any failure; the traceback only with --debug.

    ``kfreeze diff`` exits 2 on errors, because 1 means "the graphs differ", like diff(1).
    """
    if fn is None:
        return functools.partial(cli_errors, exit_code=exit_code)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        before = os.environ.get("KFREEZE_DEBUG")
        debug = kwargs.get("debug") or before
        if debug:  # for child processes and tfenv; restored after, so one in-process call does not leak it
            os.environ["KFREEZE_DEBUG"] = "1"
        try:
            return fn(*args, **kwargs)
        except KfreezeError as e:
            if debug:
                traceback.print_exc()
            print(f"error: {e.line()}", file=sys.stderr)
            raise typer.Exit(exit_code) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except OSError as e:
            if debug:
                traceback.print_exc()
            if e.errno not in _OS_FIXES:
                raise _internal(fn, e, exit_code) from None
            print(f"error: {os_error(e).line()}", file=sys.stderr)
            raise typer.Exit(exit_code) from None
        except Exception as e:  # a bug or an input kfreeze does not recognise yet
            if debug:
                traceback.print_exc()
            raise _internal(fn, e, exit_code) from None
        finally:
            if before is None:
                os.environ.pop("KFREEZE_DEBUG", None)
    return wrapper


_OS_FIXES = {
    errno.EACCES: "check the permissions of the file and its folder",
    errno.EPERM: "check the permissions of the file and its folder",
    errno.ENOSPC: "free some disk space and re-run",
    errno.EDQUOT: "free some disk space (you are over quota) and re-run",
    errno.EROFS: "the file system is read-only; use a writable --build/--metrics folder",
}


def os_error(e: OSError) -> KfreezeError:
    """EACCES, ENOSPC, EROFS...: one line naming the path, not an internal error."""
    return KfreezeError(e.filename or "kfreeze", f"cannot write or read here ({e.strerror})",
                        _OS_FIXES.get(e.errno, "check the path"))


def _internal(fn, e: Exception, exit_code: int):
    from kfreeze.errors import printable

    reason = printable(" ".join(str(e).split())[:300])
    print(f"error: internal error in {fn.__name__}: {type(e).__name__}: {reason} "
          "(re-run with --debug for the traceback, and report it)", file=sys.stderr)
    return typer.Exit(max(exit_code, 2))


@contextlib.contextmanager
def reading(path):
    """While a user's file is read, a library's own exception means the file is not what it should be."""
    try:
        yield
    except (KfreezeError, typer.Exit, KeyboardInterrupt):
        raise
    except Exception as e:  # h5py, protobuf, zipfile, Keras: each has its own types for a damaged file
        reason = " ".join(str(e).split())[:200]
        raise KfreezeError(path, f"cannot be read ({type(e).__name__}: {reason})",
                           "the file is damaged or not the kind params.yaml says; re-save it") from None


def _dirs(build: Path, name: str) -> Path:
    return Path(build) / name


def _where(params_file: str, spec: params.ModelSpec, key: str) -> str:
    return f"{params_file}: {spec.section}.{spec.name}.{key}"


def _legacy():
    from kfreeze import legacy  # imports tf_keras: only for .h5 and JSON sources
    return legacy


def _keras_spec(name: str, params_file: str) -> params.ModelSpec:
    spec = params.model_spec(name, params_file)
    if not spec.is_keras:
        raise KfreezeError(f"{params_file}: graphs.{name}", "a graph + checkpoint model has no convert or export stage",
                           f"run 'kfreeze freeze {name}'")
    return spec


@cli_errors
def convert(name: str = Name, params_file: str = ParamsOpt, build: Path = BuildOpt, debug: bool = DebugOpt):
    """Load the model's source and write a canonical, byte-reproducible model to BUILD/<name>/model/."""
    from kfreeze import atomic, keras_io

    from kfreeze import h5check
    from kfreeze.graphio import check_file

    spec = _keras_spec(name, params_file)
    if Path(spec.source).suffix.lower() in (".h5", ".hdf5") and check_file(spec.source, "model file"):
        h5check.check(spec.source)
    with reading(spec.source):
        if spec.maybe_legacy and (legacy := _legacy()).is_legacy(spec.source, spec.arch):
            model = legacy.load_source(Path(spec.source), spec.arch and Path(spec.arch), spec.layout,
                                       spec.theano_kernels)
        else:
            model = keras_io.load_model(spec.source, **keras_io.load_options(spec, params_file))
    from kfreeze import export as export_lib
    export_lib.check_convertible(model, spec.source)  # the trace export makes: what cannot work fails here
    with atomic.directory(_dirs(build, name) / "model") as tmp:
        keras_io.save_canonical(model, tmp / "model.keras")
    typer.echo(f"{name}: converted {spec.source} ({model.count_params()} parameters, "
               f"inputs {[t.name for t in model.inputs]})")


@cli_errors
def export(name: str = Name, params_file: str = ParamsOpt, build: Path = BuildOpt, debug: bool = DebugOpt):
    """Write a TF checkpoint (ckpt/), the inference graph (graph.pbtxt), op_names.txt and signature.json."""
    from kfreeze import export as export_lib
    from kfreeze import keras_io

    spec = _keras_spec(name, params_file)
    out = _dirs(build, name)
    model = keras_io.load_model(out / "model" / "model.keras", **keras_io.load_options(spec, params_file))
    exported = export_lib.export_model(model)
    export_lib.write_export(exported, out)
    sig = exported.signature
    typer.echo(f"{name}: exported {sig['variables']} variables; inputs "
               f"{[i['name'] for i in sig['inputs']]}, outputs {[o['name'] for o in sig['outputs']]}")


def resolve_names(spec: params.ModelSpec, out: Path, graph, params_file: str) -> tuple[list[str], list[str]]:
    """The configured node names; when empty, the Keras names or the top discovered candidates."""
    from kfreeze import graphio
    from kfreeze import nodes as nodes_lib

    if spec.is_keras:
        signature = graphio.read_json(out / "signature.json")
        return (spec.inputs or [i["name"] for i in signature["inputs"]],
                spec.outputs or [o["name"] for o in signature["outputs"]])
    inputs, outputs = list(spec.inputs), list(spec.outputs)
    if not inputs or not outputs:
        found_in, found_out = nodes_lib.discover(graph)
        for key, chosen, found in (("inputs", inputs, found_in), ("outputs", outputs, found_out)):
            if not chosen:
                if not found:
                    raise KfreezeError(_where(params_file, spec, key), f"no likely {key} found in {spec.graph}",
                                       f"set {key} explicitly ('kfreeze nodes {spec.graph}' lists the nodes)")
                chosen.append(found[0].name)
                typer.echo(f"{spec.name}: {key} not set; using the top candidate '{found[0].name}' "
                           f"({found[0].op}); set {key} in params.yaml to choose another", err=True)
    return inputs, outputs


def resolve_shapes(spec: params.ModelSpec, inputs: list[str], params_file: str) -> list[Optional[tuple]]:
    """input_shape: null, one shape for a single input, a list of shapes, or {input: shape}."""
    raw = spec.input_shape
    where = _where(params_file, spec, "input_shape")
    if raw is None:
        return [None] * len(inputs)
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - set(inputs))
        if unknown:
            raise KfreezeError(where, f"names {unknown} are not inputs", f"inputs are {inputs}")
        shapes = [raw.get(i) for i in inputs]
    elif raw and all(isinstance(d, (int, type(None))) for d in raw):
        if len(inputs) != 1:
            raise KfreezeError(where, f"one shape given for {len(inputs)} inputs",
                               "give a list of shapes in input order, or a mapping {input: shape}")
        shapes = [raw]
    elif all(isinstance(s, list) for s in raw) and len(raw) == len(inputs):
        shapes = raw
    else:
        raise KfreezeError(where, f"cannot read {raw!r} as shapes for inputs {inputs}",
                           "e.g. [1, 20, 20, 1], or [[1, 16, 16, 3], [1, 8]] for two inputs")
    for shape in shapes:
        if shape is not None and not all(isinstance(d, int) and (d > 0 or d == -1) or d is None for d in shape):
            raise KfreezeError(where, f"{shape!r} is not a shape", "use positive integers, -1 or null for dynamic")
    return [tuple(s) if s is not None else None for s in shapes]


def resolve_dtypes(spec: params.ModelSpec, inputs: list[str], params_file: str) -> list[Optional[str]]:
    """input_dtype: null (the tensor's own), one dtype for every input, or one per input."""
    from kfreeze.tfenv import tf

    raw = spec.input_dtype
    where = _where(params_file, spec, "input_dtype")
    dtypes = [raw] * len(inputs) if raw is None or isinstance(raw, str) else list(raw)
    if len(dtypes) != len(inputs):
        raise KfreezeError(where, f"{len(dtypes)} dtypes for {len(inputs)} inputs", "give one dtype per input")
    for dtype in dtypes:
        if dtype is None:
            continue
        try:
            tf.as_dtype(dtype)
        except TypeError:
            raise KfreezeError(where, f"'{dtype}' is not a TensorFlow dtype",
                               "use e.g. float32, float16, uint8 or int32") from None
    return dtypes


def _graph_and_checkpoint(spec: params.ModelSpec, out: Path):
    """The unfrozen graph and checkpoint: the export's, or the user's own for 'graphs:' entries."""
    from kfreeze import graphio

    if spec.is_keras:
        return graphio.read_graph(out / "graph.pbtxt"), out / "ckpt", out / "graph.pbtxt"
    return graphio.read_graph(spec.graph), Path(spec.checkpoint), Path(spec.graph)


@cli_errors
def freeze(name: str = Name, params_file: str = ParamsOpt, build: Path = BuildOpt, debug: bool = DebugOpt):
    """Freeze graph + checkpoint into BUILD/<name>/frozen.pb (all variables become constants)."""
    from kfreeze import freeze as freeze_lib
    from kfreeze import graphio, nodes

    spec = params.model_spec(name, params_file)
    out = _dirs(build, name)
    graph, checkpoint, graph_path = _graph_and_checkpoint(spec, out)
    inputs, outputs = resolve_names(spec, out, graph, params_file)
    nodes.require(graph, inputs, "input", _where(params_file, spec, "inputs"))
    nodes.require(graph, outputs, "output", _where(params_file, spec, "outputs"))
    nodes.require_upstream(graph, inputs, outputs, _where(params_file, spec, "inputs"))
    from kfreeze import policy  # before freeze_graph runs the graph's variables (and whatever they depend on)
    policy.check(graph, outputs, inputs, str(graph_path), f"{spec.section}.{name}", spec.trust_code)
    frozen = freeze_lib.freeze(graph, checkpoint, outputs, str(graph_path))
    graphio.write_graph(frozen.graph, out / "frozen.pb")
    graphio.write_json(out / "names.json", {"inputs": inputs, "outputs": outputs})
    typer.echo(f"{name}: Converted {frozen.converted} variables to const ops; "
               f"{len(frozen.graph.node)} ops for outputs {outputs}")


@cli_errors
def optimize(name: str = Name, params_file: str = ParamsOpt, build: Path = BuildOpt, debug: bool = DebugOpt):
    """Cut at the inputs, fold constants and batch norms, strip dropout and training-only nodes:
    BUILD/<name>/optimized.pb."""
    from kfreeze import graphio, nodes
    from kfreeze import optimize as opt

    spec = params.model_spec(name, params_file)
    out = _dirs(build, name)
    names = graphio.read_json(out / "names.json")
    inputs, outputs = names["inputs"], names["outputs"]
    shapes = resolve_shapes(spec, inputs, params_file)
    dtypes = resolve_dtypes(spec, inputs, params_file) if not spec.is_keras else [None] * len(inputs)
    frozen = graphio.read_graph(out / "frozen.pb")
    nodes.require(frozen, inputs, "input", _where(params_file, spec, "inputs"))
    ctx = opt.Context(tuple(opt.InputSpec(i, d, s) for i, d, s in zip(inputs, dtypes, shapes)), tuple(outputs),
                      opencv=spec.opencv, precision=spec.precision)
    from kfreeze import resources
    try:
        resources.check_activations(opt.passes.cut_inputs(frozen, ctx), "optimize",
                                    _where(params_file, spec, "input_shape"))
        graph, stats = resources.isolated(opt.optimize, frozen, ctx, what="optimize", where="Grappler")
    except KfreezeError as e:
        raise KfreezeError(f"{out / 'frozen.pb'}: {e.where}", e.problem, e.fix) from None
    graphio.write_graph(graph, out / "optimized.pb")
    graphio.write_json(out / "passes.json", [s.as_dict() for s in stats])
    typer.echo(f"{name}: {len(frozen.node)} -> {len(graph.node)} ops "
               f"({', '.join(f'{s.name} -{s.ops_before - s.ops_after}' for s in stats if s.ops_before != s.ops_after)})")


@cli_errors
def verify(name: str = Name, params_file: str = ParamsOpt, build: Path = BuildOpt,
           metrics: Path = MetricsOpt, debug: bool = DebugOpt):
    """Compare the source model with optimized.pb in TensorFlow and OpenCV; write METRICS/<name>.json.

    A failing verify writes no metrics (DVC records no result for a failed stage):
    its report goes to BUILD/<name>/verify_failed.json and a stale METRICS/<name>.json is removed.
    """
    from kfreeze import atomic, graphio
    from kfreeze import verify as verify_lib

    atomic.clean_stale(Path(metrics) / f"{name}.json")  # a killed run's temp file must not reach dvc.lock
    spec = params.model_spec(name, params_file)
    vspec = params.verify_spec(params_file)
    out = _dirs(build, name)
    verdict = verify_lib.verify_model(spec, vspec, out)
    result = verdict.metrics
    metrics_file, report = Path(metrics) / f"{name}.json", out / "verify_failed.json"
    for warning in verdict.warnings:
        typer.echo(f"{name}: warning: {warning}", err=True)
    if not verdict.passed:
        metrics_file.unlink(missing_ok=True)
        graphio.write_json(report, {**result, "failures": verdict.failures, "warnings": verdict.warnings})
        raise KfreezeError(out / "optimized.pb", "; ".join(verdict.failures),
                           f"the report is in {report} (no {metrics_file} is written for a failed verify)")
    report.unlink(missing_ok=True)
    graphio.write_json(metrics_file, result)
    ocv = (f"OpenCV max_abs_diff {result['opencv_max_abs_diff']:.3g}" if result["opencv_error"] is None
           else f"OpenCV failed: {result['opencv_error']}")
    typer.echo(f"{name}: max_abs_diff {result['max_abs_diff']:.3g}, max_rel_diff {result['max_rel_diff']:.3g} "
               f"(atol {result['atol_used']:g}, rtol {result['rtol_used']:g}), top1_agree {result['top1_agree']}, "
               f"ops {result['ops_frozen']} -> {result['ops_optimized']}; {ocv}")


@cli_errors
def nodes(graph: Path = typer.Argument(..., help="A .pb, .pbtxt or .meta graph."),
          limit: int = typer.Option(10, help="How many candidates of each kind to list."),
          debug: bool = DebugOpt):
    """List the likely input and output nodes of a graph, most likely first."""
    from kfreeze import graphio
    from kfreeze import nodes as nodes_lib

    g = graphio.read_graph(graph)
    inputs, outputs = nodes_lib.discover(g)
    for title, cands in (("inputs", inputs), ("outputs", outputs)):
        typer.echo(f"{title}:")
        if not cands:
            typer.echo("  (none found)")
        for c in cands[:limit]:
            typer.echo(f"  {c.name:<40} {c.op:<18} {c.dtype:<10} {c.shape}")
