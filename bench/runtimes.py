"""Batch-1 latency of one model in up to seven runtimes, measured interleaved in one process.

Each runtime is a callable ``run(x) -> output`` for one NHWC float32 batch (the same callables
give eval's parity figures, so what is timed is what was checked). The
measurement goes round-robin: every iteration runs every runtime once, in an order rotated
each iteration, so a burst of load from elsewhere on the machine hits all of them alike, and
the per-iteration ratio to Keras (both timed within the same iteration) cancels most of it.

Threads: one process per thread count, because TensorFlow's eager runtime (which runs the
Keras ``tf.function``) fixes its thread pools once per process. In that process every runtime
gets the same count: TF session ``intra_op_parallelism_threads``, eager
``set_intra_op_parallelism_threads``, ONNX Runtime ``intra_op_num_threads``, LiteRT
``num_threads`` (XNNPACK), OpenVINO ``INFERENCE_NUM_THREADS`` (one stream, latency hint, f32 as
kfreeze's openvino target is verified), ``cv2.setNumThreads``; inter-op parallelism is 1 everywhere.
ONNX Runtime's worker threads would otherwise spin-wait after each run and steal the core the
next runtime in the round needs, so its spinning is off (``session.intra_op.allow_spinning=0``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

ORDER = ("keras", "kfreeze", "onnxruntime", "tflite", "tflite_int8", "openvino", "opencv")


def configure_process(threads: int) -> None:
    """Before anything else in the process runs TensorFlow: eager (Keras) thread pools.
    (``kfreeze.tfenv`` sets them to 1 on import, before TF's context starts; this overrides that.)"""
    from kfreeze.tfenv import tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def eager_threads() -> int:
    from kfreeze.tfenv import tf

    return tf.config.threading.get_intra_op_parallelism_threads()


def keras_runner(model_file: Path):
    from kfreeze import keras_io
    from kfreeze.tfenv import tf

    model = keras_io.load_model(model_file)
    fn = tf.function(lambda t: model(t, training=False))
    return lambda x: fn(x).numpy()


def tf_session_runner(graph_file: Path, input_name: str, output_name: str, threads: int):
    from kfreeze import graphio
    from kfreeze.tfenv import tf

    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graphio.read_graph(graph_file), name="")
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1)
    sess = tf.compat.v1.Session(graph=g, config=config)
    fetch, feed = g.get_tensor_by_name(output_name + ":0"), g.get_tensor_by_name(input_name + ":0")
    return lambda x: sess.run(fetch, {feed: x})


def onnxruntime_runner(onnx_file: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def tflite_runner(tflite_file: Path, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(tflite_file), num_threads=threads)  # XNNPACK by default
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]

    def run(x):
        interp.set_tensor(inp, x)
        interp.invoke()
        return interp.get_tensor(out)
    return run


def openvino_runner(xml_file: Path, threads: int):
    """kfreeze's openvino target (model.xml + model.bin) in OpenVINO's CPU plugin at f32: the precision it is
    verified at (the plugin's default on an avx512_bf16 CPU is bf16), one stream, ``threads`` threads."""
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
              "PERFORMANCE_HINT": "LATENCY"}
    compiled = ov.Core().compile_model(str(xml_file), "CPU", config)
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def run(x):
        return np.array(request.infer({0: np.ascontiguousarray(x)})[output])
    return run


def opencv_runner(graph_file: Path, layers: str, threads: int):
    """Only for a graph a child process has loaded and run already: OpenCV can crash the process
    on a graph it does not understand. ``layers`` as ``kfreeze.verify.opencv_layer`` gives them."""
    import cv2

    cv2.setNumThreads(threads)
    net = cv2.dnn.readNetFromTensorflow(str(graph_file))
    names = set(net.getLayerNames())
    layer = next((name for name in layers.split("|") if name in names), None)

    def run(x):
        net.setInput(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # OpenCV takes NCHW
        return net.forward(layer) if layer else net.forward()
    return run


def interleaved(runners: dict, x: np.ndarray, runs: int, warmup: int = 3) -> dict[str, list[float]]:
    """name -> ``runs`` wall times in ms of ``run(x)``, round-robin with the order rotated every iteration."""
    names = [n for n in ORDER if n in runners]
    for _ in range(warmup):
        for name in names:
            runners[name](x)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(runs):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            t = time.perf_counter()
            runners[name](x)
            times[name].append((time.perf_counter() - t) * 1000.0)
    return times


def run_samples(run, x: np.ndarray) -> np.ndarray:
    """``run`` on every sample of ``x`` one at a time (the graphs have batch 1), outputs stacked."""
    return np.concatenate([np.asarray(run(x[i:i + 1])) for i in range(len(x))])


def stats(times: dict[str, list[float]], reference: str = "keras") -> dict[str, dict]:
    """Per runtime: median and quartiles (ms), and the median of the per-iteration ratios to ``reference``."""
    out = {}
    ref = np.asarray(times.get(reference, []))
    for name, ts in times.items():
        a = np.asarray(ts)
        row = {"median_ms": float(np.median(a)), "p25_ms": float(np.percentile(a, 25)),
               "p75_ms": float(np.percentile(a, 75)), "min_ms": float(a.min()), "runs": len(a)}
        if len(ref) == len(a) and len(a):
            row["ratio_to_keras"] = float(np.median(a / ref))
        out[name] = row
    return out
