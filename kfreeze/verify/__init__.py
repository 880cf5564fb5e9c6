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


def make_inputs(infos: list[TensorInfo], samples: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded inputs: uniform [0, 1) for floats (image-like), small integers otherwise."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for info in infos:
        if info.shape is None:
            raise KfreezeError(f"input '{info.name}'", "has unknown rank, so verify cannot make inputs",
                               "set input_shape in params.yaml")
        dims = list(info.shape)
        if dims and dims[0] is None:
            dims[0] = samples
        if any(d is None for d in dims):
            raise KfreezeError(f"input '{info.name}'", f"has dynamic dimensions {list(info.shape)} besides the batch",
                               "set input_shape in params.yaml to fix them")
        if dims and dims[0] != samples:
            dims[0] = samples  # a fixed batch is run sample by sample, see run_batched
        dtype = np.dtype(tf.as_dtype(info.dtype).as_numpy_dtype)
        if np.issubdtype(dtype, np.floating):
            feeds[info.name] = rng.random(dims, dtype=np.float32).astype(dtype)
        elif dtype == np.bool_:
            feeds[info.name] = rng.integers(0, 2, dims).astype(dtype)
        else:
            feeds[info.name] = rng.integers(0, 10, dims).astype(dtype)
    return feeds


def run_batched(fn, feeds: dict[str, np.ndarray], batch: int | None) -> dict[str, np.ndarray]:
    """Call ``fn`` on all samples at once, or ``batch`` at a time for a fixed-batch graph."""
    n = len(next(iter(feeds.values())))
    if batch is None or batch == n:
        return fn(feeds)
    parts = [fn({k: v[i:i + batch] for k, v in feeds.items()}) for i in range(0, n, batch)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def run_graph(graph: graph_pb2.GraphDef, feeds: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph, name="")
    with tf.compat.v1.Session(graph=g, config=_session_config()) as sess:
        values = sess.run([_tensor(o) for o in outputs], {_tensor(k): v for k, v in feeds.items()})
    return dict(zip(outputs, values))


def run_checkpoint_graph(graph: graph_pb2.GraphDef, checkpoint: str, feeds: dict[str, np.ndarray],
                         outputs: list[str]) -> dict[str, np.ndarray]:
    """The original graph with its variables restored: the reference for TF1 models and cuts."""
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph, name="")
        variables = {op.name: op.outputs[0] for op in g.get_operations()
                     if op.type in ("VariableV2", "VarHandleOp", "Variable")}
        stored = tf.compat.v1.train.NewCheckpointReader(checkpoint).get_variable_to_shape_map() if variables else {}
        var_list = {k: v for k, v in variables.items() if k in stored}
        saver = tf.compat.v1.train.Saver(var_list=var_list) if var_list else None
        # A cut with another input_dtype feeds the original tensor its own dtype, as the Cast does.
        typed = {_tensor(k): v.astype(g.get_tensor_by_name(_tensor(k)).dtype.as_numpy_dtype) for k, v in feeds.items()}
    with tf.compat.v1.Session(graph=g, config=_session_config()) as sess:
        if saver is not None:
            saver.restore(sess, checkpoint)
        values = sess.run([_tensor(o) for o in outputs], typed)
    return dict(zip(outputs, values))


def run_keras(model, feeds: dict[str, np.ndarray], input_names: list[str], output_names: list[str]) -> dict[str, np.ndarray]:
    args = [tf.constant(feeds[n]) for n in input_names]
    from kfreeze.keras_io import input_structure
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if getattr(layer, "stateful", False) is True:  # the frozen graph starts from zero states
            layer.reset_states()
    result = model(tf.nest.pack_sequence_as(input_structure(model), args), training=False)
    return {name: np.asarray(t) for name, t in zip(output_names, tf.nest.flatten(result))}


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


def compare(reference: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per output: max abs diff and the fraction of samples with the same argmax."""
    result = {}
    for name, ref in reference.items():
        y = np.asarray(got[name], dtype=np.float64).reshape(ref.shape) if got[name].size == ref.size else None
        if y is None:
            result[name] = {"max_abs_diff": None, "top1_agree": None,
                            "error": f"shape {list(got[name].shape)} != reference {list(ref.shape)}"}
            continue
        ref = np.asarray(ref, dtype=np.float64)
        diff = float(np.max(np.abs(y - ref))) if ref.size else 0.0
        if ref.ndim >= 2 and ref.shape[-1] > 1:
            agree = float(np.mean(np.argmax(ref.reshape(len(ref), -1), -1) == np.argmax(y.reshape(len(y), -1), -1)))
        else:
            agree = None  # a regression output has no argmax
        result[name] = {"max_abs_diff": diff, "top1_agree": agree}
    return result


def _tensor(name: str) -> str:
    return name if ":" in name else f"{name}:0"


def _session_config():
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


def verify_model(spec, vspec, out: Path) -> dict:
    """Metrics for one model: op counts, sizes, TF parity, OpenCV parity."""
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
    feeds = make_inputs(infos, vspec.samples, vspec.seed)
    batch = infos[0].shape[0] if infos[0].shape else None

    reference, reference_kind, layout_converted = _reference(spec, out, inputs, outputs, feed_names, feeds, batch)
    got = run_batched(lambda f: run_graph(optimized, f, outputs), feeds, batch)
    per_output = compare(reference, got)
    layers = [opencv_layer(optimized, o) for o in outputs]
    ocv = run_opencv(out / "optimized.pb", feeds, layers, batch)
    ocv_got = None if ocv.outputs is None else {o: ocv.outputs[layer] for o, layer in zip(outputs, layers)}
    ocv_cmp = compare(reference, ocv_got) if ocv_got is not None else None
    ocv_error = ocv.error
    if ocv_cmp and any(v.get("error") for v in ocv_cmp.values()):
        ocv_error = "; ".join(f"{k}: {v['error']}" for k, v in ocv_cmp.items() if v.get("error"))
        ocv_cmp = None

    import cv2
    diffs = [v["max_abs_diff"] for v in per_output.values()]
    return {
        "ops_frozen": len(frozen.node),
        "ops_optimized": len(optimized.node),
        "bytes_frozen": (out / "frozen.pb").stat().st_size,
        "bytes_optimized": (out / "optimized.pb").stat().st_size,
        "max_abs_diff": max(d if d is not None else float("inf") for d in diffs),
        "top1_agree": {k: v["top1_agree"] for k, v in per_output.items()},
        "outputs": per_output,
        "reference": reference_kind,
        "layout_converted": layout_converted,
        "samples": vspec.samples,
        "seed": vspec.seed,
        "atol": vspec.atol,
        "atol_used": vspec.atol_for(spec.precision),
        "precision": spec.precision,
        "opencv_mode": spec.opencv,
        "opencv_max_abs_diff": None if ocv_cmp is None else max(v["max_abs_diff"] for v in ocv_cmp.values()),
        "opencv_error": ocv_error,
        "opencv_version": cv2.__version__,
        "tensorflow_version": tf.__version__,
    }


def _reference(spec, out: Path, inputs, outputs, feed_names, feeds, batch=None):
    """The source model's outputs: Keras itself when the names are the Keras ones, else the
    original graph with its checkpoint restored, fed at the cut tensors."""
    from kfreeze import graphio
    from kfreeze.freeze import resolve_checkpoint

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
    return run_checkpoint_graph(graph, checkpoint, cut_feeds, outputs), "checkpoint", False
