"""What the benchmark counts on a graph: FLOPs, the runtime's fusion share, and the CPU's peak.

FLOPs are counted by hand from the static shapes, not with ``tf.compat.v1.profiler``: the
profiler also counts element-wise ops (bias, batch norm, activations) op by op, so its total
changes when a pass folds or fuses them although the arithmetic the model needs does not.
Here: 2 x multiply-accumulates of Conv2D, DepthwiseConv2dNative, MatMul and BatchMatMul
(the work a BLAS-like kernel does); everything else is ignored.
"""

from __future__ import annotations

import math
from pathlib import Path

COUNTED_OPS = ("Conv2D", "DepthwiseConv2dNative", "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")


def _dims(shape) -> list[int] | None:
    dims = shape.as_list() if shape.rank is not None else None
    return None if dims is None or any(d is None for d in dims) else dims


def flops(graph_def) -> dict[str, int]:
    """op type -> FLOPs (2 x MACs) at the graph's own static input shapes; 'total' sums them.

    Raises ValueError if a counted op has an unknown shape (the count would be a guess).
    """
    from kfreeze.tfenv import tf

    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    counts: dict[str, int] = {}
    for op in g.get_operations():
        if op.type not in COUNTED_OPS:
            continue
        a, b, out = _dims(op.inputs[0].shape), _dims(op.inputs[1].shape), _dims(op.outputs[0].shape)
        if a is None or b is None or out is None:
            raise ValueError(f"{op.type} '{op.name}' has an unknown shape: set a static input shape")
        if op.type == "Conv2D":  # out NHWC (or NCHW) x kh*kw*in per output element
            kh, kw, cin, _ = b
            macs = math.prod(out) * kh * kw * cin
        elif op.type == "DepthwiseConv2dNative":  # each output element: one kh x kw window
            kh, kw, _, _ = b
            macs = math.prod(out) * kh * kw
        else:  # MatMul / BatchMatMul: every output element sums over the contracted dim
            transpose_a = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
            k = a[-2] if transpose_a else a[-1]
            macs = math.prod(out) * k
        counts[op.type] = counts.get(op.type, 0) + 2 * macs
    counts["total"] = sum(counts.values())
    return counts


# ---------------------------------------------------------------------------- the CPU's peak

def cpu_info(cpuinfo: str | None = None) -> dict:
    """Vendor, family, model name, nominal clock and SIMD flags from /proc/cpuinfo (first CPU)."""
    text = cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text()
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the first processor's block is enough
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    flags = set(fields.get("flags", "").split())
    return {"vendor": fields.get("vendor_id"), "family": int(fields.get("cpu family", 0)),
            "model": int(fields.get("model", 0)), "model_name": fields.get("model name"),
            "mhz": float(fields.get("cpu MHz", 0.0)),
            "simd": sorted(f for f in flags if f in ("avx", "avx2", "fma", "avx512f"))}


def flop_per_cycle(info: dict) -> tuple[int, str]:
    """FP32 FLOP per cycle per core and why, from the vendor, family and SIMD flags.

    Two FMA pipes everywhere here; the vector width the pipes execute natively decides.
    AMD Zen 4 (family 25) runs AVX-512 as two 256-bit halves; Zen 5 (family 26) has a
    full 512-bit datapath (server and desktop parts).
    """
    simd = set(info["simd"])
    if "avx512f" in simd and not (info["vendor"] == "AuthenticAMD" and info["family"] < 26):
        return 64, "AVX-512: 2 FMA pipes x 16 FP32 lanes x 2"
    if "fma" in simd and "avx2" in simd:
        return 32, "AVX2 + FMA: 2 FMA pipes x 8 FP32 lanes x 2"
    if "avx" in simd:
        return 16, "AVX, no FMA: 1 add + 1 mul pipe x 8 FP32 lanes"
    return 8, "SSE: 1 add + 1 mul pipe x 4 FP32 lanes"


def peak(info: dict | None = None) -> dict:
    """The per-core FP32 peak the benchmark divides by: FLOP/cycle x the nominal clock.

    In a VM /proc/cpuinfo shows the TSC rate, not the boost clock: the peak is nominal, and a
    core that boosts can exceed 100% of it.
    """
    info = info or cpu_info()
    per_cycle, why = flop_per_cycle(info)
    return {**info, "flop_per_cycle": per_cycle, "why": why, "gflops_per_core": per_cycle * info["mhz"] / 1000.0}


def sgemm_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Best single-thread float32 GEMM rate numpy's BLAS reaches here: an attainable ceiling to set
    the nominal peak against. Call in a process whose BLAS is limited to one thread."""
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    a @ b
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9
