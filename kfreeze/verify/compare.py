"""Compare a graph's outputs with the reference's: absolute and relative error, spread, top-1."""

from __future__ import annotations

import numpy as np
from tensorflow.core.framework import graph_pb2


PROBABILITY_OPS = {"Softmax", "Sigmoid", "LogSoftmax"}


_PASS_THROUGH = {"Identity", "IdentityN", "Snapshot", "Reshape", "Squeeze", "ExpandDims", "Cast", "StopGradient"}


def computes_in_half(graph: graph_pb2.GraphDef) -> bool:
    """An op other than a Cast computes in float16: a Keras mixed_float16 model (or precision float16).
    Its outputs carry float16 rounding, which TF's defaults (oneDNN) round otherwise than the session."""
    from tensorflow.core.framework import types_pb2
    return any(n.op != "Cast" and n.attr["T"].type == types_pb2.DT_HALF for n in graph.node if "T" in n.attr)


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
        agreed = 0
        if len(bad) == 2 and np.isfinite(ref).any() and _same_nonfinite(ref, y):
            # NaN/Inf at the same places on both sides (asin outside [-1, 1]): what the source model
            # computes; the finite rest is compared as usual, and the metrics say how many agreed.
            # An output with nothing finite (a NaN weight) proves nothing and still fails.
            finite = np.isfinite(ref)
            agreed, bad = int(ref.size - finite.sum()), []
            ref, y = np.where(finite, ref, 0.0), np.where(finite, y, 0.0)
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
        if agreed:
            entry["nonfinite_agree"] = agreed
        is_prob = (ref.ndim >= 2 and ref.shape[-1] > 1) if probability is None else probability.get(name, False)
        entry["top1_agree"] = _top1(ref, y) if is_prob and not bad else None
        if atol is not None:
            tolerance = atol + (rtol or 0.0) * (entry["max_abs_reference"] or 0.0)
            entry["tolerance"] = tolerance
            entry["passed"] = not bad and entry["max_abs_diff"] <= tolerance
            entry["constant"] = None if "spread" not in entry else entry["spread"] <= tolerance
        result[name] = entry
    return result


def _same_nonfinite(a: np.ndarray, b: np.ndarray) -> bool:
    """NaN where the other has NaN, and the same infinities, element by element."""
    na, nb = np.isnan(a), np.isnan(b)
    ia, ib = np.isinf(a), np.isinf(b)
    return bool(np.array_equal(na, nb) and np.array_equal(ia, ib) and np.array_equal(a[ia], b[ib]))


def _top1(ref: np.ndarray, y: np.ndarray) -> float | None:
    if ref.ndim == 0 or ref.size == 0:
        return None
    a, b = ref.reshape(len(ref), -1), y.reshape(len(y), -1)
    if a.shape[1] == 1:  # one sigmoid unit: the class is p > 0.5
        return float(np.mean((a[:, 0] > 0.5) == (b[:, 0] > 0.5)))
    return float(np.mean(np.argmax(a, -1) == np.argmax(b, -1)))
