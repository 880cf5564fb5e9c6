"""The pipeline's steps as library functions of resolved settings and a model's build folder.

Each step takes the entry as data (``spec``: a ``params.ModelSpec``; ``vspec``: the verify keys) and
``out``, the folder it reads and writes (BUILD/<name>/ in a project, the staged --out folder for
``kfreeze run``), and returns the one line the command prints. The DVC stages read their settings
file (``from_settings``, through ``kfreeze.commands``); ``kfreeze run`` builds the spec from its flags
(``kfreeze.oneshot``): both call these same functions and write the same files. Messages name keys
through the spec's origin (a params key or a flag). TensorFlow is imported inside, so ``--help``
stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from kfreeze import layout
from kfreeze import params, progress, settings
from kfreeze.errors import KfreezeError, reading, warn as _warn


def _keras_only(spec) -> None:
    if not spec.is_keras:
        raise KfreezeError(spec.at.entry, "a graph + checkpoint model has no convert or export stage",
                           f"run 'kfreeze freeze {spec.name}'")


def _import_tf(keras: bool = False) -> None:
    """TensorFlow's import is most of a small model's stage: a step of its own."""
    with progress.step("importing TensorFlow" + (" and Keras" if keras else "")):
        from kfreeze import tfenv  # noqa: F401
        if keras:
            from kfreeze import keras_io  # noqa: F401


def _legacy():
    from kfreeze import legacy  # imports tf_keras: only for .h5 and JSON sources
    return legacy


def resolve(name: str | None, params_file, build: Path) -> str:
    """Validate the entry (every entry when ``name`` is None: the DVC stage) and write each stage's
    settings to BUILD/settings/<name>/<stage>.json (no TensorFlow)."""
    progress.begin("resolve", name or "all")
    with progress.step(f"checking {params_file} and writing the settings"):
        if name is not None:
            return f"{name}: settings {_written(settings.write_settings(name, params_file, build))}"
        written = settings.write_all(params_file, build)
    changed = {n: w for n, w in written.items() if w}
    return (f"{len(written)} models: settings "
            + ("; ".join(f"{n} {_written(w)}" for n, w in changed.items()) if changed else "unchanged"))


def _written(stages: list[str]) -> str:
    return "for " + ", ".join(stages) if stages else "unchanged"


def convert(spec, out: Path, warn: Callable[[str], None] = _warn) -> str:
    """Load the model's source and write a canonical, byte-reproducible model to OUT/model/."""
    name = spec.name
    progress.begin("convert", name)
    _keras_only(spec)
    _import_tf(keras=True)
    from kfreeze import atomic, h5check, keras_io
    from kfreeze import export as export_lib
    from kfreeze.graphio import check_file

    if check_file(spec.source, "model file") and keras_io.file_kind(Path(spec.source)) == "hdf5":
        with reading(spec.source):
            h5check.check(spec.source)
    with progress.step(f"loading {spec.source}"), reading(spec.source):
        if spec.maybe_legacy and (legacy := _legacy()).is_legacy(spec.source, spec.arch):
            model = legacy.load_source(Path(spec.source), spec.arch and Path(spec.arch), spec.layout,
                                       spec.theano_kernels, warn=warn,
                                       theano_fix=spec.setting("theano_kernels", "false"))
        else:
            model = keras_io.load_model(spec.source, **keras_io.load_options(spec))
    from kfreeze.resources import release_memory
    release_memory()  # what loading the source left behind, before tracing and saving copy the weights
    if spec.opencv:  # OpenCV cannot read a while loop: recurrent layers one cell per step (kfreeze.unroll)
        from kfreeze import unroll
        with progress.step("unrolling recurrent layers over a fixed time axis (opencv: true)"):
            options = keras_io.load_options(spec)
            model = unroll.unroll(model, spec.input_shape, options["custom_objects"], not spec.trust_code)
    with progress.step("tracing the model (what export will do)"):
        export_lib.check_convertible(model, spec.source)  # what cannot work fails here
    with progress.step(f"writing {Path(out) / 'model' / 'model.keras'}"), \
            atomic.directory(Path(out) / "model") as tmp:
        keras_io.save_canonical(model, tmp / "model.keras")
    return (f"{name}: converted {spec.source} ({model.count_params()} parameters, "
            f"inputs {[t.name for t in model.inputs]})")


def export(spec, out: Path) -> str:
    """Write a TF checkpoint (ckpt/), the inference graph (graph.pbtxt), op_names.txt and signature.json."""
    name = spec.name
    progress.begin("export", name)
    _keras_only(spec)
    _import_tf(keras=True)
    from kfreeze import export as export_lib
    from kfreeze import keras_io

    out = Path(out)
    with progress.step(f"loading {out / 'model' / 'model.keras'}"):
        model = keras_io.load_model(out / "model" / "model.keras", **keras_io.load_options(spec))
    from kfreeze.resources import release_memory
    release_memory()  # what loading the archive left behind, before tracing copies the weights
    with progress.step("tracing the model and turning its weights into variables"):
        exported = export_lib.export_model(model)
    with progress.step(f"writing the checkpoint and graph.pbtxt to {out}"):
        export_lib.write_export(exported, out)
    sig = exported.signature
    return (f"{name}: exported {sig['variables']} variables; inputs "
            f"{[i['name'] for i in sig['inputs']]}, outputs {[o['name'] for o in sig['outputs']]}")


def freeze(spec, out: Path, warn: Callable[[str], None] = _warn) -> str:
    """Freeze graph + checkpoint into OUT/frozen.pb (all variables become constants)."""
    name = spec.name
    progress.begin("freeze", name)
    _import_tf()
    from kfreeze import freeze as freeze_lib
    from kfreeze import graphio, nodes, policy
    from kfreeze.resolve import graph_and_checkpoint, resolve_names

    out = Path(out)
    if not spec.is_keras:
        kind = _graph_kind(spec)
        if kind == "savedmodel":
            return _freeze_saved_model(name, spec, out)
    with progress.step("reading the graph"):
        graph, checkpoint, graph_path = graph_and_checkpoint(spec, out)
    inputs, outputs = resolve_names(spec, out, graph, warn)
    nodes.require(graph, inputs, "input", spec.where("inputs"))
    nodes.require(graph, outputs, "output", spec.where("outputs"))
    nodes.require_upstream(graph, inputs, outputs, spec.where("inputs"))
    # before freeze_graph runs the graph's variables (and whatever they depend on)
    policy.check(graph, outputs, inputs, str(graph_path), spec.at, spec.trust_code)
    given_frozen = not spec.is_keras and checkpoint is None
    with progress.step("keeping what the outputs need of the frozen graph" if given_frozen
                       else "restoring the variables the outputs need into constants"):
        frozen = freeze_lib.freeze(graph, checkpoint, outputs, str(graph_path))
    with progress.step(f"writing {out / layout.FROZEN}"):
        graphio.write_graph(frozen.graph, out / layout.FROZEN)
    graphio.write_json(out / layout.NAMES, {"inputs": inputs, "outputs": outputs})
    if given_frozen:
        return (f"{name}: {graph_path} is frozen already (no checkpoint); "
                f"{len(frozen.graph.node)} ops for outputs {outputs}")
    return (f"{name}: Converted {frozen.converted} variables to const ops; "
            f"{len(frozen.graph.node)} ops for outputs {outputs}")


def _graph_kind(spec) -> str:
    """A 'graphs:' entry's graph: a GraphDef file (with a checkpoint or frozen), or a SavedModel folder."""
    from kfreeze import sources

    kind = sources.kind(spec.graph)
    if Path(spec.graph).is_dir() and kind != "savedmodel":
        raise KfreezeError(spec.where("graph"), f"folder {spec.graph} holds no saved_model.pb",
                           "give a GraphDef file, or a SavedModel folder (tf.saved_model.save, Keras model.export)")
    if kind in sources.KERAS_KINDS:
        raise KfreezeError(spec.where("graph"), f"{spec.graph} is {sources.describe(kind)}, a Keras "
                           "model file, not a graph", "register it under 'models:' as source (kfreeze add NAME FILE)")
    if kind == "savedmodel":
        if spec.checkpoint is not None:
            raise KfreezeError(spec.where("checkpoint"), "a SavedModel holds its own variables",
                               "leave checkpoint out for a SavedModel folder")
    elif spec.signature is not None:
        raise KfreezeError(spec.where("signature"), "applies only to a SavedModel folder",
                           "leave it out for a GraphDef file")
    return kind or "graph"


def _freeze_saved_model(name, spec, out: Path) -> str:
    """A SavedModel folder: the signature's function frozen (kfreeze.saved_model), after the op policy."""
    from kfreeze import graphio, nodes
    from kfreeze import saved_model as sm

    folder = Path(spec.graph)
    with progress.step(f"reading {folder / 'saved_model.pb'} and checking its ops"):
        meta = sm.read_meta_graph(folder)
        key = sm.signature_key(meta, spec.signature, folder, spec.where("signature"))
        sm.check(folder, key, spec.where("graph"), spec.at, spec.trust_code, cut=spec.inputs)
    with progress.step(f"loading signature '{key}' and freezing its variables (convert_variables_to_constants_v2)"):
        frozen = sm.freeze(folder, key)
    inputs, outputs = list(spec.inputs) or frozen.inputs, list(spec.outputs) or frozen.outputs
    for which, names in (("inputs", inputs), ("outputs", outputs)):
        for given in names:  # a TF1 graph's node name, which the frozen graph gives to its signature key
            node, sep, port = given.partition(":")
            if node in frozen.renamed and node not in {n.name for n in frozen.graph.node}:
                new = frozen.renamed[node] + sep + port
                raise KfreezeError(spec.where(which), f"node '{node}' is named '{new}' in the frozen graph: the "
                                   "signature's inputs and outputs take their keys' names",
                                   spec.setting(which, f"[{', '.join(new if n == given else n for n in names)}]"))
    nodes.require(frozen.graph, inputs, "input", spec.where("inputs"))
    nodes.require(frozen.graph, outputs, "output", spec.where("outputs"))
    nodes.require_upstream(frozen.graph, inputs, outputs, spec.where("inputs"))
    with progress.step(f"writing {out / layout.FROZEN}"):
        graphio.write_graph(frozen.graph, out / layout.FROZEN)
    graphio.write_json(out / layout.NAMES, {"inputs": inputs, "outputs": outputs})
    return (f"{name}: SavedModel signature '{key}': converted {frozen.converted} variables to const ops; "
            f"{len(frozen.graph.node)} ops; inputs {inputs}, outputs {outputs}")


def optimize(spec, out: Path) -> str:
    """Cut at the inputs, fold constants and batch norms, strip dropout and training-only nodes:
    OUT/optimized.pb and passes.json."""
    name = spec.name
    progress.begin("optimize", name)
    _import_tf()
    from kfreeze import graphio
    from kfreeze import optimize as opt
    from kfreeze.resolve import resolve_dtypes, resolve_shapes

    out = Path(out)
    names = graphio.read_json(out / layout.NAMES)
    inputs, outputs = names["inputs"], names["outputs"]
    shapes = resolve_shapes(spec, inputs)
    dtypes = resolve_dtypes(spec, inputs)
    ctx = opt.Context(tuple(opt.InputSpec(i, d, s) for i, d, s in zip(inputs, dtypes, shapes)), tuple(outputs),
                      opencv=spec.opencv, precision=spec.precision)
    from kfreeze import child
    with progress.step(f"running {len(opt.passes_for(ctx))} passes (Grappler among them) in a child process"):
        try:
            ops_frozen, stats = child.call(
                optimize_file, out / layout.FROZEN, ctx, out / layout.OPTIMIZED, spec.where("inputs"),
                spec.where("input_shape"), what="optimize", where="Grappler",
                memory=child.memory_bound((out / layout.FROZEN).stat().st_size))
        except KfreezeError as e:
            if e.where in (spec.where("inputs"), spec.where("input_shape")):  # names the key already
                raise
            raise KfreezeError(f"{out / layout.FROZEN}: {e.where}", e.problem, e.fix) from None
    graph = graphio.read_graph(out / layout.OPTIMIZED)
    graphio.write_json(out / layout.PASSES, stats)
    from kfreeze import opencv_names
    changed = ", ".join(f"{s['pass']} {s['ops_after'] - s['ops_before']:+d}" for s in stats
                        if s["ops_before"] != s["ops_after"])
    return (f"{name}: {ops_frozen} -> {len(graph.node)} ops ({changed})"
            + opencv_names_note({o: opencv_names.layer_name(graph, o) for o in outputs}))


def optimize_file(frozen_path: Path, ctx, out_path: Path, inputs_where: str, shape_where: str) -> tuple[int, list[dict]]:
    """frozen.pb -> optimized.pb, in the optimize stage's child process (kfreeze.child): the parent
    never holds the frozen graph, and Grappler's threads live and die in a fresh interpreter.
    Returns the frozen graph's op count and the passes' stats."""
    from kfreeze import bounds, graphio, nodes, resources
    from kfreeze import optimize as opt

    frozen = graphio.read_graph(frozen_path)
    nodes.require(frozen, [i.name for i in ctx.inputs], "input", inputs_where)
    # computed sizes at the cut's shapes, before the cut imports the graph (TF's import evaluates shapes)
    bounds.check(frozen, shape_where, shapes={i.name.split(":")[0]: i.shape for i in ctx.inputs if i.shape is not None})
    try:
        cut = opt.passes.cut_inputs(frozen, ctx)
    except KfreezeError as e:
        if "does not fit the graph's shape" not in e.problem:
            raise
        raise KfreezeError(shape_where, f"{e.where}: {e.problem}", e.fix) from None  # the flag or key to edit
    resources.check_activations(cut, "optimize", shape_where)
    ops_frozen = len(frozen.node)
    graph, stats = opt.optimize(frozen, ctx)
    del frozen
    graphio.write_graph(graph, out_path)
    return ops_frozen, [s.as_dict() for s in stats]


def opencv_names_note(names: dict | None, always: bool = False) -> str:
    """Which name ``net.forward`` takes for which output: '' when each takes its own (unless ``always``)."""
    other = {o: n for o, n in (names or {}).items() if n != o.split(":")[0]}
    if not other:
        return " (net.forward takes the output names)" if always and names else ""
    return "; OpenCV net.forward names: " + ", ".join(
        f"{o} -> {n!r}" if n else f"{o} -> none (OpenCV has no layer for it)" for o, n in other.items())


def verify(spec, vspec, out: Path, metrics_file: Path, warn: Callable[[str], None] = _warn) -> str:
    """Compare the source model with optimized.pb in TensorFlow and OpenCV; write ``metrics_file``.

    A failing verify writes no metrics (DVC records no result for a failed stage):
    its report goes to OUT/verify_failed.json and a stale ``metrics_file`` is removed.
    """
    from kfreeze import atomic

    name = spec.name
    progress.begin("verify", name)
    metrics_file = Path(metrics_file)
    atomic.clean_stale(metrics_file)  # a killed run's temp file must not reach dvc.lock
    _import_tf()
    from kfreeze import graphio
    from kfreeze import verify as verify_lib
    from kfreeze.targets.usage import verify_note

    out = Path(out)
    verdict = verify_lib.verify_model(spec, vspec, out)
    result, report = verdict.metrics, out / layout.FAILED
    for warning in verdict.warnings:
        warn(f"{name}: warning: {warning}")
    if not verdict.passed:
        metrics_file.unlink(missing_ok=True)
        graphio.write_json(report, {**result, "failures": verdict.failures, "warnings": verdict.warnings})
        raise KfreezeError(verdict.where or out / layout.OPTIMIZED, "; ".join(verdict.failures),
                           f"the report is in {report} (no {metrics_file} is written for a failed verify)")
    report.unlink(missing_ok=True)
    graphio.write_json(metrics_file, result)
    ocv = (f"OpenCV max_abs_diff {result['opencv_max_abs_diff']:.3g}{opencv_names_note(result['opencv_names'], True)}"
           if result["opencv_error"] is None else verify_lib.opencv_failure(result))
    return (f"{name}: max_abs_diff {result['max_abs_diff']:.3g}, max_rel_diff {result['max_rel_diff']:.3g} "
            f"(atol {result['atol_used']:g}, rtol {result['rtol_used']:g}), top1_agree {result['top1_agree']}, "
            f"ops {result['ops_frozen']} -> {result['ops_optimized']}; {ocv}{verify_note(result)}")


def _calibration(target: str, spec, vspec):
    """(verify.data's file, verify.samples) when ``target`` is quantized to int8 (model.tflite), else None."""
    from kfreeze import targets
    if "precision" not in targets.get(target).reads or spec.precision != "int8":
        return None
    from kfreeze.verify.inputs import data_file, data_path
    params.check_int8(spec, vspec)  # the resolve stage refused it already; kfreeze run has none
    source = data_path(spec, vspec)
    if source is None:
        raise KfreezeError(spec.at.where("verify.data"), f"precision int8 calibrates on {data_file(spec, vspec)}, "
                           "which does not exist", "put the .npz there, or use precision: float32")
    return source, vspec.samples


def target(target: str, spec, vspec, out: Path) -> str:
    """With ``target`` (kfreeze.targets.registry) in the model's targets: OUT/<target>/ made from
    optimized.pb, its file(s) and signature.json; else only a 'not requested' marker (no TensorFlow)."""
    from kfreeze import targets

    name = spec.name
    progress.begin(target, name)
    out = Path(out)
    if target not in spec.targets:
        targets.write(out, target, None)
        return f"{name}: {target} not requested (params targets)"
    from kfreeze import child
    # The converters (tf2onnx, the TFLite converter, OpenVINO's) run in a fresh child bounded in time and
    # memory: a graph that makes one allocate without bound becomes one line, and their own output stays there.
    size = (out / layout.OPTIMIZED).stat().st_size if (out / layout.OPTIMIZED).is_file() else 0
    with progress.step(f"converting optimized.pb to {targets.FILES[target]} in a child process"):
        sibling = child.call(targets.build_with_options, target, out, spec.where("targets"),
                             _calibration(target, spec, vspec), targets.options(target, spec),
                             what=f"the {target} converter", where=str(out / layout.OPTIMIZED),
                             memory=child.memory_bound(size))
    targets.write(out, target, sibling)
    sig = sibling.signature
    return (f"{name}: wrote {target}/{targets.FILES[target]} ({len(sibling.data)} bytes; inputs "
            f"{[(i['name'], i['shape']) for i in sig['inputs']]}, outputs {[o['name'] for o in sig['outputs']]})")


# The steps a DVC stage runs, by the settings file it reads (its name; '<stage>_tf1.json' for 'graphs:').
def from_settings(stage: str, name: str, build: Path, metrics: Path = Path("metrics"),
                  warn: Callable[[str], None] = _warn) -> str:
    """A DVC stage: BUILD/<name>/settings/<stage>.json read (and nothing else), then the step run on
    BUILD/<name>/. ``stage``: a step of ``STEPS`` or a target (kfreeze.targets.registry)."""
    spec, vspec = settings.read(build, name, stage)
    out = Path(build) / name
    if stage in STEPS:
        return STEPS[stage](spec, vspec, out, Path(metrics) / f"{name}.json", warn)
    return target(stage, spec, vspec, out)


# Each step from what from_settings holds: (spec, vspec, out, metrics file, warn).
STEPS = {
    "convert": lambda spec, vspec, out, metrics, warn: convert(spec, out, warn=warn),
    "export": lambda spec, vspec, out, metrics, warn: export(spec, out),
    "freeze": lambda spec, vspec, out, metrics, warn: freeze(spec, out, warn=warn),
    "optimize": lambda spec, vspec, out, metrics, warn: optimize(spec, out),
    "verify": lambda spec, vspec, out, metrics, warn: verify(spec, vspec, out, metrics, warn=warn),
}
