"""results.json rows -> the summary and results.md (deterministic: rows in run order, fixed columns)."""

from __future__ import annotations

from run import SAMPLES, SEED, STAGES, THREADS

RUNTIMES = ("keras", "kfreeze", "onnxruntime", "tflite", "tflite_int8", "openvino", "opencv")
RUNTIME_TITLES = {"keras": "Keras tf.function", "kfreeze": "kfreeze (TF session)",
                  "onnxruntime": "ONNX Runtime (tf2onnx)", "tflite": "TFLite (XNNPACK)",
                  "tflite_int8": "TFLite int8 (kfreeze target)", "openvino": "OpenVINO f32 (kfreeze target)",
                  "opencv": "OpenCV dnn"}
TF_DEFAULT = "1_tf_default"  # row['latency'] key of the tfdefault1 phase (run.latency_key)
PARITY_TF = 1e-4             # relative error on logits, TF session
PARITY_OPENCV = 1e-3
MIB = 1024 * 1024
RSS_SLACK_MB = 1024          # the memory target: 3 x weight bytes + 1 GB

# Targets over the whole run: summary key -> (comparison, bound, how the bound is written).
TARGETS = {
    "ops_ratio": ("<=", 0.9, "0.9"),                     # total ops, kfreeze / Grappler-only
    "parity_max": ("<=", PARITY_TF, "1e-4"),             # worst relative error on logits, TF session
    "opencv_fraction": (">=", 0.9, "90%"),               # models OpenCV loads with parity <= PARITY_OPENCV
}
VERIFY_RESNET50 = (30, 1536)  # ResNet50's verify stage: seconds, MiB

# Targets per model: (comparison, bound, how the bound is written, what it is).
MODEL_TARGETS = {
    "kfreeze_vs_keras": ("<=", 0.7, "0.7", "kfreeze / Keras latency, 1 thread"),
    "opencv_vs_keras": ("<=", 1.0, "1.0", "OpenCV / Keras latency, worst of 1 and 2 threads (if OpenCV loads)"),
    "rss_vs_limit": ("<=", 1.0, "1.0", "worst stage peak RSS / (3 x weight bytes + 1 GB)"),
}


def _met(op: str, bound: float, value) -> bool | None:
    if value is None:
        return None
    return value <= bound if op == "<=" else value >= bound


def _verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("**met**" if met else "**NOT met**")


def _target(key: str, value) -> str:
    """'(target <= 0.9): **met**' for ``value`` of summary ``key``."""
    op, bound, shown = TARGETS[key]
    return f"(target {op} {shown}): {_verdict(bool(_met(op, bound, value)))}"


def _lat(row: dict, threads: int, runtime: str) -> dict | None:
    return row.get("latency", {}).get(str(threads), {}).get("runtimes", {}).get(runtime)


def _stage_rss(row: dict) -> dict[str, float]:
    """Every stage process's peak RSS (MiB), the optimize variants included."""
    return {k[len("rss_"):-len("_mb")]: v for k, v in sorted(row.items())
            if k.startswith("rss_") and k.endswith("_mb")}


def model_targets(row: dict) -> dict:
    """Per model: the measured value behind each of MODEL_TARGETS (None: not measured)."""
    kf = _lat(row, 1, "kfreeze")
    ocv = [_lat(row, t, "opencv") for t in THREADS]
    ocv_ratios = [o["ratio_to_keras"] for o in ocv if o and "ratio_to_keras" in o]
    rss = _stage_rss(row)
    limit = 3 * row["weight_bytes"] / MIB + RSS_SLACK_MB if "weight_bytes" in row else None
    values = {"kfreeze_vs_keras": kf.get("ratio_to_keras") if kf else None,
              "opencv_vs_keras": max(ocv_ratios) if ocv_ratios else None,
              "rss_vs_limit": max(rss.values()) / limit if rss and limit else None}
    targets = {k: {"value": v, "met": _met(MODEL_TARGETS[k][0], MODEL_TARGETS[k][1], v)} for k, v in values.items()}
    if rss:
        targets["rss_vs_limit"]["stage"] = max(rss, key=rss.get)
    return targets


def summarize(rows: list[dict], info: dict) -> dict:
    ok_rows = [r for r in rows if "ops_ours" in r and "ops_grappler" in r]
    total_ours = sum(r["ops_ours"] for r in ok_rows)
    total_grappler = sum(r["ops_grappler"] for r in ok_rows)
    opencv_ok = []
    for r in rows:
        best = [k for k in ("ours", "ours_opencv") if r.get(f"opencv_{k}") is not None and r[f"opencv_{k}"] <= PARITY_OPENCV]
        r["opencv_mode_needed"] = None if not best else ("default" if "ours" in best else "opencv")
        if best:
            opencv_ok.append(r["model"])
        r["targets"] = model_targets(r)
        peak = info["peak"]["gflops_per_core"]
        gflop = r.get("flops", {}).get("total")
        for t in THREADS:
            for name, lat in r.get("latency", {}).get(str(t), {}).get("runtimes", {}).items():
                if gflop:
                    lat["gflops"] = gflop / 1e9 / (lat["median_ms"] / 1000.0)
                    lat["peak_share"] = lat["gflops"] / (peak * t)
    return {
        "models": len(rows),
        "ops_total_ours": total_ours, "ops_total_grappler": total_grappler,
        "ops_ratio": total_ours / total_grappler if total_grappler else None,
        "ops_never_above_grappler": all(r["ops_ours"] <= r["ops_grappler"] for r in ok_rows),
        "parity_max": max((r.get("parity_ours") for r in rows if r.get("parity_ours") is not None), default=None),
        "opencv_loads": opencv_ok, "opencv_fraction": len(opencv_ok) / len(rows) if rows else None,
        "targets_met": {k: [r["model"] for r in rows if r["targets"][k]["met"]] for k in MODEL_TARGETS},
        "targets_not_met": {k: [r["model"] for r in rows if r["targets"][k]["met"] is False] for k in MODEL_TARGETS},
    }


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


def _lat_cell(row, threads, runtime):
    lat = _lat(row, threads, runtime)
    if lat is None:
        return "—"
    ratio = "" if runtime == "keras" or "ratio_to_keras" not in lat else f" **×{lat['ratio_to_keras']:.2f}**"
    return f"{lat['median_ms']:.1f} ({lat['p25_ms']:.1f}–{lat['p75_ms']:.1f}){ratio}"


def _gflops_cell(row, threads, runtime):
    lat = _lat(row, threads, runtime)
    if lat is None or "gflops" not in lat:
        return "—"
    return f"{lat['gflops']:.1f} ({100 * lat['peak_share']:.0f}%)"


def _fusion_cell(row, key):
    f = row.get(f"fusion_{key}")
    if not f:
        return "—"
    return f"{f['fused']}/{f['fused'] + f['bare']} ({_fmt(None if f['share'] is None else 100 * f['share'], '.0f')}%)"


def _latency_env(rows: list[dict]) -> str:
    """The TF environment the latency phases recorded (one line if all agree)."""
    seen = sorted({", ".join(f"{k}={v}" for k, v in sorted(lat.get("tf_env", {}).items()))
                   for r in rows for lat in r.get("latency", {}).values() if not lat.get("tf_default")} - {""})
    return " / ".join(seen) if seen else "—"


def _header(info: dict, rows: list[dict], argv: list[str], runs: int) -> list[str]:
    v, p = info["versions"], info["peak"]
    sgemm, env = info.get("sgemm_1thread_gflops"), info.get("tf_env") or {}
    return [
        "# kfreeze benchmark",
        "",
        f"Generated by `python bench/run.py {' '.join(argv)}`".rstrip() + f" on {info['date']}. "
        "Do not edit by hand; see `bench/README.md` for how to read it.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB RAM, {info['gpu']}; "
        f"{info['os']}; Python {info['python']}, TensorFlow {v.get('tensorflow')}, Keras {v.get('keras')}, "
        f"OpenCV {v.get('cv2')}, ONNX Runtime {v.get('onnxruntime')}, tf2onnx {v.get('tf2onnx')}, "
        f"ai-edge-litert {v.get('ai_edge_litert')}, OpenVINO {v.get('openvino')}, NumPy {v.get('numpy')}.",
        "",
        f"Peak used for '% of peak': {p['gflops_per_core']:.0f} GFLOP/s FP32 per core = {p['flop_per_cycle']} "
        f"FLOP/cycle ({p['why']}; CPU family {p['family']}, model {p['model']}, flags {' '.join(p['simd'])}) "
        f"x {p['mhz'] / 1000:.2f} GHz (the nominal clock /proc/cpuinfo shows); times the thread count. "
        f"For scale: numpy's BLAS reaches {_fmt(sgemm, '.0f')} GFLOP/s on one thread "
        "(float32 GEMM 1024, best of 5).",
        "",
        "TensorFlow's kernels: kfreeze's stages run with "
        + ", ".join(f"{k}={v}" for k, v in sorted(env.items()))
        + " (kfreeze/__init__.py pins the ISA so that sums repeat across machines); the latency phases, "
        "Keras and the kfreeze session alike, with " + _latency_env(rows)
        + ". ONNX Runtime, XNNPACK and OpenCV pick their own kernels.",
        "",
        f"Models: `keras.applications.<name>(weights=None, classifier_activation=None)` at their default input "
        f"size, seed {SEED}, every BatchNormalization with trained-looking statistics (bench/zoo.py), batch 1. "
        f"Parity: relative error of the logits over {SAMPLES} seeded inputs, max |got - Keras| / max |Keras|. "
        f"Latency: {runs} interleaved rounds per thread count.",
    ]


def markdown(rows: list[dict], summary: dict, info: dict, argv: list[str], runs: int) -> str:
    lines = _header(info, rows, argv, runs)
    titles = " | ".join(RUNTIME_TITLES[r] for r in RUNTIMES)
    for t in THREADS:
        lines += [
            "", f"## Latency, batch 1, {t} thread{'s' if t > 1 else ''}", "",
            "ms: median (25th–75th percentile) **×ratio to Keras** (median of the per-round ratios).", "",
            f"| model | GFLOP | {titles} |", "|---|---:|" + "---:|" * len(RUNTIMES),
        ]
        for r in rows:
            gflop = r.get("flops", {}).get("total")
            lines.append(f"| {r['model']} | {_fmt(None if gflop is None else gflop / 1e9, '.2f')} | "
                         + " | ".join(_lat_cell(r, t, rt) for rt in RUNTIMES) + " |")
    lines += ["", "## Achieved GFLOP/s (% of peak)", "",
              "FLOPs = 2 x multiply-accumulates of Conv2D, DepthwiseConv2dNative and MatMul, counted from the "
              "static shapes of kfreeze's optimized.pb (bench/graphstats.py), over the median latency.", "",
              f"| model | threads | {titles} |", "|---|---:|" + "---:|" * len(RUNTIMES)]
    lines += [f"| {r['model']} | {t} | " + " | ".join(_gflops_cell(r, t, rt) for rt in RUNTIMES) + " |"
              for r in rows for t in THREADS]
    lines += ["", "## Parity (relative error on logits) and runtime fusion", "",
              "OpenCV cells: `ok`/`BAD` (relative error <= / > 1e-3) or `fails` (reason under *Failures*). "
              "Fused: conv/matmul ops the TF session executed as `_Fused*` (from `RunMetadata` partition graphs) "
              "over all conv/matmul ops it executed.", "",
              "| model | logits max | kfreeze | float16 | Grappler | OFI | TG | ONNX Runtime | TFLite | TFLite int8 "
              "| OpenVINO f32 | OpenCV | OpenCV opencv mode | fused kfreeze | fused Grappler-only |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {_fmt(r.get('logits_max_abs'), '.3g')} | "
                     + " | ".join(_fmt(r.get(f"parity_{k}"), ".1e") for k in
                                  ("ours", "ours_fp16", "grappler", "ofi", "tg", "onnxruntime", "tflite",
                                   "tflite_int8", "openvino"))
                     + f" | {_ocv_cell(r, 'ours')} | {_ocv_cell(r, 'ours_opencv')} | "
                     f"{_fusion_cell(r, 'ours')} | {_fusion_cell(r, 'grappler')} |")
    lines += _tf_default_table(rows)
    lines += _ops_table(rows, summary)
    lines += _stage_table(rows)
    lines += _targets(rows, summary)
    lines += _failures(rows)
    lines += ["", "## What each kfreeze pass removed (ops, default mode)", "", "| model | passes |", "|---|---|"]
    lines += [f"| {r['model']} | {', '.join(f'{k} -{v}' if v > 0 else f'{k} +{-v}' for k, v in r.get('passes', {}).items())} |"
              for r in rows]
    return "\n".join(lines) + "\n"


def _tf_default_table(rows):
    """The tfdefault1 phase: Keras and the kfreeze session in a process with TensorFlow's defaults."""
    if not any(TF_DEFAULT in r.get("latency", {}) for r in rows):
        return []
    lines = ["", "## Latency in a TensorFlow process with TF's defaults (oneDNN on), batch 1, 1 thread", "",
             "Keras and the kfreeze session interleaved in their own process, with none of kfreeze's switches "
             "(what a program that loads optimized.pb gets); ms as above. The last two columns are from the "
             "1-thread table's process (its TF environment is in the header), for comparison across processes.", "",
             "| model | Keras, TF defaults | kfreeze (TF session), TF defaults | TF environment "
             "| Keras, latency phase | kfreeze, latency phase |",
             "|---|---:|---:|---|---:|---:|"]
    for r in rows:
        default = r.get("latency", {}).get(TF_DEFAULT, {})
        env = ", ".join(f"{k}={v}" if v is not None else f"{k} unset"
                        for k, v in sorted(default.get("tf_env", {}).items())) or "—"
        cells = [_lat_cell({"latency": {"d": default}}, "d", rt) for rt in ("keras", "kfreeze")]
        lines.append(f"| {r['model']} | {' | '.join(cells)} | {env} | {_lat_cell(r, 1, 'keras')} | "
                     f"{_lat_cell(r, 1, 'kfreeze')} |")
    return lines


def _ops_table(rows, summary):
    lines = ["", "## Op counts and size", "",
             "| model | frozen | **kfreeze** | optimize_for_inference | TransformGraph seed | Grappler-only "
             "| ours / Grappler | MB ours | MB ours float16 | MB TFLite int8 | MB OpenVINO | ONNX nodes |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = r["ops_ours"] / r["ops_grappler"] if "ops_ours" in r and "ops_grappler" in r else None
        lines.append(f"| {r['model']} | {_fmt(r.get('ops_frozen'), 'd')} | **{_fmt(r.get('ops_ours'), 'd')}** | "
                     f"{_fmt(r.get('ops_ofi'), 'd')} | {_fmt(r.get('ops_tg'), 'd')} | {_fmt(r.get('ops_grappler'), 'd')} | "
                     f"{_fmt(ratio, '.2f')} | {_fmt(_mb(r.get('bytes_ours')), '.1f')} | "
                     f"{_fmt(_mb(r.get('bytes_ours_fp16')), '.1f')} | {_fmt(_mb(r.get('bytes_tflite_int8')), '.1f')} | "
                     f"{_fmt(_mb(r.get('bytes_openvino')), '.1f')} | {_fmt(r.get('onnx_ops'), 'd')} |")
    lines.append(f"| **total** | | **{summary['ops_total_ours']}** | | | {summary['ops_total_grappler']} | "
                 f"{_fmt(summary['ops_ratio'], '.2f')} | | | | | |")
    return lines


def _stage_table(rows):
    lines = ["", "## Pipeline: time and peak RSS per stage", "",
             "Each stage runs in its own process, as `dvc repro` runs it: wall seconds of the stage call (imports "
             "excluded) / that process's peak RSS in MiB. naive = load + trace + convert_variables_to_constants_v2 "
             "+ Grappler in one process; kfreeze total = export + freeze + optimize. Limit = 3 x weight bytes + 1 GiB.",
             "", "| model | weights MiB | " + " | ".join(STAGES) + " | optimize opencv / float16 | kfreeze total s "
             "| naive s | tf2onnx s | TFLite conv. s | TFLite int8 conv. s | OpenVINO conv. s | RSS limit MiB |",
             "|---|---:|" + "---:|" * len(STAGES) + "---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        cells = [f"{_fmt(r.get(f'time_{s}_s'), '.1f')} / {_fmt(r.get(f'rss_{s}_mb'), '.0f')}" for s in STAGES]
        variants = " · ".join(f"{_fmt(r.get(f'time_optimize_{v}_s'), '.1f')} / {_fmt(r.get(f'rss_optimize_{v}_mb'), '.0f')}"
                              for v in ("ours_opencv", "ours_fp16"))
        wb = r.get("weight_bytes")
        lines.append(f"| {r['model']} | {_fmt(None if wb is None else wb / MIB, '.0f')} | " + " | ".join(cells)
                     + f" | {variants} | {_fmt(r.get('time_pipeline_s'), '.1f')} | {_fmt(r.get('time_naive_s'), '.1f')} | "
                     f"{_fmt(r.get('time_onnx_s'), '.1f')} | {_fmt(r.get('time_tflite_s'), '.1f')} | "
                     f"{_fmt(r.get('time_tflite_int8_s'), '.1f')} | {_fmt(r.get('time_openvino_s'), '.1f')} | "
                     f"{_fmt(None if wb is None else 3 * wb / MIB + RSS_SLACK_MB, '.0f')} |")
    return lines


def _targets(rows, summary):
    lines = ["", "## Targets (measured, not asserted)", "",
             "| model | " + " | ".join(f"{desc} {op} {shown}" for op, _, shown, desc in MODEL_TARGETS.values())
             + " | kfreeze / ONNX Runtime, 1 thread | kfreeze / TFLite, 1 thread |",
             "|---|" + "---|" * len(MODEL_TARGETS) + "---:|---:|"]
    for r in rows:
        gaps = []
        for peer in ("onnxruntime", "tflite"):
            kf, other = _lat(r, 1, "kfreeze"), _lat(r, 1, peer)
            gaps.append(_fmt(kf["median_ms"] / other["median_ms"] if kf and other else None, ".2f"))
        lines.append(f"| {r['model']} | " + " | ".join(
            f"{_fmt(t['value'], '.2f')}{' (' + t['stage'] + ')' if 'stage' in t else ''} {_verdict(t['met'])}"
            for t in r["targets"].values()) + f" | {' | '.join(gaps)} |")
    ratio, pm, frac = summary.get("ops_ratio"), summary.get("parity_max"), summary.get("opencv_fraction")
    lines += ["",
              f"- Ops: total {summary['ops_total_ours']} vs Grappler-only {summary['ops_total_grappler']} "
              f"= {_fmt(ratio, '.3f')} {_target('ops_ratio', ratio)}; never above Grappler on a model: "
              f"{_verdict(summary['ops_never_above_grappler'])}.",
              f"- Parity: worst relative error on logits {_fmt(pm, '.1e')} {_target('parity_max', pm)}.",
              f"- OpenCV: {len(summary['opencv_loads'])}/{summary['models']} load with relative error <= "
              f"{PARITY_OPENCV:g} (default or opencv mode) {_target('opencv_fraction', frac)}."]
    resnet = next((r for r in rows if r["model"] == "ResNet50" and "time_verify_s" in r), None)
    if resnet:
        t, rss = resnet["time_verify_s"], resnet["rss_verify_mb"]
        lines.append(f"- ResNet50's verify stage: {t:.0f} s {_verdict(t <= VERIFY_RESNET50[0])} (target <= "
                     f"{VERIFY_RESNET50[0]} s), peak RSS {rss:.0f} MiB {_verdict(rss <= VERIFY_RESNET50[1])} "
                     f"(target <= {VERIFY_RESNET50[1]} MiB).")
    return lines


def _failures(rows):
    errors = [(r["model"], k, v) for r in rows for k, v in sorted(r.items())
              if k.startswith("opencv_error_") or k.startswith("error_")]
    errors += [(r["model"], f"stage {s}", e) for r in rows for s, e in sorted(r.get("stage_errors", {}).items())]
    errors += [(r["model"], f"phase {p}", e) for r in rows for p, e in sorted(r.get("errors", {}).items())]
    errors += [(r["model"], f"latency {t} thread(s): {name}", e) for r in rows
               for t, lat in sorted(r.get("latency", {}).items()) for name, e in sorted(lat.get("errors", {}).items())]
    if not errors:
        return []
    return ["", "## Failures", ""] + [f"- {m} `{k}`: {e}" for m, k, e in errors]
