"""kfreeze optimizer benchmark on the keras.applications zoo (weights=None, seeded).

    python bench/run.py                      # the default set -> bench/results.json, bench/results.md
    python bench/run.py --quick              # MobileNetV2 + ResNet50, fewer repeats (a few minutes)
    python bench/run.py --models ResNet50,VGG16 --out /tmp/bench

Each model runs in fresh child processes (one per phase), so a crash is a recorded
result and peak RSS is the phase's own:

  keras     build the model (seed 0, weights=None), save it with kfreeze's convert code,
            seeded inputs, Keras reference outputs, Keras tf.function latency
  naive     TF's own path, timed: load + trace + convert_variables_to_constants_v2 + Grappler;
            then the baselines on that frozen graph: optimize_for_inference, the TransformGraph
            seed recipe (kfreeze.optimize.graph.transform), Grappler-only (kfreeze.optimize.passes.grappler)
  pipeline  kfreeze's stages, timed: the functions `dvc repro` runs (kfreeze.commands.export,
            freeze, optimize) on a params.yaml written for the model; peak RSS; then the optimize
            stage again on the same frozen graph with opencv: true and precision: float16
  eval      parity of every graph vs Keras in a TF session, TF-session latency of ours,
            OpenCV (in a grandchild process per graph) on ours, ours-opencv, ours-float16, Grappler
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

# name -> input size (each model's own default)
MODELS = {
    "MobileNetV2": 224,
    "ResNet50": 224,
    "EfficientNetB0": 224,
    "DenseNet121": 224,
    "InceptionV3": 299,
    "VGG16": 224,
    "Xception": 299,
}
DEFAULT = list(MODELS)
QUICK = ["MobileNetV2", "ResNet50"]
SEED = 0
SAMPLES = 8                  # seeded inputs for parity (run one at a time: the graphs have batch 1)
LATENCY_RUNS = 20
SEED_RECIPE = ("strip_unused_nodes fold_constants(ignore_errors=true) fold_batch_norms "
               "fold_old_batch_norms sort_by_execution_order")
PARITY_TF = 1e-4
PARITY_OPENCV = 1e-3

# The targets, one table: summary key -> (comparison, bound, how the bound is written).
TARGETS = {
    "ops_ratio": ("<=", 0.9, "0.9"),                     # total ops, kfreeze / Grappler-only
    "parity_max": ("<=", PARITY_TF, "1e-4"),             # worst max abs diff from Keras, TF session
    "opencv_fraction": (">=", 0.9, "90%"),               # models OpenCV loads with parity <= PARITY_OPENCV
    "resnet50_time_ratio": ("<=", 1.5, "1.5"),           # ResNet50 kfreeze time / naive time
    "resnet50_pipeline_rss_mb": ("<=", 3072, "3072 MB"),  # ResNet50 pipeline peak RSS
}


def _target(key: str, value) -> str:
    """'(target <= 0.9): **met**' for ``value`` of summary ``key``."""
    op, bound, shown = TARGETS[key]
    met = value is not None and (value <= bound if op == "<=" else value >= bound)
    return f"(target {op} {shown}): **{'met' if met else 'NOT met'}**"


# ---------------------------------------------------------------------------- children

def _rss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _write(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _median_latency(fn, runs: int) -> float:
    import numpy as np
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1000.0


def _key_name(work: Path) -> str:
    """The params.yaml entry for the model: lower case, as model names must be."""
    return work.name.lower()


def _model_file(work: Path) -> Path:
    """The model's source, where a project keeps it: ``work`` is the phase's project root."""
    path = work / "models" / _key_name(work) / "model.keras"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def phase_keras(name: str, size: int, work: Path, runs: int) -> dict:
    import numpy as np

    from kfreeze import export as export_lib
    from kfreeze import keras_io
    from kfreeze.tfenv import tf
    from kfreeze.verify import TensorInfo, make_inputs, run_keras

    keras = keras_io.keras
    keras.utils.set_random_seed(SEED)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3))
    keras_io.save_canonical(model, _model_file(work))
    in_name = export_lib.input_names(model)[0]
    out_name = export_lib.output_layer_names(model)[0]
    feeds = make_inputs([TensorInfo(in_name, "float32", (1, size, size, 3))], SAMPLES, SEED)
    reference = run_keras(model, feeds, [in_name], [out_name])
    np.savez(work / "inputs.npz", **feeds)
    np.savez(work / "reference.npz", **reference)
    fn = tf.function(lambda x: model(x, training=False))
    one = tf.constant(feeds[in_name][:1])
    latency = _median_latency(lambda: fn(one).numpy(), runs)
    return {"input": in_name, "output": out_name, "params": int(model.count_params()),
            "keras_latency_ms": latency, "rss_mb": _rss_mb()}


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


def _stage(command, key: str, params_file: Path, build: Path) -> None:
    """One stage as `dvc repro` runs it; its one-line error ends the phase."""
    import typer

    try:
        command(key, params_file=str(params_file), build=build)
    except typer.Exit as e:
        raise SystemExit(e.exit_code) from None


def phase_pipeline(name: str, size: int, work: Path) -> dict:
    import shutil

    import yaml

    from kfreeze import commands, graphio

    key = _key_name(work)
    variants = {"ours": (key, {}), "ours_opencv": (f"{key}_opencv", {"opencv": True}),
                "ours_fp16": (f"{key}_fp16", {"precision": "float16"})}
    # every key DVC tracks must be present: the defaults, as params.yaml writes them
    entry = {"arch": None, "layout": None, "theano_kernels": None,
             "custom_objects": [], "trust_code": False, "inputs": [], "outputs": [],
             "input_shape": [1, size, size, 3], "opencv": False, "precision": "float32"}
    os.chdir(work)  # the project root, as for `dvc repro`: sources in models/<name>/, outputs in build/
    params_file = Path("params.yaml")
    for vkey, _ in variants.values():  # each entry's source inside its own models/<name>/, as params requires
        source = Path("models") / vkey / "model.keras"
        if vkey != key and not source.exists():
            source.parent.mkdir(parents=True, exist_ok=True)
            os.link(_model_file(work), source)
    params_file.write_text(yaml.safe_dump({"models": {k: {"source": f"models/{k}/model.keras", **entry, **extra}
                                                      for k, extra in variants.values()},
                                           "graphs": {}}))
    build = Path("build")
    out = build / key
    _stage(commands.convert, key, params_file, build)  # not timed: the benchmark's model is canonical already
    t0 = time.perf_counter()
    _stage(commands.export, key, params_file, build)
    t1 = time.perf_counter()
    _stage(commands.freeze, key, params_file, build)
    t2 = time.perf_counter()
    _stage(commands.optimize, key, params_file, build)
    t3 = time.perf_counter()
    rss = _rss_mb()
    names = graphio.read_json(out / "names.json")
    stats = graphio.read_json(out / "passes.json")
    result = {"input": names["inputs"][0], "output": names["outputs"][0],
              "ops_frozen": len(graphio.read_graph(out / "frozen.pb").node),
              "time_export_s": t1 - t0, "time_freeze_s": t2 - t1, "time_optimize_s": t3 - t2,
              "time_pipeline_s": t3 - t0, "rss_mb": rss,
              "passes": {s["pass"]: s["ops_before"] - s["ops_after"] for s in stats if s["ops_before"] != s["ops_after"]}}
    for variant, (vkey, _) in variants.items():
        if vkey != key:  # the optimize stage again, on the same frozen graph, with the variant's params
            (build / vkey).mkdir(parents=True, exist_ok=True)
            for f in ("frozen.pb", "names.json", "signature.json"):
                shutil.copyfile(out / f, build / vkey / f)
            _stage(commands.optimize, vkey, params_file, build)
        graph = graphio.read_graph(build / vkey / "optimized.pb")
        result[f"ops_{variant}"] = len(graph.node)
        result[f"bytes_{variant}"] = len(graphio.graph_bytes(graph))
    return result


def phase_eval(name: str, size: int, work: Path, runs: int, opencv: bool) -> dict:
    import numpy as np

    from kfreeze import graphio
    from kfreeze.verify import opencv_layer, run_opencv, session_config
    from kfreeze.tfenv import tf

    ours = json.loads((work / "pipeline.json").read_text())
    naive = json.loads((work / "naive.json").read_text()) if (work / "naive.json").exists() else None
    x = next(iter(dict(np.load(work / "inputs.npz")).values()))
    reference = next(iter(dict(np.load(work / "reference.npz")).values())).astype(np.float64)
    key = _key_name(work)
    graphs = {variant: (work / "build" / vkey / "optimized.pb", ours["input"], ours["output"])
              for variant, vkey in (("ours", key), ("ours_opencv", f"{key}_opencv"), ("ours_fp16", f"{key}_fp16"))}
    if naive:
        graphs.update({key: (work / f"{key}.pb", naive["input"], naive["output"]) for key in ("grappler", "ofi", "tg")})
    result = {}
    for key, (path, inp, out) in graphs.items():
        if not path.exists():
            continue
        graph = graphio.read_graph(path)
        try:
            g = tf.Graph()
            with g.as_default():
                tf.graph_util.import_graph_def(graph, name="")
            sess = tf.compat.v1.Session(graph=g, config=session_config())
            fetch, feed = g.get_tensor_by_name(out + ":0"), g.get_tensor_by_name(inp + ":0")
            got = np.concatenate([sess.run(fetch, {feed: x[i:i + 1]}) for i in range(len(x))])
            result[f"parity_{key}"] = float(np.max(np.abs(got.astype(np.float64) - reference)))
            if key == "ours":
                result["latency_ours_ms"] = _median_latency(lambda: sess.run(fetch, {feed: x[:1]}), runs)
            sess.close()
        except Exception as e:  # a baseline that TF cannot run is a result too
            result[f"parity_{key}"] = None
            result[f"error_{key}"] = " ".join(str(e).split())[:200]
        if opencv and key in ("ours", "ours_opencv", "ours_fp16", "grappler"):
            layer = opencv_layer(graph, out)
            ocv = run_opencv(path, {inp: x}, [layer], batch=1)
            if ocv.error is None:
                y = np.asarray(ocv.outputs[layer], np.float64).reshape(reference.shape)
                result[f"opencv_{key}"] = float(np.max(np.abs(y - reference)))
            else:
                result[f"opencv_{key}"] = None
                result[f"opencv_error_{key}"] = ocv.error
    result["rss_mb"] = _rss_mb()
    return result


def child_main(args) -> int:
    work = Path(args.work).resolve()  # the pipeline phase changes directory
    work.mkdir(parents=True, exist_ok=True)
    if args.phase == "keras":
        data = phase_keras(args.model, args.size, work, args.runs)
    elif args.phase == "naive":
        data = phase_naive(args.model, args.size, work)
    elif args.phase == "pipeline":
        data = phase_pipeline(args.model, args.size, work)
    else:
        data = phase_eval(args.model, args.size, work, args.runs, not args.no_opencv)
    _write(work / f"{args.phase}.json", data)
    return 0


# ---------------------------------------------------------------------------- parent

PHASES = ("keras", "naive", "pipeline", "eval")


def _key(phase: str, key: str) -> str:
    shared = ("ops_", "bytes_", "time_", "parity_", "opencv_", "latency_", "keras_", "error_", "params", "passes")
    return key if key.startswith(shared) else f"{phase}_{key}"


def run_model(name: str, size: int, work: Path, runs: int, opencv: bool, timeout: float,
              reuse: bool = False) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    row: dict = {"model": name, "size": size}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for phase in PHASES:
        if reuse and (work / f"{phase}.json").exists():
            for k, v in json.loads((work / f"{phase}.json").read_text()).items():
                row[_key(phase, k)] = v
            continue
        cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", phase, "--model", name,
               "--size", str(size), "--work", str(work), "--runs", str(runs)] + ([] if opencv else ["--no-opencv"])
        t = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
            rc, err = proc.returncode, proc.stderr
        except subprocess.TimeoutExpired:
            rc, err = None, f"timed out after {timeout:.0f} s"
        row[f"wall_{phase}_s"] = time.perf_counter() - t
        if rc != 0:
            lines = [ln for ln in (err or "").strip().splitlines() if ln.strip()]
            row.setdefault("errors", {})[phase] = (lines[-1] if lines else f"exit {rc}")[:300]
            print(f"  {name}: phase {phase} failed: {row['errors'][phase]}", flush=True)
            if phase in ("keras", "pipeline"):
                break
            continue
        data = json.loads((work / f"{phase}.json").read_text())
        for k, v in data.items():
            row[_key(phase, k)] = v
        print(f"  {name}: {phase} done in {row[f'wall_{phase}_s']:.1f} s", flush=True)
    return row


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    versions = {}
    for mod in ("tensorflow", "keras", "cv2", "numpy"):
        try:
            out = subprocess.run([sys.executable, "-c", f"import {mod}; print({mod}.__version__)"],
                                 capture_output=True, text=True, timeout=120,
                                 env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
            versions[mod] = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else None
        except Exception:  # noqa: BLE001
            versions[mod] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": mem, "os": platform.platform(),
            "python": platform.python_version(), "gpu": "none (CPU only)", "versions": versions,
            "date": time.strftime("%Y-%m-%d")}


def _fmt(v, spec=".3g", none="—"):
    if v is None:
        return none
    if isinstance(v, str):
        return v
    return format(v, spec)


def _mb(b):
    return None if b is None else b / 1e6


def _ocv_cell(row, key):
    if f"opencv_{key}" not in row and f"opencv_error_{key}" not in row:
        return "—"
    v = row.get(f"opencv_{key}")
    if v is None:
        return "fails"
    return f"{'ok' if v <= PARITY_OPENCV else 'BAD'} {v:.1e}"


def summarize(rows: list[dict]) -> dict:
    ok_rows = [r for r in rows if "ops_ours" in r and "ops_grappler" in r]
    total_ours = sum(r["ops_ours"] for r in ok_rows)
    total_grappler = sum(r["ops_grappler"] for r in ok_rows)
    opencv_ok = []
    for r in rows:
        best = [k for k in ("ours", "ours_opencv") if r.get(f"opencv_{k}") is not None and r[f"opencv_{k}"] <= PARITY_OPENCV]
        r["opencv_mode_needed"] = None if not best else ("default" if "ours" in best else "opencv")
        if best:
            opencv_ok.append(r["model"])
    grappler_ocv = [r["model"] for r in rows if r.get("opencv_grappler") is not None and r["opencv_grappler"] <= PARITY_OPENCV]
    resnet = next((r for r in rows if r["model"] == "ResNet50"), None)
    s = {
        "models": len(rows),
        "ops_total_ours": total_ours, "ops_total_grappler": total_grappler,
        "ops_ratio": total_ours / total_grappler if total_grappler else None,
        "ops_never_above_grappler": all(r["ops_ours"] <= r["ops_grappler"] for r in ok_rows),
        "ops_below_best_baseline_everywhere": all(
            r["ops_ours"] < min(r[k] for k in ("ops_grappler", "ops_ofi", "ops_tg") if k in r) for r in ok_rows),
        "parity_max": max((r.get("parity_ours") for r in rows if r.get("parity_ours") is not None), default=None),
        "opencv_loads": opencv_ok, "opencv_fraction": len(opencv_ok) / len(rows) if rows else None,
        "opencv_loads_grappler": grappler_ocv,
    }
    if resnet and "time_pipeline_s" in resnet and "time_naive_s" in resnet:
        s["resnet50_time_ratio"] = resnet["time_pipeline_s"] / resnet["time_naive_s"]
        s["resnet50_pipeline_rss_mb"] = resnet.get("pipeline_rss_mb")
    return s


def markdown(rows: list[dict], summary: dict, info: dict, argv: list[str]) -> str:
    v = info["versions"]
    lines = [
        "# kfreeze optimizer benchmark",
        "",
        f"Generated by `python bench/run.py {' '.join(argv)}`".rstrip() + f" on {info['date']}. "
        "Do not edit by hand; see `bench/README.md` for how to read it.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB RAM, {info['gpu']}; "
        f"{info['os']}; Python {info['python']}, TensorFlow {v.get('tensorflow')}, Keras {v.get('keras')}, "
        f"OpenCV {v.get('cv2')}, NumPy {v.get('numpy')}.",
        "",
        f"Models: `keras.applications.<name>(weights=None)` at their default input size, seed {SEED}, "
        f"batch 1; parity over {SAMPLES} seeded inputs (uniform [0, 1)), max abs diff of the softmax "
        "outputs against the Keras model.",
        "",
        "## Op counts and size",
        "",
        "| model | frozen | **kfreeze** | optimize_for_inference | TransformGraph seed | Grappler-only | ours / Grappler "
        "| MB ours | MB Grappler | MB ours float16 | ops float16 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = r["ops_ours"] / r["ops_grappler"] if "ops_ours" in r and "ops_grappler" in r else None
        lines.append(f"| {r['model']} | {_fmt(r.get('ops_frozen'), 'd')} | **{_fmt(r.get('ops_ours'), 'd')}** | "
                     f"{_fmt(r.get('ops_ofi'), 'd')} | {_fmt(r.get('ops_tg'), 'd')} | {_fmt(r.get('ops_grappler'), 'd')} | "
                     f"{_fmt(ratio, '.2f')} | {_fmt(_mb(r.get('bytes_ours')), '.1f')} | "
                     f"{_fmt(_mb(r.get('bytes_grappler')), '.1f')} | {_fmt(_mb(r.get('bytes_ours_fp16')), '.1f')} | "
                     f"{_fmt(r.get('ops_ours_fp16'), 'd')} |")
    lines.append(f"| **total** | | **{summary['ops_total_ours']}** | "
                 f"{sum(r.get('ops_ofi', 0) for r in rows)} | {sum(r.get('ops_tg', 0) for r in rows)} | "
                 f"{summary['ops_total_grappler']} | {_fmt(summary['ops_ratio'], '.2f')} | | | | |")
    lines += [
        "",
        "## Parity (TF session) and OpenCV",
        "",
        "OpenCV cells: `ok`/`BAD` (max abs diff <= / > 1e-3) or `fails` (does not load or run; reason below). "
        "`opencv mode` is the graph optimized with `Context(opencv=True)`.",
        "",
        "| model | parity ours | parity float16 | parity Grappler | parity OFI | parity TG | OpenCV ours | "
        "OpenCV opencv mode | OpenCV float16 | OpenCV Grappler |",
        "|---|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {_fmt(r.get('parity_ours'), '.1e')} | {_fmt(r.get('parity_ours_fp16'), '.1e')} | "
                     f"{_fmt(r.get('parity_grappler'), '.1e')} | {_fmt(r.get('parity_ofi'), '.1e')} | "
                     f"{_fmt(r.get('parity_tg'), '.1e')} | {_ocv_cell(r, 'ours')} | {_ocv_cell(r, 'ours_opencv')} | "
                     f"{_ocv_cell(r, 'ours_fp16')} | {_ocv_cell(r, 'grappler')} |")
    lines += [
        "",
        "## Time, memory, latency",
        "",
        "Times are wall seconds in a fresh process. kfreeze = load + export (incl. writing the checkpoint) + "
        "freeze (TF freeze_graph from that checkpoint) + optimize; naive = load + trace + "
        "convert_variables_to_constants_v2 + Grappler. Peak RSS is the pipeline process's "
        "`ru_maxrss` after optimize (the three stages in one process: an upper bound for each stage). "
        "Latency: median of batch-1 runs, one intra-op thread for the TF session; Keras through `tf.function`.",
        "",
        "| model | export s | freeze s | optimize s | **kfreeze total s** | naive s | ratio | peak RSS MB "
        "| latency ours ms | latency Keras ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = r["time_pipeline_s"] / r["time_naive_s"] if "time_pipeline_s" in r and "time_naive_s" in r else None
        lines.append(f"| {r['model']} | {_fmt(r.get('time_export_s'), '.1f')} | {_fmt(r.get('time_freeze_s'), '.1f')} | "
                     f"{_fmt(r.get('time_optimize_s'), '.1f')} | **{_fmt(r.get('time_pipeline_s'), '.1f')}** | "
                     f"{_fmt(r.get('time_naive_s'), '.1f')} | {_fmt(ratio, '.2f')} | "
                     f"{_fmt(r.get('pipeline_rss_mb'), '.0f')} | {_fmt(r.get('latency_ours_ms'), '.1f')} | "
                     f"{_fmt(r.get('keras_latency_ms'), '.1f')} |")
    lines += ["", "## Targets", ""]
    ratio = summary.get("ops_ratio")
    lines.append(f"- Ops: total {summary['ops_total_ours']} vs Grappler-only {summary['ops_total_grappler']} "
                 f"= {_fmt(ratio, '.3f')} {_target('ops_ratio', ratio)}; "
                 f"never above Grappler on a model: **{'met' if summary['ops_never_above_grappler'] else 'NOT met'}**; "
                 f"below the best TF baseline on every model: {summary['ops_below_best_baseline_everywhere']}.")
    pm = summary.get("parity_max")
    lines.append(f"- Parity: worst {_fmt(pm, '.1e')} {_target('parity_max', pm)}.")
    frac = summary.get("opencv_fraction")
    lines.append(f"- OpenCV: {len(summary['opencv_loads'])}/{summary['models']} load with parity <= {PARITY_OPENCV:g} "
                 f"(default or opencv mode) {_target('opencv_fraction', frac)}; "
                 f"Grappler-only graphs: {len(summary['opencv_loads_grappler'])}/{summary['models']}.")
    if "resnet50_time_ratio" in summary:
        tr = summary["resnet50_time_ratio"]
        rss = summary.get("resnet50_pipeline_rss_mb")
        lines.append(f"- Time: ResNet50 kfreeze / naive = {tr:.2f} {_target('resnet50_time_ratio', tr)}.")
        lines.append(f"- Memory: ResNet50 pipeline peak RSS {_fmt(rss, '.0f')} MB {_target('resnet50_pipeline_rss_mb', rss)}.")
    errors = [(r["model"], k, v) for r in rows for k, v in sorted(r.items())
              if k.startswith("opencv_error_") or k.startswith("error_")] + \
             [(r["model"], f"phase {p}", e) for r in rows for p, e in r.get("errors", {}).items()]
    if errors:
        lines += ["", "## Failures", ""]
        lines += [f"- {m} `{k}`: {e}" for m, k, e in errors]
    passes = [(r["model"], r.get("passes", {})) for r in rows]
    lines += ["", "## What each kfreeze pass removed (ops, default mode)", "",
              "| model | " + " | ".join(["passes"]) + " |", "|---|---|"]
    lines += [f"| {m} | {', '.join(f'{k} -{v}' if v > 0 else f'{k} +{-v}' for k, v in p.items())} |" for m, p in passes]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help=f"comma-separated subset of {', '.join(MODELS)}")
    ap.add_argument("--quick", action="store_true", help=f"{', '.join(QUICK)} with {LATENCY_RUNS // 2} latency runs")
    ap.add_argument("--size", type=int, help="override every model's input size")
    ap.add_argument("--out", default=str(BENCH), help="where results.json and results.md go (default: bench/)")
    ap.add_argument("--work", help="scratch directory (default: a fresh temp dir)")
    ap.add_argument("--no-opencv", action="store_true", help="skip the OpenCV runs")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per phase")
    ap.add_argument("--reuse", action="store_true", help="with --work: keep the phases already measured there")
    ap.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--runs", type=int, default=LATENCY_RUNS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.phase:
        sys.path.insert(0, str(ROOT))
        return child_main(args)

    import tempfile
    names = args.models.split(",") if args.models else (QUICK if args.quick else DEFAULT)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    runs = LATENCY_RUNS // 2 if args.quick else LATENCY_RUNS
    work = Path(args.work or tempfile.mkdtemp(prefix="kfreeze-bench-"))
    info = machine()
    rows = []
    for name in names:
        size = args.size or MODELS[name]
        print(f"{name} ({size}x{size})", flush=True)
        rows.append(run_model(name, size, work / name, runs, not args.no_opencv, args.timeout, args.reuse))
    summary = summarize(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shown = sys.argv[1:] if argv is None else argv
    _write(out / "results.json", {"machine": info, "summary": summary, "models": rows,
                                  "argv": shown, "seed": SEED, "samples": SAMPLES})
    (out / "results.md").write_text(markdown(rows, summary, info, shown))
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
