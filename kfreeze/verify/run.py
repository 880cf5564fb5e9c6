"""Run a model on verify's inputs: the graph in a TF session, the checkpoint graph, Keras, OpenCV dnn."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kfreeze.errors import KfreezeError
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2


OPENCV_TIMEOUT_S = 300
LAYERS_KEY = ":layers"  # in the child's npz: the layer names it fetched (no TF node name has a ':')


def run_batched(fn, feeds: dict[str, np.ndarray], batch: int | None) -> dict[str, np.ndarray]:
    """Call ``fn`` on all samples at once, or ``batch`` at a time for a fixed-batch graph.

    A last chunk shorter than the batch is padded by repeating its rows, and only
    the rows fed are kept: a graph with a fixed batch of 100 still checks 16 samples.
    """
    n = sample_count(feeds)
    if batch is None or n is None or batch == n:
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


def sample_count(feeds: dict[str, np.ndarray]) -> int | None:
    """The rows fed (the first dimension), or None when the feeds have no batch axis: a graph with
    no inputs, or one with a scalar input, is run once on what it is given."""
    if not feeds or any(np.ndim(v) == 0 for v in feeds.values()):
        return None
    return len(next(iter(feeds.values())))


def run_graph(graph: graph_pb2.GraphDef, feeds: dict[str, np.ndarray], outputs: list[str],
              trust_code: bool = False, where: str = "graph") -> dict[str, np.ndarray]:
    with graph_session(graph, outputs, trust_code, where) as run:
        return run(feeds)


@contextlib.contextmanager
def graph_session(graph: graph_pb2.GraphDef, outputs: list[str], trust_code: bool = False, where: str = "graph"):
    """``run(feeds) -> {output: value}`` on one session: a graph imported (and its session
    started) once however many batches it runs, which for ResNet50 is most of the cost.
    Nothing runs before the op policy has passed the graph (``trust_code`` switches it off).

    The session runs the graph as written, without its own Grappler pass: the graph has been
    through Grappler in the optimize stage, and a second pass at session start copied
    ResNet50's weights several times over (verify peaked 0.7 GB higher). ResNet50's outputs are
    the same to the last bit; where that pass fused MatMul + BiasAdd, the sums round differently
    (two_heads' score: max_abs_diff 1.19e-06 instead of 9.5e-07).
    """
    from kfreeze import policy
    policy.check(graph, outputs, (), where, trust_code=trust_code)
    g = tf.Graph()
    with g.as_default():
        try:
            tf.graph_util.import_graph_def(graph, name="")
        except ValueError as e:  # TF's shape inference refuses a node (a bad permutation at a known shape)
            reason = " ".join(str(e).split())[:300]
            raise KfreezeError(where, f"TensorFlow cannot import the graph: {reason}",
                               "the graph is damaged; re-export it") from None
    del graph  # the caller's last reference, when it passed a graph read for this session
    config = session_config()
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    with tf.compat.v1.Session(graph=g, config=config) as sess:
        def run(feeds):
            values = bounded_run(sess, [tensor_name(o) for o in outputs], {tensor_name(k): v for k, v in feeds.items()},
                                 where)
            return dict(zip(outputs, values))
        yield run


def run_checkpoint_graph(graph: graph_pb2.GraphDef, checkpoint: str | None, feeds: dict[str, np.ndarray],
                         outputs: list[str], fixed: dict[str, object] | None = None, trust_code: bool = False,
                         where: str = "graph") -> dict[str, np.ndarray]:
    """The original graph with its variables restored: the reference for TF1 models and cuts.

    ``fixed`` feeds training flags their inference values (keep_prob 1, rate 0,
    is_training False). The graph runs at the batch its fed tensors accept: a
    queue-fed Estimator graph reshaped to [100, 28, 28, 1] runs 100 rows at a
    time, the samples padded (see run_batched). NCHW convs and pools run as NHWC between
    Transposes (the optimize pass channels_last): CPU TensorFlow has no NCHW kernels for them.
    Devices are cleared, as freeze clears them: a graph trained on a GPU runs here too.
    """
    from kfreeze import policy
    from kfreeze.optimize.passes.channels_last import to_channels_last
    policy.check(graph, outputs, list(feeds), where, trust_code=trust_code)  # variables' control inputs too
    graph = to_channels_last(graph)
    if any(n.device for n in graph.node):  # pinned to devices this machine may lack, as freeze clears them
        graph = graph_pb2.GraphDef.FromString(graph.SerializeToString())
        for node in graph.node:
            node.ClearField("device")
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph, name="")
        variables = {op.name: op for op in g.get_operations() if op.type in ("VariableV2", "VarHandleOp", "Variable")}
        reader = (tf.compat.v1.train.NewCheckpointReader(checkpoint)
                  if variables and checkpoint is not None else None)  # None: a frozen graph (freeze checked it)
        restore, restore_feeds = _restore_ops(g, variables, reader)
        tensors = {k: g.get_tensor_by_name(tensor_name(k)) for k in feeds}
        # A cut with another input_dtype feeds the original tensor its own dtype, as the Cast does.
        typed = {k: v.astype(tensors[k].dtype.as_numpy_dtype) for k, v in feeds.items()}
        constant = {g.get_tensor_by_name(tensor_name(k)): v for k, v in (fixed or {}).items()}
        fetches = [g.get_tensor_by_name(tensor_name(o)) for o in outputs]
    batch = fixed_batch(t.shape for t in tensors.values())
    with tf.compat.v1.Session(graph=g, config=session_config()) as sess:
        if restore:
            from kfreeze.freeze import run_restore
            run_restore(sess, restore, restore_feeds)

        def run(chunk):
            values = bounded_run(sess, fetches, {**constant, **{tensors[k]: v for k, v in chunk.items()}}, where)
            return dict(zip(outputs, values))
        return run_batched(run, typed, batch)


def _restore_ops(g, variables: dict, reader) -> tuple[list, dict]:
    """Assigns that set each variable the checkpoint has (whole, or its slice of a partitioned one)
    to its value, and their feeds. Not a Saver: its restore fails on resource variables (VarHandleOp:
    "tuple index out of range") and finds no key for a partition ('v/part_0' is stored as 'v')."""
    from kfreeze.freeze import partitions, restore_ops

    if reader is None:
        return [], {}
    stored = reader.get_variable_to_shape_map()
    shapes = {}
    for name, op in variables.items():
        shape = tf.TensorShape(op.get_attr("shape")) if "shape" in op.node_def.attr else tf.TensorShape(None)
        shapes[name] = shape.as_list() if shape.rank is not None else None
    parts = partitions(shapes, stored)
    with g.as_default():
        return restore_ops({n: op for n, op in variables.items() if n in stored or n in parts}, reader, parts)


RUN_TIMEOUT_S = 300.0  # a batch of a real model takes seconds; 600 s made a looping graph's run 10.7 min


def bounded_run(sess, fetches, feeds, where: str):
    """``sess.run`` with a deadline (``KFREEZE_TIME_LIMIT_S``, default 300 s a batch): a graph whose
    loop does not end (a while loop of allowed ops counting to 2^62) stops with one line."""
    from kfreeze import child
    from kfreeze.errors import KfreezeError

    limit = child.time_bound(RUN_TIMEOUT_S)
    options = tf.compat.v1.RunOptions(timeout_in_ms=int(limit * 1000))
    try:
        return sess.run(fetches, feeds, options=options)
    except tf.errors.DeadlineExceededError:
        raise KfreezeError(where, f"running the graph did not finish within {limit:.0f} s (a loop that does not "
                           "end?)", "KFREEZE_TIME_LIMIT_S sets another bound if the model is that slow") from None
    except tf.errors.OpError as e:  # InvalidArgumentError (a damaged constant PNG, a bad permutation), OOM...
        raise KfreezeError(where, op_error(e), "the graph cannot run on verify's inputs; look at that node "
                           "(kfreeze show), or give real inputs in verify.data") from None


def op_error(e) -> str:
    """One sentence from TensorFlow's multi-line run error: the node and TF's own reason."""
    node = getattr(getattr(e, "node_def", None), "name", "") or ""
    skip = ("Graph execution error", "Detected at node", "Node:", "[[", "defined at", "File ")
    lines = [ln.strip() for ln in str(getattr(e, "message", e)).splitlines()
             if ln.strip() and not ln.strip().startswith(skip)]
    reason = lines[0][:300] if lines else type(e).__name__
    return (f"running the graph failed at node '{node}' ({type(e).__name__}): {reason}" if node
            else f"running the graph failed ({type(e).__name__}): {reason}")


def fixed_batch(shapes) -> int | None:
    """The batch a graph's fed tensors fix (their first dimension), or None when it is free, or when
    they fix different ones (then the first dimension is not a common batch: ``fixed_batches``)."""
    found = set(fixed_batches(shapes))
    return found.pop() if len(found) == 1 else None


def fixed_batches(shapes) -> list[int]:
    """Each fed tensor's fixed first dimension, in order (a free one or a scalar has none)."""
    found = []
    for shape in shapes:
        shape = tf.TensorShape(shape)
        if shape.rank and shape[0] is not None:
            found.append(int(shape[0]))
    return found


def run_keras(model, feeds: dict[str, np.ndarray], input_names: list[str], output_names: list[str]) -> dict[str, np.ndarray]:
    from kfreeze.keras_io import input_structure
    structure = input_structure(model)
    batch = fixed_batch(tuple(t.shape) for t in tf.nest.flatten(structure))
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
    layers: dict[str, str] | None = None  # candidates -> the layer name net.forward was called with


def opencv_layer(graph: graph_pb2.GraphDef, output: str) -> str:
    """The OpenCV layer names that may compute ``output``, as 'a|b', best first.

    First the name ``kfreeze.opencv_names.layer_name`` derives from OpenCV's importer
    rules; then, for graphs those rules do not cover, the op behind the output's
    Identities and the MatMul or conv a bias add after it may be fused into. The
    child process calls ``net.forward`` with the first its network has, and says which.
    """
    from kfreeze import opencv_names

    by_name = {n.name: n for n in graph.node}
    name = output.split(":")[0]
    while name in by_name and by_name[name].op == "Identity" and by_name[name].input:
        name = by_name[name].input[0].split(":")[0]
    chain = [opencv_names.layer_name(graph, output), name]
    node = by_name.get(name)
    if node is not None and node.op in ("BiasAdd", "Add", "AddV2") and node.input:
        chain.append(node.input[0].split(":")[0])
    return "|".join(dict.fromkeys(c for c in chain if c))


# TF while-loop ops (v1 control flow and functional): OpenCV's TF importer has no loops.
LOOP_OPS = {"While", "StatelessWhile", "Enter", "Exit", "NextIteration", "LoopCond"}


def opencv_problem(error: str | None, graph: graph_pb2.GraphDef) -> str | None:
    """What a user reads when OpenCV could not run the graph: one plain sentence.

    The raw reason (OpenCV's own words, e.g. an assertion in ``removePhaseSwitches``)
    stays in the metrics' ``opencv_error``; ``opencv_failure`` adds it under ``--debug``.
    """
    if error is None:
        return None
    if any(n.op in LOOP_OPS for n in graph.node):
        return ("OpenCV's TF importer cannot run this graph: recurrent loops are not supported by OpenCV dnn "
                "(the TF graph is fine: deploy it with TensorFlow)")
    return f"OpenCV could not run this graph: {error}"


def opencv_failure(metrics: dict) -> str:
    """verify's metrics -> the line to print for a failed OpenCV run (the raw reason too with --debug)."""
    error = metrics.get("opencv_error")
    plain = metrics.get("opencv_problem") or f"OpenCV could not run this graph: {error}"
    return f"{plain} [OpenCV: {error}]" if os.environ.get("KFREEZE_DEBUG") and error not in plain else plain


def run_opencv(graph_path: str | Path, feeds: dict[str, np.ndarray], outputs: list[str],
               batch: int | None = None, timeout: float = OPENCV_TIMEOUT_S, layout: str = "NCHW") -> OpenCVResult:
    """``outputs`` are OpenCV layer candidates (see ``opencv_layer``); results are keyed by them.
    A ``.onnx`` file is read with ``readNetFromONNX``; ``layout`` NHWC feeds it NHWC arrays as they are.
    OpenCV runs in a child bounded in memory: a graph that makes it allocate without bound (a
    Bidirectional LSTM in OpenCV 4.6) becomes a recorded reason."""
    from kfreeze import child

    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inp, **feeds)
        # Run as a script, not '-m kfreeze.verify.opencv_child': that imports this package, and
        # with it TensorFlow (about 8 s), in a child that needs only numpy and cv2.
        cmd = [sys.executable, str(Path(__file__).with_name("opencv_child.py")), str(graph_path), str(inp), str(out),
               ",".join(feeds), ",".join(outputs), str(batch or 0), layout]
        memory = child.memory_bound(Path(graph_path).stat().st_size + sum(v.nbytes for v in feeds.values()), 8)
        done = child.run(cmd, what="OpenCV", timeout=child.time_bound(timeout), memory=memory)
        if done.problem:
            return OpenCVResult(None, done.problem)
        data = np.load(out)
        return OpenCVResult({o: data[o] for o in outputs}, None,
                            dict(zip(outputs, (str(x) for x in data[LAYERS_KEY]))))


DEFAULT_TF_TIMEOUT_S = 600


def run_default_tf(graph_path: str | Path, feeds: dict[str, np.ndarray], outputs: list[str],
                   batch: int | None = None) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """The graph in a TensorFlow process with TF's defaults (oneDNN on, a session's own Grappler,
    every core), as a deployed program runs it: (outputs, None) or (None, the reason it failed).
    kfreeze's own processes pin TensorFlow (``kfreeze.pin_tensorflow``) for repeatable numbers;
    this child gets the environment without those switches."""
    import kfreeze
    from kfreeze import child

    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inp, **feeds)
        cmd = [sys.executable, str(Path(__file__).with_name("tf_default_child.py")), str(graph_path), str(inp),
               str(out), ",".join(outputs), str(batch or 0)]
        pinned = ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA", kfreeze.PINNED)
        env = {k: v for k, v in os.environ.items() if k not in pinned}
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"  # quiet; not a numeric switch
        memory = child.memory_bound(Path(graph_path).stat().st_size + sum(v.nbytes for v in feeds.values()))
        done = child.run(cmd, what="TensorFlow (default configuration)", timeout=child.time_bound(DEFAULT_TF_TIMEOUT_S),
                         memory=memory, env=env)
        if done.problem:
            return None, done.problem
        with np.load(out) as data:
            return {o: data[o] for o in outputs}, None


def tensor_name(name: str) -> str:
    return name if ":" in name else f"{name}:0"


def session_config():
    return tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
