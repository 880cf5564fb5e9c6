"""Run the source model and the optimized graph on the same seeded inputs; TF and OpenCV."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kfreeze.errors import KfreezeError
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2

OPENCV_TIMEOUT_S = 300


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple  # None for a dynamic dimension


def make_inputs(infos: list[TensorInfo], samples: int, seed: int,
                input_range: tuple[float, float] = (0.0, 1.0)) -> dict[str, np.ndarray]:
    """Seeded inputs: floats uniform in ``input_range`` ([0, 1) by default, image-like).

    Integers: with the default range, small integers 0..9 (safe as indices into
    an embedding); with an explicit range, integers in [low, high) clipped to the
    dtype. Booleans: 0/1.
    """
    rng = np.random.default_rng(seed)
    low, high = input_range
    feeds = {}
    for info in infos:
        dims = _sample_dims(info, samples)
        dtype = np.dtype(tf.as_dtype(info.dtype).as_numpy_dtype)
        if np.issubdtype(dtype, np.floating):
            u = rng.random(dims, dtype=np.float32) if (low, high) == (0.0, 1.0) else \
                (low + (high - low) * rng.random(dims)).astype(np.float32)
            feeds[info.name] = u.astype(dtype)
        elif dtype == np.bool_:
            feeds[info.name] = rng.integers(0, 2, dims).astype(dtype)
        else:
            lo, hi = (0, 10) if (low, high) == (0.0, 1.0) else (int(np.ceil(low)), int(np.ceil(high)))
            limits = np.iinfo(dtype)
            lo, hi = max(lo, int(limits.min)), min(hi, int(limits.max) + 1)
            feeds[info.name] = rng.integers(lo, max(hi, lo + 1), dims).astype(dtype)
    return feeds


def _sample_dims(info: TensorInfo, samples: int) -> list[int]:
    if info.shape is None:
        raise KfreezeError(f"input '{info.name}'", "has unknown rank, so verify cannot make inputs",
                           "set input_shape in params.yaml")
    dims = list(info.shape)
    if any(d is None for d in dims[1:]):
        raise KfreezeError(f"input '{info.name}'", f"has dynamic dimensions {list(info.shape)} besides the batch",
                           "set input_shape in params.yaml to fix them")
    if dims:
        dims[0] = samples  # a fixed batch is run batch by batch, see run_batched
    return dims


def load_data(path: Path, infos: list[TensorInfo], names: list[str], samples: int) -> dict[str, np.ndarray]:
    """Real inputs from an ``.npz``: one array per input (keyed by the input name as in
    params.yaml, or by its placeholder name), rows = samples; the first ``samples`` rows are used.

    Loaded with ``allow_pickle=False``: an object array is refused, never unpickled.
    """
    import zipfile
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        reason = " ".join(str(e).split())[:200]
        raise KfreezeError(path, f"cannot be read as an .npz of plain arrays ({type(e).__name__}: {reason})",
                           "write it with numpy.savez(path, input_name=array, ...) from numeric arrays") from None
    feeds, rows = {}, set()
    for info, name in zip(infos, names):
        key = name if name in arrays else info.name if info.name in arrays else None
        if key is None:
            raise KfreezeError(path, f"has no array for input '{name}' (it has {sorted(arrays)})",
                               f"add one: numpy.savez(..., **{{'{name}': x}})")
        x = arrays[key]
        dtype = np.dtype(tf.as_dtype(info.dtype).as_numpy_dtype)
        if x.dtype.kind not in "biuf" or not np.can_cast(x.dtype, dtype, "same_kind"):
            raise KfreezeError(path, f"array '{key}' has dtype {x.dtype}, which does not convert to the "
                               f"input's {dtype}", f"save it as {dtype}")
        want = list(info.shape or [])
        if info.shape is None or x.ndim != len(want) or any(w is not None and w != d for w, d in zip(want[1:], x.shape[1:])):
            shape = "?" if info.shape is None else [("N" if i == 0 else ("?" if d is None else d)) for i, d in enumerate(want)]
            raise KfreezeError(path, f"array '{key}' has shape {list(x.shape)}; input '{name}' takes {shape}",
                               "one row per sample along the first axis")
        if x.shape[0] < 1:
            raise KfreezeError(path, f"array '{key}' has no rows", "save at least one sample")
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            raise KfreezeError(path, f"array '{key}' holds NaN or Inf", "save finite inputs")
        rows.add(x.shape[0])
        feeds[info.name] = np.ascontiguousarray(x[:samples].astype(dtype))
    if len(rows) > 1:
        raise KfreezeError(path, f"arrays have different numbers of rows {sorted(rows)}", "one row per sample in each")
    return feeds


def run_batched(fn, feeds: dict[str, np.ndarray], batch: int | None) -> dict[str, np.ndarray]:
    """Call ``fn`` on all samples at once, or ``batch`` at a time for a fixed-batch graph.

    A last chunk shorter than the batch is padded by repeating its rows, and only
    the rows fed are kept: a graph with a fixed batch of 100 still checks 16 samples.
    """
    n = len(next(iter(feeds.values())))
    if batch is None or batch == n:
        return fn(feeds)
    parts = []
    for i in range(0, n, batch):
        chunk = {k: v[i:i + batch] for k, v in feeds.items()}
        rows = len(next(iter(chunk.values())))
        if rows < batch:
            chunk = {k: np.resize(v, (batch, *v.shape[1:])) for k, v in chunk.items()}
        result = fn(chunk)
        parts.append({k: np.asarray(v)[:rows] for k, v in result.items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def run_graph(graph: graph_pb2.GraphDef, feeds: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph, name="")
    with tf.compat.v1.Session(graph=g, config=session_config()) as sess:
        values = sess.run([_tensor(o) for o in outputs], {_tensor(k): v for k, v in feeds.items()})
    return dict(zip(outputs, values))


def run_checkpoint_graph(graph: graph_pb2.GraphDef, checkpoint: str | None, feeds: dict[str, np.ndarray],
                         outputs: list[str], fixed: dict[str, object] | None = None) -> dict[str, np.ndarray]:
    """The original graph with its variables restored: the reference for TF1 models and cuts.

    ``fixed`` feeds training flags their inference values (keep_prob 1, rate 0,
    is_training False). The graph runs at the batch its fed tensors accept: a
    queue-fed Estimator graph reshaped to [100, 28, 28, 1] runs 100 rows at a
    time, the samples padded (see run_batched).
    """
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph, name="")
        variables = {op.name: op.outputs[0] for op in g.get_operations()
                     if op.type in ("VariableV2", "VarHandleOp", "Variable")}
        stored = tf.compat.v1.train.NewCheckpointReader(checkpoint).get_variable_to_shape_map() if variables else {}
        var_list = {k: v for k, v in variables.items() if k in stored}
        saver = tf.compat.v1.train.Saver(var_list=var_list) if var_list else None
        tensors = {k: g.get_tensor_by_name(_tensor(k)) for k in feeds}
        # A cut with another input_dtype feeds the original tensor its own dtype, as the Cast does.
        typed = {k: v.astype(tensors[k].dtype.as_numpy_dtype) for k, v in feeds.items()}
        constant = {g.get_tensor_by_name(_tensor(k)): v for k, v in (fixed or {}).items()}
        fetches = [g.get_tensor_by_name(_tensor(o)) for o in outputs]
    batch = _fixed_batch(t.shape for t in tensors.values())
    with tf.compat.v1.Session(graph=g, config=session_config()) as sess:
        if saver is not None:
            saver.restore(sess, checkpoint)

        def run(chunk):
            values = sess.run(fetches, {**constant, **{tensors[k]: v for k, v in chunk.items()}})
            return dict(zip(outputs, values))
        return run_batched(run, typed, batch)


def _fixed_batch(shapes) -> int | None:
    """The batch a graph's fed tensors fix (their first dimension), or None when it is free."""
    for shape in shapes:
        shape = tf.TensorShape(shape)
        if shape.rank and shape[0] is not None:
            return int(shape[0])
    return None


def run_keras(model, feeds: dict[str, np.ndarray], input_names: list[str], output_names: list[str]) -> dict[str, np.ndarray]:
    from kfreeze.keras_io import input_structure
    structure = input_structure(model)
    batch = _fixed_batch(tuple(t.shape) for t in tf.nest.flatten(structure))
    stateful = [layer for layer in model._flatten_layers(include_self=True, recursive=True)
                if getattr(layer, "stateful", False) is True]

    def run(chunk):
        for layer in stateful:  # the frozen graph starts every run from zero states
            layer.reset_states()
        args = [tf.constant(chunk[n]) for n in input_names]
        result = model(tf.nest.pack_sequence_as(structure, args), training=False)
        return {name: np.asarray(t) for name, t in zip(output_names, tf.nest.flatten(result))}
    return run_batched(run, {n: feeds[n] for n in input_names}, batch)


@dataclass
class OpenCVResult:
    outputs: dict[str, np.ndarray] | None
    error: str | None


def opencv_layer(graph: graph_pb2.GraphDef, output: str) -> str:
    """The OpenCV layer names that may compute ``output``, as 'a|b|c', best first.

    OpenCV's importer drops Identity nodes and fuses a BiasAdd into the MatMul
    or Conv2D before it, naming the layer after that op; the child process takes
    the first candidate its network has.
    """
    by_name = {n.name: n for n in graph.node}
    name = output.split(":")[0]
    while name in by_name and by_name[name].op == "Identity" and by_name[name].input:
        name = by_name[name].input[0].split(":")[0]
    chain = [name]
    node = by_name.get(name)
    if node is not None and node.op in ("BiasAdd", "Add", "AddV2") and node.input:
        chain.append(node.input[0].split(":")[0])
    return "|".join(chain)


def run_opencv(graph_path: str | Path, feeds: dict[str, np.ndarray], outputs: list[str],
               batch: int | None = None, timeout: float = OPENCV_TIMEOUT_S) -> OpenCVResult:
    """``outputs`` are OpenCV layer candidates (see ``opencv_layer``); results are keyed by them."""
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inp, **feeds)
        # Run as a script, not '-m kfreeze.verify.opencv_child': that imports this package, and
        # with it TensorFlow (about 8 s), in a child that needs only numpy and cv2.
        cmd = [sys.executable, str(Path(__file__).with_name("opencv_child.py")), str(graph_path), str(inp), str(out),
               ",".join(feeds), ",".join(outputs), str(batch or 0)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                             os.environ.get("PYTHONPATH", "")])}
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return OpenCVResult(None, f"OpenCV did not finish within {timeout:.0f} s")
        if proc.returncode < 0:
            name = signal.Signals(-proc.returncode).name
            return OpenCVResult(None, f"OpenCV crashed with {name} (signal {-proc.returncode})")
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            return OpenCVResult(None, lines[-1][:400] if lines else f"OpenCV exited with {proc.returncode}")
        data = np.load(out)
        return OpenCVResult({o: data[o] for o in outputs}, None)


PROBABILITY_OPS = {"Softmax", "Sigmoid", "LogSoftmax"}
_PASS_THROUGH = {"Identity", "IdentityN", "Snapshot", "Reshape", "Squeeze", "ExpandDims", "Cast", "StopGradient"}


def probability_outputs(graph: graph_pb2.GraphDef, outputs: list[str]) -> dict[str, bool]:
    """Which outputs are class probabilities: the op computing them (through Identity,
    Reshape and the like) is a Softmax, Sigmoid or LogSoftmax. Only those get top1_agree."""
    by_name = {n.name: n for n in graph.node}
    result = {}
    for output in outputs:
        node = by_name.get(output.split(":")[0])
        seen = set()
        while node is not None and node.op in _PASS_THROUGH and node.input and node.name not in seen:
            seen.add(node.name)
            node = by_name.get(node.input[0].lstrip("^").split(":")[0])
        result[output] = node is not None and node.op in PROBABILITY_OPS
    return result


def compare(reference: dict[str, np.ndarray], got: dict[str, np.ndarray], probability: dict[str, bool] | None = None,
            atol: float | None = None, rtol: float | None = None) -> dict[str, dict]:
    """Per output: the largest absolute difference, the largest reference magnitude, their
    ratio (``rel_diff``), the spread of the reference across samples, and for probability
    outputs the fraction of samples with the same top-1 class.

    With ``atol``/``rtol``: an output passes when both sides are finite and
    ``max|ref - got| <= atol + rtol * max|ref|``; it is ``constant`` when its spread
    across samples is within that tolerance, so the comparison cannot tell a right
    graph from a wrong one. ``probability=None`` (no graph to look at) keeps the old
    rule: top-1 for any output with more than one column.
    """
    result = {}
    for name, ref in reference.items():
        raw = np.asarray(got[name])
        if raw.size != np.asarray(ref).size:
            result[name] = {"max_abs_diff": None, "top1_agree": None, "passed": False,
                            "error": f"shape {list(raw.shape)} != reference {list(np.shape(ref))}"}
            continue
        ref = np.asarray(ref, dtype=np.float64)
        y = raw.astype(np.float64).reshape(ref.shape)
        bad = [side for side, v in (("reference", ref), ("optimized graph", y)) if not np.all(np.isfinite(v))]
        entry: dict = {}
        if bad:
            entry = {"max_abs_diff": None, "rel_diff": None, "max_abs_reference": None, "nonfinite": bad}
        else:
            diff = float(np.max(np.abs(y - ref))) if ref.size else 0.0
            scale = float(np.max(np.abs(ref))) if ref.size else 0.0
            entry = {"max_abs_diff": diff, "max_abs_reference": scale,
                     "rel_diff": diff / scale if scale > 0 else (0.0 if diff == 0 else None)}
            if ref.ndim >= 1 and len(ref) >= 2:
                flat = ref.reshape(len(ref), -1)
                entry["spread"] = float(np.max(flat.max(0) - flat.min(0)))
        is_prob = (ref.ndim >= 2 and ref.shape[-1] > 1) if probability is None else probability.get(name, False)
        entry["top1_agree"] = _top1(ref, y) if is_prob and not bad else None
        if atol is not None:
            tolerance = atol + (rtol or 0.0) * (entry["max_abs_reference"] or 0.0)
            entry["tolerance"] = tolerance
            entry["passed"] = not bad and entry["max_abs_diff"] <= tolerance
            entry["constant"] = None if "spread" not in entry else entry["spread"] <= tolerance
        result[name] = entry
    return result


def _top1(ref: np.ndarray, y: np.ndarray) -> float | None:
    if ref.ndim == 0 or ref.size == 0:
        return None
    a, b = ref.reshape(len(ref), -1), y.reshape(len(y), -1)
    if a.shape[1] == 1:  # one sigmoid unit: the class is p > 0.5
        return float(np.mean((a[:, 0] > 0.5) == (b[:, 0] > 0.5)))
    return float(np.mean(np.argmax(a, -1) == np.argmax(b, -1)))


@dataclass
class Verdict:
    """What verify found: ``passed`` is the decision, ``failures`` say why not (each names
    an output), ``warnings`` flag comparisons that prove little (constant outputs)."""
    passed: bool
    failures: list[str]
    warnings: list[str]
    metrics: dict


def _tensor(name: str) -> str:
    return name if ":" in name else f"{name}:0"


def session_config():
    """One thread each, as verify runs the graphs: latencies and float results comparable across runs."""
    return tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)


def placeholder_infos(graph: graph_pb2.GraphDef, names: list[str]) -> list[TensorInfo]:
    by_name = {n.name: n for n in graph.node}
    infos = []
    for name in names:
        node = by_name[name]
        shape = tf.TensorShape(node.attr["shape"].shape)
        dims = None if shape.rank is None else tuple(shape.as_list())
        infos.append(TensorInfo(name, tf.as_dtype(node.attr["dtype"].type).name, dims))
    return infos


def data_path(spec, vspec, models_root: Path = Path("models")) -> Path | None:
    """``verify.data`` for this model: models/<name>/<data>, which must stay inside that
    folder after symlinks are followed; None when unset or when this model has no such file."""
    if not vspec.data:
        return None
    folder = Path(models_root) / spec.name
    path = folder / vspec.data
    if not path.exists():
        return None
    if not path.resolve().is_relative_to(folder.resolve()):
        raise KfreezeError(path, f"resolves to {path.resolve()}, outside {folder}/ (a symlink?)",
                           f"put the real file in {folder}/")
    if not path.is_file():
        raise KfreezeError(path, "is not a file", "verify.data names an .npz file in the model's folder")
    return path


def verify_model(spec, vspec, out: Path, models_root: Path = Path("models")) -> Verdict:
    """Run the source model and optimized.pb on the same inputs and decide: every output
    finite on both sides and within ``atol + rtol * max|reference|``. OpenCV is recorded, not judged."""
    from kfreeze import graphio
    from kfreeze.optimize.context import placeholder_name

    names = graphio.read_json(out / "names.json")
    inputs, outputs = names["inputs"], names["outputs"]
    frozen = graphio.read_graph(out / "frozen.pb")
    optimized = graphio.read_graph(out / "optimized.pb")
    feed_names = [placeholder_name(i) for i in inputs]
    from kfreeze import policy  # nothing runs a graph that has not passed the op policy
    policy.check(optimized, outputs, feed_names, str(out / "optimized.pb"), f"{spec.section}.{spec.name}",
                 spec.trust_code)
    infos = placeholder_infos(optimized, feed_names)
    source = data_path(spec, vspec, models_root)
    if source is not None:
        feeds = load_data(source, infos, inputs, vspec.samples)
    else:
        feeds = make_inputs(infos, vspec.samples, vspec.seed, vspec.input_range)
    samples = len(next(iter(feeds.values())))
    batch = _fixed_batch(i.shape for i in infos if i.shape is not None)

    reference, reference_kind, layout_converted = _reference(spec, out, inputs, outputs, feed_names, feeds, batch)
    got = run_batched(lambda f: run_graph(optimized, f, outputs), feeds, batch)
    atol, rtol = vspec.atol_for(spec.precision), vspec.rtol_for(spec.precision)
    probability = probability_outputs(optimized, outputs)
    per_output = compare(reference, got, probability, atol, rtol)
    layers = [opencv_layer(optimized, o) for o in outputs]
    ocv = run_opencv(out / "optimized.pb", feeds, layers, batch)
    ocv_got = None if ocv.outputs is None else {o: ocv.outputs[layer] for o, layer in zip(outputs, layers)}
    ocv_cmp = compare(reference, ocv_got, probability) if ocv_got is not None else None
    ocv_error = ocv.error
    if ocv_cmp and any(v.get("error") or v.get("nonfinite") for v in ocv_cmp.values()):
        ocv_error = "; ".join(f"{k}: {v.get('error') or 'NaN or Inf in the output'}" for k, v in ocv_cmp.items()
                              if v.get("error") or v.get("nonfinite"))
        ocv_cmp = None

    failures, warnings = [], []
    if vspec.data and source is None:
        warnings.append(f"verify.data is set, but {Path(models_root) / spec.name / vspec.data} does not exist: "
                        f"random inputs in {list(vspec.input_range)}")
    for name, v in per_output.items():
        if v.get("error"):
            failures.append(f"output '{name}': {v['error']}")
        elif v.get("nonfinite"):
            failures.append(f"output '{name}': NaN or Inf in the {' and the '.join(v['nonfinite'])}")
        elif not v["passed"]:
            failures.append(f"output '{name}' differs from the source model by {v['max_abs_diff']:.3g} "
                            f"(relative {_fmt(v['rel_diff'])}), more than atol + rtol * max|reference| = "
                            f"{v['tolerance']:.3g}")
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
        "ops_frozen": len(frozen.node),
        "ops_optimized": len(optimized.node),
        "bytes_frozen": (out / "frozen.pb").stat().st_size,
        "bytes_optimized": (out / "optimized.pb").stat().st_size,
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
        "opencv_max_abs_diff": None if ocv_cmp is None else max(v["max_abs_diff"] for v in ocv_cmp.values()),
        "opencv_error": ocv_error,
        "opencv_version": cv2.__version__,
        "tensorflow_version": tf.__version__,
    }
    return Verdict(not failures, failures, warnings, metrics)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _reference(spec, out: Path, inputs, outputs, feed_names, feeds, batch=None):
    """The source model's outputs: Keras itself when the names are the Keras ones, else the
    original graph with its checkpoint restored, fed at the cut tensors, with its training
    flags at their inference values (keep_prob 1, dropout rate 0, is_training False)."""
    from kfreeze import graphio
    from kfreeze.freeze import resolve_checkpoint
    from kfreeze.optimize.training import training_flags

    if spec.is_keras:
        signature = graphio.read_json(out / "signature.json")
        keras_inputs = [i["name"] for i in signature["inputs"]]
        keras_outputs = [o["name"] for o in signature["outputs"]]
        if sorted(inputs) == sorted(keras_inputs) and set(outputs) <= set(keras_outputs):
            from kfreeze import keras_io
            legacy = None
            if spec.maybe_legacy:
                from kfreeze import legacy
            if legacy is not None and legacy.is_legacy(spec.source, spec.arch):
                # The source as it was: channels_first inputs and, for Theano, its own kernel flip.
                plan = legacy.layout_plan(spec.source, spec.arch, spec.layout)
                src_in = [legacy.to_channels_first(feeds[n]) if cf else feeds[n]
                          for n, cf in zip(keras_inputs, plan.inputs)]
                outs = legacy.reference_outputs(spec.source, spec.arch, spec.layout, bool(spec.theano_kernels), src_in)
                everything = {o: legacy.to_channels_last(v) if cf else v
                              for o, v, cf in zip(keras_outputs, outs, plan.outputs)}
                return {o: everything[o] for o in outputs}, "legacy", plan.converted
            model = keras_io.load_model(spec.source, **keras_io.load_options(spec))
            everything = run_batched(lambda f: run_keras(model, f, keras_inputs, keras_outputs), feeds, batch)
            return {o: everything[o] for o in outputs}, "keras", False
        graph, checkpoint = graphio.read_graph(out / "graph.pbtxt"), out / "ckpt"
    else:
        graph, checkpoint = graphio.read_graph(spec.graph), spec.checkpoint
    from kfreeze import policy
    policy.check(graph, outputs, inputs, str(spec.graph or out / "graph.pbtxt"), f"{spec.section}.{spec.name}",
                 spec.trust_code)
    has_variables = any(n.op in ("VariableV2", "VarHandleOp", "Variable") for n in graph.node)
    checkpoint = resolve_checkpoint(checkpoint) if has_variables else None
    cut_feeds = {i: feeds[f] for i, f in zip(inputs, feed_names)}
    cut_nodes = {i.split(":")[0] for i in inputs}
    flags = {name: value for name, value in training_flags(graph).items() if name not in cut_nodes}
    return run_checkpoint_graph(graph, checkpoint, cut_feeds, outputs, flags), "checkpoint", False
