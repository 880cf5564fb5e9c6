"""Run the source model and the optimized graph on the same seeded inputs; TF and OpenCV."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kfreeze import layout
from kfreeze import progress
from kfreeze.tfenv import tf
from kfreeze.verify.compare import PROBABILITY_OPS, compare, computes_in_half, probability_outputs
from kfreeze.verify.inputs import TensorInfo, data_file, data_path, index_limits, load_data, make_inputs, placeholder_infos
from kfreeze.verify.run import (OPENCV_TIMEOUT_S, OpenCVResult, fixed_batch, fixed_batches, graph_session, opencv_failure,
                                opencv_layer, opencv_problem, run_batched, run_checkpoint_graph, run_default_tf,
                                run_graph, run_keras, run_opencv, sample_count, session_config)

# The names above are this package's public API (kfreeze.verify.X); the modules hold them.
__all__ = ["Verdict", "verify_model", "PROBABILITY_OPS", "compare", "computes_in_half", "probability_outputs",
           "TensorInfo",
           "data_file", "data_path", "index_limits", "load_data", "make_inputs", "placeholder_infos", "OPENCV_TIMEOUT_S",
           "OpenCVResult", "fixed_batch", "fixed_batches", "graph_session", "opencv_failure", "opencv_layer",
           "opencv_problem", "output_failures",
           "run_batched", "run_checkpoint_graph", "run_default_tf", "run_graph", "run_keras", "run_opencv",
           "sample_count", "session_config"]


@dataclass
class Verdict:
    """What verify found: ``passed`` is the decision, ``failures`` say why not (each names
    an output), ``warnings`` flag comparisons that prove little (constant outputs)."""
    passed: bool
    failures: list[str]
    warnings: list[str]
    metrics: dict
    where: Path | None = None  # the file that failed, when it is not optimized.pb (a target's sibling)


def verify_model(spec, vspec, out: Path) -> Verdict:
    """Run the source model and optimized.pb on the same inputs and decide: every output
    finite on both sides and within ``atol + rtol * max|reference|``, in kfreeze's pinned TF
    session (the recorded numbers) and in a TF process with TF's defaults (pass/fail: oneDNN on,
    as deployed). OpenCV is judged by the same rule when the model asks for it (``opencv: true``),
    and recorded otherwise."""
    from kfreeze import graphio
    from kfreeze.optimize.context import placeholder_name
    from kfreeze.optimize.graph import light_graph
    from kfreeze.resources import activation_bytes, release_memory

    names = graphio.read_json(out / layout.NAMES)
    inputs, outputs = names["inputs"], names["outputs"]
    with progress.step("reading frozen.pb and optimized.pb"):
        ops_frozen = len(graphio.read_graph(out / layout.FROZEN).node)  # counted, not kept: a copy of the weights
        optimized = graphio.read_graph(out / layout.OPTIMIZED)
        per_sample = activation_bytes(optimized)[0]
    feed_names = [placeholder_name(i) for i in inputs]
    from kfreeze import policy  # nothing runs a graph that has not passed the op policy
    policy.check(optimized, outputs, feed_names, str(out / layout.OPTIMIZED), spec.at, spec.trust_code)
    # From here verify looks at its ops, names and shapes; the session reads the weights again.
    optimized = light_graph(optimized)
    release_memory()
    infos = placeholder_infos(optimized, feed_names)
    source = data_path(spec, vspec)
    # Inputs fixed at different first dimensions (a [6, 2] and a [1, 1, 6, 2]) share no batch axis:
    # one run, each input fed its own fixed rows, and no chunking.
    own = fixed_batches(i.shape for i in infos if i.shape is not None)
    uneven = len(set(own)) > 1
    if source is not None:
        feeds = load_data(source, infos, inputs, vspec.samples)
    else:
        feeds = make_inputs(infos, max(own) if uneven else vspec.samples, vspec.seed, vspec.input_range,
                            index_limits(optimized, feed_names))
    if uneven:
        feeds = {i.name: feeds[i.name][:i.shape[0]] if i.shape and i.shape[0] is not None else feeds[i.name]
                 for i in infos}
    samples = sample_count(feeds) or 1  # no inputs, or a scalar one: one run
    batch = None if uneven or sample_count(feeds) is None else \
        fixed_batch(i.shape for i in infos if i.shape is not None) or _chunk(per_sample, samples)

    reference, reference_kind, layout_converted = _reference(spec, out, inputs, outputs, feed_names, feeds, batch)
    release_memory()  # the reference model (reference cycles): its weights go before the graph's come in
    with progress.step("running optimized.pb in a TF session", total=samples) as step, \
            graph_session(graphio.read_graph(out / layout.OPTIMIZED), outputs, spec.trust_code,
                          str(out / layout.OPTIMIZED)) as run:
        got = run_batched(_counted(run, step), feeds, batch)
    graph_precision = "float32" if spec.precision == "int8" else spec.precision  # int8: model.tflite only
    if computes_in_half(optimized):  # a mixed_float16 source: float16 rounding, judged as precision float16
        graph_precision = "float16"
    atol, rtol = vspec.atol_for(graph_precision), vspec.rtol_for(graph_precision)
    probability = probability_outputs(optimized, outputs)
    per_output = compare(reference, got, probability, atol, rtol)
    if sample_count(feeds) is None:  # one run, no sample axis: the first dimension's spread says nothing
        for v in per_output.values():
            v.pop("spread", None)
            v["constant"] = None
    with progress.step("running optimized.pb in TensorFlow's default configuration (a child process)"):
        default_got, default_error = run_default_tf(out / layout.OPTIMIZED, feeds, outputs, batch)
    default_cmp = None if default_got is None else compare(reference, default_got, probability, atol, rtol)
    layers = [opencv_layer(optimized, o) for o in outputs]
    with progress.step("running optimized.pb in OpenCV dnn (a child process)"):
        ocv = run_opencv(out / layout.OPTIMIZED, feeds, layers, batch)
    ocv_got = None if ocv.outputs is None else {o: ocv.outputs[layer] for o, layer in zip(outputs, layers)}
    # The names net.forward was called with: proven by the call, not derived.
    ocv_names = None if ocv.layers is None else {o: ocv.layers[layer] for o, layer in zip(outputs, layers)}
    ocv_cmp = compare(reference, ocv_got, probability, atol, rtol) if ocv_got is not None else None
    ocv_error = ocv.error
    if ocv_cmp and any(v.get("error") or v.get("nonfinite") for v in ocv_cmp.values()):
        ocv_error = "; ".join(f"{k}: {v.get('error') or 'NaN or Inf in the output'}" for k, v in ocv_cmp.items()
                              if v.get("error") or v.get("nonfinite"))
        ocv_cmp = None

    failures, warnings = [], []
    if vspec.data and source is None:
        warnings.append(f"verify.data is set, but {data_file(spec, vspec)} does not exist: "
                        f"random inputs in {list(vspec.input_range)}")
    failures += output_failures(per_output)
    # The pinned session's numbers are what metrics record; a deployed TF process must agree.
    default_prefix = "in a TensorFlow process with TF's defaults (oneDNN on, as deployed): "
    if default_error is not None:
        failures.append(f"{default_prefix}{default_error}")
    else:
        failures += output_failures(default_cmp, default_prefix)
    if spec.opencv:  # asked for: OpenCV failing or disagreeing fails the stage
        if ocv_error is not None:
            failures.append(f"opencv is true, and {opencv_problem(ocv_error, optimized)}")
        else:
            failures += output_failures(ocv_cmp, "in OpenCV dnn: ")
    for name, v in per_output.items():
        if v.get("constant"):
            warnings.append(f"output '{name}' hardly depends on the input: across {samples} samples it varies by "
                            f"{v['spread']:.3g}, within the tolerance {v['tolerance']:.3g}, so this comparison "
                            "cannot tell a wrong graph from a right one; feed inputs like your data "
                            "(verify.data or verify.input_range)")

    import cv2
    diffs = [v.get("max_abs_diff") for v in per_output.values()]
    rels = [v.get("rel_diff") for v in per_output.values()]
    metrics = {
        "passed": not failures,
        "ops_frozen": ops_frozen,
        "ops_optimized": len(optimized.node),
        "bytes_frozen": (out / layout.FROZEN).stat().st_size,
        "bytes_optimized": (out / layout.OPTIMIZED).stat().st_size,
        "max_abs_diff": None if None in diffs else max(diffs),
        "max_rel_diff": None if None in rels else max(rels),
        "top1_agree": {k: v["top1_agree"] for k, v in per_output.items()},
        "constant_outputs": sorted(k for k, v in per_output.items() if v.get("constant")),
        "outputs": per_output,
        "reference": reference_kind,
        "layout_converted": layout_converted,
        "inputs_from": str(source.as_posix()) if source is not None else "random",
        "input_range": None if source is not None else list(vspec.input_range),
        "samples": samples,
        "seed": vspec.seed,
        "atol": vspec.atol,
        "atol_used": atol,
        "rtol": vspec.rtol,
        "rtol_used": rtol,
        "precision": spec.precision,
        "opencv_mode": spec.opencv,
        "tf_default_passed": default_error is None and all(v["passed"] for v in default_cmp.values()),
        "opencv_max_abs_diff": None if ocv_cmp is None else max(v["max_abs_diff"] for v in ocv_cmp.values()),
        "opencv_passed": None if ocv_cmp is None else all(v["passed"] for v in ocv_cmp.values()),
        "opencv_error": ocv_error,
        "opencv_names": ocv_names,
        "opencv_problem": opencv_problem(ocv_error, optimized),
        "opencv_version": cv2.__version__,
        "tensorflow_version": tf.__version__,
    }
    # The siblings (params targets) on the same inputs, judged by the same tolerances.
    from kfreeze.targets.check import check_targets
    metrics["targets"], target_failures = check_targets(spec, out, feeds, reference, probability, atol, rtol, batch,
                                                           vspec)
    where = None if failures or not target_failures else target_failures[0][0]
    failures += [line for _, line in target_failures]
    metrics["passed"] = not failures
    return Verdict(not failures, failures, warnings, metrics, where)


def output_failures(per_output: dict, prefix: str = "") -> list[str]:
    """One line per failing output of ``compare``, each naming the output (after ``prefix``)."""
    failures = []
    for name, v in per_output.items():
        if v.get("error"):
            failures.append(f"{prefix}output '{name}': {v['error']}")
        elif v.get("nonfinite"):
            failures.append(f"{prefix}output '{name}': NaN or Inf in the {' and the '.join(v['nonfinite'])}")
        elif not v["passed"]:
            failures.append(f"{prefix}output '{name}' differs from the source model by {v['max_abs_diff']:.3g} "
                            f"(relative {_fmt(v['rel_diff'])}), more than atol + rtol * max|reference| = "
                            f"{v['tolerance']:.3g}")
    return failures


ACTIVATION_BUDGET = 256 * 2**20


def _chunk(per_sample: int, samples: int) -> int:
    """Samples per run for a graph whose batch is free: as many as keep its activations (``per_sample``
    bytes for one) within ACTIVATION_BUDGET. All 16 at once made ResNet50's verify peak at 3.3 GB."""
    return max(1, min(samples, ACTIVATION_BUDGET // max(per_sample, 1)))


def _counted(fn, step):
    """``fn`` for run_batched, counting the samples done on ``step``."""
    def run(chunk):
        result = fn(chunk)
        step.advance(sample_count(chunk) or 1)
        return result
    return run


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _reference(spec, out: Path, inputs, outputs, feed_names, feeds, batch=None):
    """The source model's outputs: Keras itself when the names are the Keras ones, else the
    original graph with its checkpoint restored, fed at the cut tensors, with its training
    flags at their inference values (keep_prob 1, dropout rate 0, is_training False)."""
    from kfreeze import graphio
    from kfreeze.freeze import resolve_checkpoint
    from kfreeze.resolve import graph_and_checkpoint
    from kfreeze.optimize.training import training_flags

    if spec.is_keras:
        signature = graphio.read_json(out / layout.SIGNATURE)
        keras_inputs = [i["name"] for i in signature["inputs"]]
        keras_outputs = [o["name"] for o in signature["outputs"]]
        if sorted(inputs) == sorted(keras_inputs) and set(outputs) <= set(keras_outputs):
            from kfreeze import keras_io
            legacy = None
            from kfreeze import sources
            if spec.maybe_legacy or sources.keras2_archive(spec.source or ""):  # tf_keras is their reference
                from kfreeze import legacy
            if legacy is not None and legacy.is_legacy(spec.source, spec.arch):
                # The source as it was: channels_first inputs and, for Theano, its own kernel flip.
                plan = legacy.layout_plan(spec.source, spec.arch, spec.layout)
                src_in = [legacy.to_channels_first(feeds[n]) if cf else feeds[n]
                          for n, cf in zip(keras_inputs, plan.inputs)]
                with progress.step(f"reference: the legacy source {spec.source}"):
                    flip = legacy.uses_theano_kernels(spec.source, spec.arch, spec.theano_kernels)  # as convert did
                    outs = legacy.reference_outputs(spec.source, spec.arch, spec.layout, flip, src_in,
                                                    trust_code=spec.trust_code)
                everything = {o: legacy.to_channels_last(v) if cf else v
                              for o, v, cf in zip(keras_outputs, outs, plan.outputs)}
                return {o: everything[o] for o in outputs}, "legacy", plan.converted
            with progress.step(f"reference: loading {spec.source} in Keras"):
                model = keras_io.load_model(spec.source, **keras_io.load_options(spec))
            samples = len(next(iter(feeds.values())))
            with progress.step("reference: running the Keras model", total=samples) as step:
                everything = run_batched(_counted(lambda f: run_keras(model, f, keras_inputs, keras_outputs), step),
                                         feeds, batch)
            return {o: everything[o] for o in outputs}, "keras", False
    from kfreeze import sources
    if sources.kind(spec.graph) == "savedmodel":
        return _saved_model_reference(spec, out, inputs, outputs, feed_names, feeds, batch)
    graph, checkpoint, graph_path = graph_and_checkpoint(spec, out)
    from kfreeze import policy
    policy.check(graph, outputs, inputs, str(graph_path), spec.at, spec.trust_code)
    has_variables = any(n.op in ("VariableV2", "VarHandleOp", "Variable") for n in graph.node)
    checkpoint = resolve_checkpoint(checkpoint) if has_variables and checkpoint is not None else None
    cut_feeds = {i: feeds[f] for i, f in zip(inputs, feed_names)}
    cut_nodes = {i.split(":")[0] for i in inputs}
    flags = {name: value for name, value in training_flags(graph).items() if name not in cut_nodes}
    with progress.step(f"reference: {graph_path}{' with its checkpoint' if checkpoint else ''} in a TF session"):
        reference = run_checkpoint_graph(graph, checkpoint, cut_feeds, outputs, flags, spec.trust_code,
                                         str(graph_path))
    return reference, "checkpoint" if checkpoint is not None else "graph", False


def _saved_model_reference(spec, out: Path, inputs, outputs, feed_names, feeds, batch):
    """A SavedModel's reference: the signature function itself, when the graph's inputs and outputs are the
    signature's keys (the default); a cut elsewhere compares with frozen.pb, the signature frozen."""
    from kfreeze import graphio
    from kfreeze import saved_model as sm

    folder = Path(spec.graph)
    meta = sm.read_meta_graph(folder)
    key = sm.signature_key(meta, spec.signature, folder, f"{spec.section}.{spec.name}.signature")
    signature = meta.signature_def[key]
    if sorted(inputs) == sorted(signature.inputs) and set(outputs) <= set(signature.outputs):
        sm.check(folder, key, str(folder), f"{spec.section}.{spec.name}", spec.trust_code)
        with progress.step(f"reference: signature '{key}' of {folder}"):
            return sm.run_signature(folder, key, {i: feeds[f] for i, f in zip(inputs, feed_names)}, outputs,
                                    batch), "savedmodel", False
    frozen = graphio.read_graph(out / layout.FROZEN)
    with progress.step("reference: frozen.pb (the signature frozen) in a TF session"):
        reference = run_checkpoint_graph(frozen, None, {i: feeds[f] for i, f in zip(inputs, feed_names)}, outputs,
                                         trust_code=spec.trust_code, where=str(out / layout.FROZEN))
    return reference, "frozen", False
