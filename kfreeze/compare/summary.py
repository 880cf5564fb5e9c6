"""``python -m kfreeze.compare.summary``: metrics/*.json -> one CSV row per model (for ``dvc plots``)
and a parity table in digits (for ``dvc metrics diff``).

DVC plots need one file with a row per data point; the verify stages write one JSON per model.
``dvc metrics diff`` rounds to 5 decimal places, so a parity of 2.98e-08 prints as 0.0. The digits
columns put parity on a scale that survives that rounding:

    abs_digits = -log10(max_abs_diff)   decimal places to which the outputs agree (8.2 for 6e-9)
    rel_digits = -log10(max_rel_diff)   significant digits (relative to the output's scale)

Higher is better. An exact match (difference 0) is written as ``EXACT_DIGITS`` (16: float64
resolution), not infinity, so that it plots and diffs; a missing or null metric stays empty/null.
A model with an output that hardly depends on its input (metrics' ``constant_outputs``) gets no
digits at all: a comparison that cannot tell a wrong graph from a right one is never drawn as exact.
The raw values stay in the CSV and in metrics/<name>.json (``dvc metrics diff --precision 12``).

Times: verify records none yet (a timing is not byte-deterministic, and metrics must be). Any
top-level number named ``*_seconds`` in a metrics file becomes a CSV column (``TIME_SUFFIX``), ready
for a plot in dvc.yaml. No such plot is declared until a column exists: DVC fails on a missing field.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path

from kfreeze.targets.registry import EXTRA

# The siblings (metrics "targets", kfreeze.targets): size, ops and parity per target; empty when not built.
TARGET_COLUMNS = {"onnx": ("bytes_onnx", "ops_onnx", "onnx_max_rel_diff", "onnx_rel_digits",
                           "opencv_onnx_max_abs_diff"),
                  "tflite": ("bytes_tflite", "ops_tflite", "tflite_max_rel_diff", "tflite_rel_digits")}
COLUMNS = ("model", "ops_frozen", "ops_optimized", "bytes_frozen", "bytes_optimized",
           "max_abs_diff", "max_rel_diff", "opencv_max_abs_diff",
           "abs_digits", "rel_digits", "opencv_abs_digits", *[c for cols in TARGET_COLUMNS.values() for c in cols])
DIGITS = {"abs_digits": "max_abs_diff", "rel_digits": "max_rel_diff", "opencv_abs_digits": "opencv_max_abs_diff"}
TARGET_DIGITS = {f"{t}_rel_digits": f"{t}_max_rel_diff" for t in TARGET_COLUMNS}
# The other targets (kfreeze/targets/registry.py: openvino, saved_model...) get the same four columns, but
# only in a summary where some model built them, as the times: the files of projects that build none
# keep their bytes (and columns), and a plot can be declared for them once they exist.
OPTIONAL_TARGETS = tuple(t for t in EXTRA if t not in TARGET_COLUMNS)
EXACT_DIGITS = 16.0
TIME_SUFFIX = "_seconds"


def _number(value):
    """A finite int/float, or None (missing, null, a string, a bool, NaN/inf)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def digits(diff) -> float | None:
    """-log10 of a non-negative difference, rounded to 0.01; 0 -> EXACT_DIGITS; unusable -> None."""
    diff = _number(diff)
    if diff is None or diff < 0:
        return None
    if diff == 0:
        return EXACT_DIGITS
    return round(min(-math.log10(diff), EXACT_DIGITS), 2)


def _max_rel_diff(data: dict):
    """The top-level max_rel_diff, else the largest per-output rel_diff (when every output has one)."""
    if _number(data.get("max_rel_diff")) is not None:
        return data["max_rel_diff"]
    outputs = data.get("outputs")
    if isinstance(outputs, dict) and outputs:
        rels = [_number(o.get("rel_diff")) if isinstance(o, dict) else None for o in outputs.values()]
        if None not in rels:
            return max(rels)
    return None


def target_columns(target: str) -> tuple[str, ...]:
    return TARGET_COLUMNS.get(target) or (f"bytes_{target}", f"ops_{target}", f"{target}_max_rel_diff",
                                          f"{target}_rel_digits")


def _target_values(data: dict) -> dict:
    """The target columns from metrics' {"targets": {target: {bytes, ops, max_rel_diff, ...}}}; an optional
    target's only when this model built it."""
    targets = data.get("targets") if isinstance(data.get("targets"), dict) else {}
    row = {}
    built = [t for t in OPTIONAL_TARGETS if isinstance(targets.get(t), dict)]
    for target, columns in [*TARGET_COLUMNS.items(), *((t, target_columns(t)) for t in built)]:
        got = targets.get(target) if isinstance(targets.get(target), dict) else {}
        row.update({f"bytes_{target}": _number(got.get("bytes")), f"ops_{target}": _number(got.get("ops")),
                    f"{target}_max_rel_diff": _max_rel_diff(got) if got else None})
        if "opencv_onnx_max_abs_diff" in columns:
            row["opencv_onnx_max_abs_diff"] = _number(got.get("opencv_max_abs_diff"))
    return row


def model_row(name: str, data: dict) -> dict:
    row = {"model": name, **{k: _number(data.get(k)) for k in COLUMNS[1:] if k not in DIGITS}}
    row["max_rel_diff"] = _max_rel_diff(data)
    row.update(_target_values(data))
    constant = bool(data.get("constant_outputs"))
    for column, source in {**DIGITS, **TARGET_DIGITS}.items():
        row[column] = None if constant else digits(row[source])
    for target in OPTIONAL_TARGETS:
        if f"{target}_max_rel_diff" in row:
            row[f"{target}_rel_digits"] = None if constant else digits(row[f"{target}_max_rel_diff"])
    for key in sorted(data):
        if key.endswith(TIME_SUFFIX):
            row[key] = _number(data[key])
    return row


def summary_rows(metrics_dir: Path) -> list[dict]:
    rows = []
    for path in sorted(Path(metrics_dir).glob("*.json")):
        data = json.loads(path.read_text())
        rows.append(model_row(path.stem, data if isinstance(data, dict) else {}))
    return rows


def _optional_targets(rows: list[dict]) -> list[str]:
    """The optional targets some row has: their columns go into the summary."""
    return [t for t in OPTIONAL_TARGETS if any(f"bytes_{t}" in row for row in rows)]


def csv_text(rows: list[dict]) -> str:
    times = sorted({k for row in rows for k in row if k.endswith(TIME_SUFFIX)})
    optional = [c for t in _optional_targets(rows) for c in target_columns(t)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS) + optional + times, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows([{k: ("" if v is None else v) for k, v in row.items()} for row in rows])
    return buf.getvalue()


def parity_json(rows: list[dict]) -> str:
    """{model: {abs_digits, rel_digits, opencv_abs_digits, onnx_rel_digits, tflite_rel_digits}}: the metrics
    file for ``dvc metrics diff``."""
    optional = [f"{t}_rel_digits" for t in _optional_targets(rows)]
    table = {row["model"]: {k: row.get(k) for k in (*DIGITS, *TARGET_DIGITS, *optional)} for row in rows}
    return json.dumps(table, indent=2, sort_keys=True) + "\n"


def write_summary(metrics_dir: Path, out: Path, parity: Path | None = None) -> None:
    from kfreeze import atomic

    rows = summary_rows(metrics_dir)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, csv_text(rows))
    if parity is not None:
        Path(parity).parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(parity, parity_json(rows))


if __name__ == "__main__":
    args = sys.argv[1:4] + ["metrics", "plots/models.csv", "plots/parity.json"][len(sys.argv[1:4]):]
    write_summary(Path(args[0]), Path(args[1]), Path(args[2]))
