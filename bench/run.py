"""kfreeze benchmark on the keras.applications zoo: graphs, parity, latency against peer runtimes.

    python bench/run.py                      # the default set -> bench/results.json, bench/results.md
    python bench/run.py --quick              # MobileNetV2 + ResNet50, fewer latency runs
    python bench/run.py --models ResNet50,VGG16 --out /tmp/bench

Each model runs in fresh child processes (one per phase), so a crash is a recorded result and
peak RSS is the phase's own:

  keras      build the model (bench/zoo.py: weights=None, seed 0, trained-looking BatchNorm
             statistics, logits out), save it with kfreeze's convert code, seeded inputs, Keras logits
  naive      TF's own path, timed: load + trace + convert_variables_to_constants_v2 + Grappler;
             then the baselines on that frozen graph: optimize_for_inference, the TransformGraph
             seed recipe (kfreeze.optimize.graph.transform), Grappler-only (kfreeze.optimize.passes.grappler)
  pipeline   kfreeze's stages as `dvc repro` runs them (kfreeze.commands.convert ... verify), each in
             its own process: wall time of the stage call and the process's peak RSS; then the
             optimize stage again on the same frozen graph with opencv: true and precision: float16
  peers      the peer runtimes' own converters: tf2onnx 1.17 on the naive frozen graph -> model.onnx,
             the TFLite (LiteRT) converter on the Keras model -> model.tflite
  targets    kfreeze's own targets from optimized.pb: tflite at precision int8 (calibrated on CALIBRATION
             seeded inputs that are not the parity inputs) and openvino (IR, float32 weights)
  eval       parity of every graph vs the Keras logits (relative error), OpenCV in a grandchild per
             graph (also the crash pre-check for the latency phases), FLOPs, the TF session's fusion share
  latency1   batch-1 latency of Keras, kfreeze (TF session), ONNX Runtime, TFLite, TFLite int8,
  latency2   OpenVINO (f32) and OpenCV, interleaved in one process, at 1 and 2 threads (bench/runtimes.py)
  tfdefault1 Keras and the kfreeze session again, in a process with TensorFlow's defaults (oneDNN on,
             nothing pinned: what a program that loads optimized.pb gets), 1 thread
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from zoo import MODELS  # noqa: E402

DEFAULT = list(MODELS)
QUICK = ["MobileNetV2", "ResNet50"]
SEED = 0
SAMPLES = 8                  # seeded inputs for parity (run one at a time: the graphs have batch 1)
LATENCY_RUNS = 30
THREADS = (1, 2)
SEED_RECIPE = ("strip_unused_nodes fold_constants(ignore_errors=true) fold_batch_norms "
               "fold_old_batch_norms sort_by_execution_order")
# what decides TensorFlow's kernels (kfreeze/__init__.py sets both unless told otherwise)
TF_ENV = ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA")
STAGES = ("convert", "export", "freeze", "optimize", "verify")
PHASES = ("keras", "naive", "pipeline", "peers", "targets", "eval") + tuple(f"latency{t}" for t in THREADS) + (
    "tfdefault1",)
CALIBRATION = 16             # seeded inputs (seed SEED + 1) the int8 tflite file is calibrated on
# kfreeze's switches, left out of the tfdefault phase's environment (as verify's default-TF child does)
PINNED_ENV = ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA", "KFREEZE_PINNED", "KFREEZE_CPU_ISA")


# ---------------------------------------------------------------------------- children

def _rss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _write(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _error(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())[:300]


def _key_name(work: Path) -> str:
    """The params.yaml entry for the model: lower case, as model names must be."""
    return work.name.lower()


def _model_file(work: Path) -> Path:
    """The model's source, where a project keeps it: ``work`` is the phase's project root."""
    path = work / "models" / _key_name(work) / "model.keras"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _samples(work: Path):
    """The seeded inputs and the Keras logits the keras phase wrote."""
    import numpy as np
    x = next(iter(dict(np.load(work / "inputs.npz")).values()))
    reference = next(iter(dict(np.load(work / "reference.npz")).values()))
    return x, reference


def phase_keras(name: str, size: int, work: Path) -> dict:
    import numpy as np

    import zoo
    from kfreeze import export as export_lib
    from kfreeze import keras_io
    from kfreeze.verify import TensorInfo, make_inputs, run_keras

    model = zoo.build(name, size, SEED)
    keras_io.save_canonical(model, _model_file(work))
    in_name = export_lib.input_names(model)[0]
    out_name = export_lib.output_layer_names(model)[0]
    feeds = make_inputs([TensorInfo(in_name, "float32", (1, size, size, 3))], SAMPLES, SEED)
    reference = run_keras(model, feeds, [in_name], [out_name])
    np.savez(work / "inputs.npz", **feeds)
    np.savez(work / "reference.npz", **reference)
    logits = reference[out_name].astype(np.float64)
    return {"input": in_name, "output": out_name, "params": int(model.count_params()),
            "weight_bytes": int(sum(np.prod(w.shape) * 4 for w in model.weights)),
            # how much the logits depend on the input: spread across inputs / spread across classes
            "logits_max_abs": float(np.max(np.abs(logits))),
            "logits_input_dependence": float(np.mean(np.std(logits, axis=0)) / np.mean(np.std(logits, axis=1))),
            "rss_mb": _rss_mb()}


def phase_naive(name: str, size: int, work: Path) -> dict:
    from kfreeze import graphio, keras_io
    from kfreeze.optimize import Context, InputSpec, passes
    from kfreeze.optimize.graph import transform as transform_graph
    from kfreeze.tfenv import tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    from tensorflow.python.tools import optimize_for_inference_lib

    t0 = time.perf_counter()
    model = keras_io.load_model(_model_file(work))
    spec = tf.TensorSpec([1, size, size, 3], tf.float32, name="input")
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(concrete).graph.as_graph_def()
    t1 = time.perf_counter()
    in_name = next(n.name for n in frozen.node if n.op == "Placeholder")
    out_name = concrete.outputs[0].op.name
    ctx = Context((InputSpec(in_name),), (out_name,))
    grappled = passes.grappler(frozen, ctx)
    t2 = time.perf_counter()
    result = {"input": in_name, "output": out_name, "time_naive_s": t2 - t0,
              "time_naive_freeze_s": t1 - t0, "time_naive_grappler_s": t2 - t1, "rss_mb": _rss_mb()}
    graphio.write_graph(frozen, work / "naive_frozen.pb")
    graphio.write_graph(grappled, work / "grappler.pb")

    def ofi():
        return optimize_for_inference_lib.optimize_for_inference(frozen, [in_name], [out_name],
                                                                 tf.float32.as_datatype_enum)

    def transform():
        return transform_graph(frozen, [in_name], [out_name], SEED_RECIPE)

    graphs = {"frozen": frozen, "grappler": grappled}
    for key, fn in (("ofi", ofi), ("tg", transform)):
        t = time.perf_counter()
        try:
            graphs[key] = fn()
        except Exception as e:  # a baseline that fails is a result, not a dead benchmark
            result[f"error_{key}"] = " ".join(str(e).split())[:200]
            continue
        result[f"time_{key}_s"] = time.perf_counter() - t
        graphio.write_graph(graphs[key], work / f"{key}.pb")
    for key, g in graphs.items():
        result[f"ops_{key}"] = len(g.node)
        result[f"bytes_{key}"] = len(graphio.graph_bytes(g))
    return result


def phase_stage(stage: str, key: str, work: Path) -> dict:
    """One stage as `dvc repro` runs it, in this (fresh) process: its wall time and peak RSS.
    A stage's one-line error ends the process with its exit code."""
    import typer

    from kfreeze import commands

    from kfreeze import keras_io  # noqa: F401  (TensorFlow and Keras imported before the clock starts)

    os.chdir(work)  # the project root, as for `dvc repro`: sources in models/<name>/, outputs in build/
    kwargs = {"params_file": "params.yaml", "build": Path("build")}
    if stage == "verify":
        kwargs["metrics"] = Path("metrics")
    t = time.perf_counter()
    try:
        getattr(commands, stage)(key, **kwargs)
    except typer.Exit as e:
        raise SystemExit(e.exit_code) from None
    return {"time_s": time.perf_counter() - t, "rss_mb": _rss_mb()}


def child_env(extra_env: dict | None = None, drop: tuple[str, ...] = ()) -> dict:
    """This process's environment for a child: ``drop`` removed, ``extra_env`` added, the repo importable."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **(extra_env or {})}


def _child(args: list[str], timeout: float, extra_env: dict | None = None,
           drop: tuple[str, ...] = ()) -> tuple[int | None, str]:
    """This script as a child process: (exit code or None on timeout, last stderr line)."""
    env = child_env(extra_env, drop)
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    return proc.returncode, (lines[-1] if lines else f"exit {proc.returncode}")[:300]


def phase_pipeline(name: str, size: int, work: Path, timeout: float, run_verify: bool) -> dict:
    import shutil

    import yaml

    from kfreeze import graphio

    key = _key_name(work)
    variants = {"ours": (key, {}), "ours_opencv": (f"{key}_opencv", {"opencv": True}),
                "ours_fp16": (f"{key}_fp16", {"precision": "float16"})}
    # every key DVC tracks must be present: the defaults, as params.yaml writes them
    entry = {"arch": None, "layout": None, "theano_kernels": None,
             "custom_objects": [], "trust_code": False, "inputs": [], "outputs": [],
             "input_shape": [1, size, size, 3], "opencv": False, "precision": "float32"}
    for vkey, _ in variants.values():  # each entry's source inside its own models/<name>/, as params requires
        source = work / "models" / vkey / "model.keras"
        if vkey != key and not source.exists():
            source.parent.mkdir(parents=True, exist_ok=True)
            os.link(_model_file(work), source)
    (work / "params.yaml").write_text(yaml.safe_dump(
        {"models": {k: {"source": f"models/{k}/model.keras", **entry, **extra} for k, extra in variants.values()},
         "graphs": {}}))
    result: dict = {}

    def stage(stage_name: str, vkey: str, tag: str) -> bool:
        rc, err = _child(["--phase", "stage", "--stage", stage_name, "--key", vkey, "--work", str(work)], timeout)
        if rc != 0:
            result.setdefault("stage_errors", {})[tag] = err
            return False
        data = json.loads((work / f"stage_{vkey}_{stage_name}.json").read_text())
        result[f"time_{tag}_s"], result[f"rss_{tag}_mb"] = data["time_s"], data["rss_mb"]
        return True

    for stage_name in STAGES:
        if (stage_name != "verify" or run_verify) and not stage(stage_name, key, stage_name):
            if stage_name != "verify":
                return result  # a later stage needs this one's output
    result["time_pipeline_s"] = sum(result[f"time_{s}_s"] for s in ("export", "freeze", "optimize"))
    out = work / "build" / key
    names = graphio.read_json(out / "names.json")
    stats = graphio.read_json(out / "passes.json")
    result.update({"input": names["inputs"][0], "output": names["outputs"][0],
                   "ops_frozen": len(graphio.read_graph(out / "frozen.pb").node),
                   "passes": {s["pass"]: s["ops_before"] - s["ops_after"]
                              for s in stats if s["ops_before"] != s["ops_after"]}})
    for variant, (vkey, _) in variants.items():
        if vkey != key:  # the optimize stage again, on the same frozen graph, with the variant's params
            (work / "build" / vkey).mkdir(parents=True, exist_ok=True)
            for f in ("frozen.pb", "names.json", "signature.json"):
                shutil.copyfile(out / f, work / "build" / vkey / f)
            if not stage("optimize", vkey, f"optimize_{variant}"):
                continue
        graph = graphio.read_graph(work / "build" / vkey / "optimized.pb")
        result[f"ops_{variant}"] = len(graph.node)
        result[f"bytes_{variant}"] = len(graphio.graph_bytes(graph))
    return result


def phase_peers(name: str, size: int, work: Path) -> dict:
    """The peers' own converters, each timed; a converter that fails is a result."""
    from kfreeze import graphio, keras_io
    from kfreeze.tfenv import tf

    result: dict = {}
    naive = work / "naive.json"
    t = time.perf_counter()
    try:
        import tf2onnx

        if naive.exists():  # the same frozen graph TF's own path gives (what from_keras builds too)
            info = json.loads(naive.read_text())
            proto, _ = tf2onnx.convert.from_graph_def(graphio.read_graph(work / "naive_frozen.pb"),
                                                      input_names=[info["input"] + ":0"],
                                                      output_names=[info["output"] + ":0"], opset=15)
        else:
            spec = (tf.TensorSpec([1, size, size, 3], tf.float32, name="input"),)
            proto, _ = tf2onnx.convert.from_keras(keras_io.load_model(_model_file(work)), input_signature=spec,
                                                  opset=15)
        (work / "model.onnx").write_bytes(proto.SerializeToString())
        result["time_onnx_s"] = time.perf_counter() - t
        result["onnx_ops"] = len(proto.graph.node)
    except Exception as e:  # noqa: BLE001
        result["error_onnx"] = _error(e)
    t = time.perf_counter()
    try:
        # from_keras_model freezes the weights; from_concrete_functions leaves Keras 3 variables as
        # READ_VARIABLE ops that the interpreter runs uninitialized (NaN logits)
        converter = tf.lite.TFLiteConverter.from_keras_model(keras_io.load_model(_model_file(work)))
        (work / "model.tflite").write_bytes(converter.convert())
        result["time_tflite_s"] = time.perf_counter() - t
    except Exception as e:  # noqa: BLE001
        result["error_tflite"] = _error(e)
    result["rss_mb"] = _rss_mb()
    return result


def phase_targets(name: str, size: int, work: Path) -> dict:
    """kfreeze's tflite target at precision int8 and its openvino target, from the pipeline's optimized.pb,
    written where the target stages write them (build/<key>/tflite/, build/<key>/openvino/), each timed."""
    from kfreeze import graphio
    from kfreeze import targets as targets_lib
    from kfreeze.optimize.context import placeholder_name
    from kfreeze.targets import openvino, tflite
    from kfreeze.verify import TensorInfo, make_inputs

    out = work / "build" / _key_name(work)
    names = graphio.read_json(out / "names.json")
    inputs, outputs = [placeholder_name(i) for i in names["inputs"]], names["outputs"]
    graph = graphio.read_graph(out / "optimized.pb")
    # held out: parity is measured on the SAMPLES inputs of seed SEED, calibration uses seed SEED + 1
    rows = make_inputs([TensorInfo(inputs[0], "float32", (1, size, size, 3))], CALIBRATION, SEED + 1)
    builds = {"tflite_int8": ("tflite", lambda: tflite.build(graph, inputs, outputs, "bench", precision="int8",
                                                             calibration=(rows, True))),
              "openvino": ("openvino", lambda: openvino.build(graph, inputs, outputs, "bench", precision="float32"))}
    result: dict = {}
    for key, (target, build) in builds.items():
        t = time.perf_counter()
        try:
            sibling = build()
        except Exception as e:  # noqa: BLE001  (a target that does not convert is a result)
            result[f"error_{key}"] = _error(e)
            continue
        result[f"time_{key}_s"] = time.perf_counter() - t
        targets_lib.write(out, target, sibling)
        result[f"bytes_{key}"] = len(sibling.data) + sum(len(v) for v in sibling.others.values())
        if key == "tflite_int8":
            result["tflite_int8_float_ops"] = sibling.signature.get("float_ops")
    result["rss_mb"] = _rss_mb()
    return result


def _target_files(work: Path) -> dict:
    """The files the targets phase wrote: {runtime: path}."""
    out = work / "build" / _key_name(work)
    return {"tflite_int8": out / "tflite" / "model.tflite", "openvino": out / "openvino" / "model.xml"}


def _fusion(graph, inp: str, out: str, x) -> dict:
    """Conv/matmul ops a TF session executes fused (``kfreeze.optimize.fusion``)."""
    from kfreeze.optimize.fusion import runtime_fusion
    return runtime_fusion(graph, {inp + ":0": x}, [out + ":0"])


def phase_eval(name: str, size: int, work: Path, opencv: bool) -> dict:
    import graphstats
    import runtimes
    import zoo
    from kfreeze import graphio
    from kfreeze.verify import opencv_layer, run_opencv

    ours = json.loads((work / "pipeline.json").read_text())
    naive = json.loads((work / "naive.json").read_text()) if (work / "naive.json").exists() else None
    x, reference = _samples(work)
    key = _key_name(work)
    graphs = {variant: (work / "build" / vkey / "optimized.pb", ours["input"], ours["output"])
              for variant, vkey in (("ours", key), ("ours_opencv", f"{key}_opencv"), ("ours_fp16", f"{key}_fp16"))}
    if naive:
        graphs.update({k: (work / f"{k}.pb", naive["input"], naive["output"]) for k in ("grappler", "ofi", "tg")})
    result: dict = {}
    for gkey, (path, inp, out) in graphs.items():
        if not path.exists():
            continue
        graph = graphio.read_graph(path)
        try:
            got = runtimes.run_samples(runtimes.tf_session_runner(path, inp, out, 1), x)
            result[f"parity_{gkey}"] = zoo.relative_error(got, reference)
        except Exception as e:  # a baseline that TF cannot run is a result too
            result[f"parity_{gkey}"] = None
            result[f"error_{gkey}"] = _error(e)
        if gkey in ("ours", "grappler"):
            try:
                result[f"fusion_{gkey}"] = _fusion(graph, inp, out, x[:1])
            except Exception as e:  # noqa: BLE001
                result[f"error_fusion_{gkey}"] = _error(e)
        if gkey == "ours":
            result["flops"] = graphstats.flops(graph)
        if opencv and gkey in ("ours", "ours_opencv", "ours_fp16", "grappler"):
            layer = opencv_layer(graph, out)
            ocv = run_opencv(path, {inp: x}, [layer], batch=1)
            if ocv.error is None:
                result[f"opencv_{gkey}"] = zoo.relative_error(ocv.outputs[layer], reference)
                result[f"opencv_layer_{gkey}"] = layer
            else:
                result[f"opencv_{gkey}"] = None
                result[f"opencv_error_{gkey}"] = ocv.error
    files = _target_files(work)
    peers = {"onnxruntime": (work / "model.onnx", runtimes.onnxruntime_runner),
             "tflite": (work / "model.tflite", runtimes.tflite_runner),
             "tflite_int8": (files["tflite_int8"], runtimes.tflite_runner),
             "openvino": (files["openvino"], runtimes.openvino_runner)}
    for peer, (path, make) in peers.items():
        if path.exists():
            try:
                result[f"parity_{peer}"] = zoo.relative_error(runtimes.run_samples(make(path, 1), x), reference)
            except Exception as e:  # noqa: BLE001
                result[f"parity_{peer}"] = None
                result[f"error_{peer}"] = _error(e)
    result["rss_mb"] = _rss_mb()
    return result


def phase_latency(work: Path, threads: int, runs: int, tf_default: bool = False) -> dict:
    """All runtimes in this one process at ``threads``; OpenCV only on a graph it ran in eval's child.
    ``tf_default``: Keras and the kfreeze session only (the process has TensorFlow's defaults)."""
    import runtimes

    runtimes.configure_process(threads)
    ours = json.loads((work / "pipeline.json").read_text())
    evaluated = json.loads((work / "eval.json").read_text())
    x, _ = _samples(work)
    one = x[:1]
    key = _key_name(work)
    makers = {
        "keras": lambda: runtimes.keras_runner(_model_file(work)),
        "kfreeze": lambda: runtimes.tf_session_runner(work / "build" / key / "optimized.pb", ours["input"],
                                                      ours["output"], threads),
    }
    if (work / "model.onnx").exists():
        makers["onnxruntime"] = lambda: runtimes.onnxruntime_runner(work / "model.onnx", threads)
    if (work / "model.tflite").exists():
        makers["tflite"] = lambda: runtimes.tflite_runner(work / "model.tflite", threads)
    files = _target_files(work)
    if files["tflite_int8"].exists():
        makers["tflite_int8"] = lambda: runtimes.tflite_runner(files["tflite_int8"], threads)
    if files["openvino"].exists():
        makers["openvino"] = lambda: runtimes.openvino_runner(files["openvino"], threads)
    result: dict = {"threads": threads, "tf_default": tf_default}
    if tf_default:
        makers = {k: v for k, v in makers.items() if k in ("keras", "kfreeze")}
    for variant, vkey in (() if tf_default else (("ours", key), ("ours_opencv", f"{key}_opencv"))):
        if evaluated.get(f"opencv_{variant}") is not None:  # loaded and ran in a child: safe here
            graph, layer = work / "build" / vkey / "optimized.pb", evaluated[f"opencv_layer_{variant}"]
            makers["opencv"] = lambda g=graph, la=layer: runtimes.opencv_runner(g, la, threads)
            result["opencv_graph"] = variant
            break
    runners = {}
    for name, make in makers.items():
        try:
            runners[name] = make()
        except Exception as e:  # noqa: BLE001
            result.setdefault("errors", {})[name] = _error(e)
    result["tf_eager_intra_op_threads"] = runtimes.eager_threads()  # what Keras ran with, read back
    result["tf_env"] = {k: os.environ.get(k) for k in TF_ENV}
    result["runtimes"] = runtimes.stats(runtimes.interleaved(runners, one, runs))
    result["rss_mb"] = _rss_mb()
    return result


def child_main(args) -> int:
    if args.phase != "tfdefault1":  # pinned as kfreeze's own processes are (the ISA: KFREEZE_CPU_ISA)
        import kfreeze
        kfreeze.pin_tensorflow()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.phase == "stage":
        _write(work / f"stage_{args.key}_{args.stage}.json", phase_stage(args.stage, args.key, work))
        return 0
    if args.phase == "keras":
        data = phase_keras(args.model, args.size, work)
    elif args.phase == "naive":
        data = phase_naive(args.model, args.size, work)
    elif args.phase == "pipeline":
        data = phase_pipeline(args.model, args.size, work, args.timeout, not args.no_verify)
    elif args.phase == "peers":
        data = phase_peers(args.model, args.size, work)
    elif args.phase == "targets":
        data = phase_targets(args.model, args.size, work)
    elif args.phase == "eval":
        data = phase_eval(args.model, args.size, work, not args.no_opencv)
    elif args.phase == "tfdefault1":
        data = phase_latency(work, 1, args.runs, tf_default=True)
    else:
        data = phase_latency(work, int(args.phase.removeprefix("latency")), args.runs)
    _write(work / f"{args.phase}.json", data)
    return 0


# ---------------------------------------------------------------------------- parent

def _key(phase: str, key: str) -> str:
    if key == "rss_mb":  # every phase's own peak: keras_rss_mb, naive_rss_mb, ...
        return f"{phase}_rss_mb"
    shared = ("ops_", "bytes_", "time_", "parity_", "opencv_", "keras_", "error_", "params", "passes", "rss_",
              "fusion_", "flops", "weight_", "logits_", "onnx_", "stage_")
    return key if key.startswith(shared) else f"{phase}_{key}"


def latency_key(data: dict) -> str:
    """row['latency']'s key for a latency phase's data: the thread count, '1_tf_default' for tfdefault1."""
    return f"{data['threads']}_tf_default" if data.get("tf_default") else str(data["threads"])


def _merge(row: dict, phase: str, data: dict) -> None:
    if phase.startswith(("latency", "tfdefault")):
        row.setdefault("latency", {})[latency_key(data)] = data
        return
    for k, v in data.items():
        row[_key(phase, k)] = v


def run_model(name: str, size: int, work: Path, args, runs: int) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    row: dict = {"model": name, "size": size}
    for phase in PHASES:
        if args.reuse and (work / f"{phase}.json").exists():
            _merge(row, phase, json.loads((work / f"{phase}.json").read_text()))
            continue
        cmd = ["--phase", phase, "--model", name, "--size", str(size), "--work", str(work), "--runs", str(runs),
               "--timeout", str(args.timeout)] + (["--no-opencv"] if args.no_opencv else []) + \
              (["--no-verify"] if args.no_verify else [])
        t = time.perf_counter()
        # latency: TensorFlow's GEMM at the instruction set chosen (kfreeze itself pins AVX2; see --tf-isa);
        # tfdefault1: none of kfreeze's switches
        extra = {"KFREEZE_CPU_ISA": args.tf_isa} if phase.startswith("latency") else None
        drop = PINNED_ENV if phase == "tfdefault1" else ()
        rc, err = _child(cmd, args.timeout * (len(STAGES) + 2 if phase == "pipeline" else 1), extra, drop)
        row[f"wall_{phase}_s"] = time.perf_counter() - t
        if rc != 0:
            row.setdefault("errors", {})[phase] = err
            print(f"  {name}: phase {phase} failed: {err}", flush=True)
            if phase in ("keras", "pipeline"):
                break
            continue
        data = json.loads((work / f"{phase}.json").read_text())
        _merge(row, phase, data)
        print(f"  {name}: {phase} done in {row[f'wall_{phase}_s']:.1f} s", flush=True)
        if phase == "pipeline" and "input" not in data:  # a stage before verify failed: no graph to measure
            print(f"  {name}: stopped after {data.get('stage_errors')}", flush=True)
            break
    return row


def machine() -> dict:
    import graphstats

    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    versions = {}
    quiet = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for mod, dist in (("tensorflow", None), ("keras", None), ("cv2", None), ("numpy", None),
                      ("onnxruntime", None), ("tf2onnx", None), ("ai_edge_litert", "ai-edge-litert"),
                      ("openvino", "openvino")):
        expr = f"importlib.metadata.version('{dist}')" if dist else f"{mod}.__version__"
        try:
            out = subprocess.run([sys.executable, "-c", f"import importlib.metadata, {mod}; print({expr})"],
                                 capture_output=True, text=True, timeout=120, env=quiet)
            versions[mod] = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else None
        except Exception:  # noqa: BLE001
            versions[mod] = None
    sgemm = subprocess.run([sys.executable, "-c", "import graphstats; print(graphstats.sgemm_gflops())"],
                           capture_output=True, text=True, timeout=300, cwd=BENCH,
                           env={**quiet, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    p = graphstats.peak()
    saved = os.environ.copy()  # what a stage child runs under once it pins TensorFlow (kfreeze.pin_tensorflow)
    try:
        import kfreeze
        kfreeze.pin_tensorflow()
        pinned = {k: os.environ.get(k) for k in TF_ENV}
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {"tf_env": pinned,
            "cpu": p["model_name"], "cores": os.cpu_count(), "memory_gb": mem, "os": platform.platform(),
            "python": platform.python_version(), "gpu": "none (CPU only)", "versions": versions,
            "peak": p, "sgemm_1thread_gflops": float(sgemm.stdout.strip()) if sgemm.returncode == 0 else None,
            "date": time.strftime("%Y-%m-%d")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help=f"comma-separated subset of {', '.join(MODELS)}")
    ap.add_argument("--quick", action="store_true", help=f"{', '.join(QUICK)} with {LATENCY_RUNS // 2} latency runs")
    ap.add_argument("--size", type=int, help="override every model's input size")
    ap.add_argument("--out", default=str(BENCH), help="where results.json and results.md go (default: bench/)")
    ap.add_argument("--work", help="scratch directory (default: a fresh temp dir)")
    ap.add_argument("--no-opencv", action="store_true", help="skip the OpenCV runs")
    ap.add_argument("--no-verify", action="store_true", help="skip the verify stage (the slowest)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per phase (per stage in pipeline)")
    ap.add_argument("--reuse", action="store_true", help="with --work: keep the phases already measured there")
    ap.add_argument("--tf-isa", default="ALL",
                    help="oneDNN instruction set for TensorFlow in the latency phases (KFREEZE_CPU_ISA): ALL, "
                         "TF's own default, lets its GEMM use AVX-512; AVX2 is what kfreeze pins for its stages")
    ap.add_argument("--runs", type=int, help=f"latency iterations per runtime (default {LATENCY_RUNS})")
    ap.add_argument("--phase", choices=PHASES + ("stage",), help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.phase:
        sys.path.insert(0, str(ROOT))
        return child_main(args)

    import tempfile

    import report
    names = args.models.split(",") if args.models else (QUICK if args.quick else DEFAULT)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    runs = args.runs or (LATENCY_RUNS // 2 if args.quick else LATENCY_RUNS)
    work = Path(args.work or tempfile.mkdtemp(prefix="kfreeze-bench-")).resolve()
    info = machine()
    rows = []
    for name in names:
        size = args.size or MODELS[name]
        print(f"{name} ({size}x{size})", flush=True)
        rows.append(run_model(name, size, work / name, args, runs))
    summary = report.summarize(rows, info)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shown = sys.argv[1:] if argv is None else argv
    _write(out / "results.json", {"machine": info, "summary": summary, "models": rows, "argv": shown,
                                  "seed": SEED, "samples": SAMPLES, "latency_runs": runs})
    (out / "results.md").write_text(report.markdown(rows, summary, info, shown, runs))
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
