"""A ``diff_revisions`` result as a plain table (default), Markdown (--md) or JSON (--json)."""

from __future__ import annotations

import json
from typing import Any

MAX_NAMES = 8  # node names listed per section before "... and N more"


def _num(x) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    return f"{x:.3g}"


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES])
    return shown + (f", ... and {len(names) - MAX_NAMES} more" if len(names) > MAX_NAMES else "")


def _size(size: dict | None, key: str) -> str:
    return "-" if size is None else str(size[key])


def summary_row(entry: dict) -> dict[str, str]:
    size = entry.get("size") or {}
    row = {
        "model": entry["model"],
        "status": entry["status"],
        "ops": f"{_size(size.get('a'), 'ops')} -> {_size(size.get('b'), 'ops')}",
        "bytes": f"{_size(size.get('a'), 'bytes')} -> {_size(size.get('b'), 'bytes')}",
    }
    if entry["status"] in ("added", "removed"):
        row.update(signature="-", nodes="-", weights="-", max_abs_dw="-", max_rel_dw="-", drift="-")
        return row
    nodes, weights, drift = entry["nodes"], entry["weights"], entry["drift"]
    changes = entry["signature"]["changes"]
    row.update(
        signature="same" if not changes else f"{len(changes)} change{'s' * (len(changes) > 1)}",
        nodes=f"+{len(nodes['added'])} -{len(nodes['removed'])} ~{len(nodes['changed'])}",
        weights=f"{weights['changed']}/{weights['compared']}" + (f" ({len(weights['reshaped'])} reshaped)"
                                                                 if weights["reshaped"] else ""),
        max_abs_dw=_num(weights["max_abs_change"]),
        max_rel_dw=_num(weights["max_rel_change"]),
        drift=_num(drift["max_abs_diff"]),
    )
    return row


HEADERS = {"model": "model", "status": "status", "ops": "ops", "bytes": "bytes", "signature": "signature",
           "nodes": "nodes +/-/~", "weights": "weights changed", "max_abs_dw": "max abs dw",
           "max_rel_dw": "max rel dw", "drift": "output drift"}


def details(entry: dict) -> list[str]:
    """Readable lines for one model that is not the same on both sides."""
    if entry["status"] == "removed":
        return ["model removed (not in params.yaml at the second revision)"]
    if entry["status"] == "added":
        return ["model added (not in params.yaml at the first revision)"]
    lines = [f"signature: {c}" for c in entry["signature"]["changes"]]
    if entry["ops"]:
        lines.append("ops: " + ", ".join(f"{op} {a} -> {b}" for op, (a, b) in entry["ops"].items()))
    for key in ("added", "removed", "changed"):
        if entry["nodes"][key]:
            lines.append(f"nodes {key} ({len(entry['nodes'][key])}): {_names(entry['nodes'][key])}")
    w = entry["weights"]
    if w["changed"]:
        lines.append(f"weights: {w['changed']} of {w['compared']} constants changed; largest abs change "
                     f"{_num(w['max_abs_change'])} ({w['max_abs_name']}), largest relative change "
                     f"{_num(w['max_rel_change'])} ({w['max_rel_name']})")
    if w["reshaped"]:
        lines.append(f"weights with another shape or dtype ({len(w['reshaped'])}): {_names(w['reshaped'])}")
    drift = entry["drift"]
    if drift.get("outputs"):
        runs = " and ".join(f"{r['samples']} samples, seed {r['seed']}" for r in drift.get("inputs", []))
        parts = []
        for name, value in drift["outputs"].items():
            agree = value.get("top1_agree")
            parts.append(f"{name} {_num(value['max_abs_diff'])}" + (f" (top1 agree {agree:.3g})" if agree is not None else ""))
        lines.append(f"output drift on the verification inputs ({runs}): " + ", ".join(parts))
    if drift.get("note") and drift["note"] != "identical graphs":
        lines.append(f"output drift: {drift['note']}")
    from kfreeze.compare.targets import target_lines
    return lines + target_lines(entry.get("targets") or {})


def _verdict(result: dict) -> str:
    changed = [m["model"] for m in result["models"] if not m["equivalent"]]
    if not changed:
        return f"equivalent: {len(result['models'])} model(s) compared, no difference"
    return f"differ: {', '.join(changed)}"


def as_text(result: dict) -> str:
    rows = [HEADERS] + [summary_row(m) for m in result["models"]]
    widths = {k: max(len(r[k]) for r in rows) for k in HEADERS}
    lines = [f"kfreeze diff {result['a']} -> {result['b']}", ""]
    for i, row in enumerate(rows):
        lines.append("  ".join(row[k].ljust(widths[k]) for k in HEADERS).rstrip())
        if i == 0:
            lines.append("  ".join("-" * widths[k] for k in HEADERS))
    for entry in result["models"]:
        if not entry["equivalent"]:
            lines += ["", f"{entry['model']}:"] + [f"  {line}" for line in details(entry)]
    lines += ["", _verdict(result)]
    return "\n".join(lines)


def as_markdown(result: dict) -> str:
    rows = [summary_row(m) for m in result["models"]]
    lines = [f"### kfreeze diff `{result['a']}` → `{result['b']}`", "",
             "| " + " | ".join(HEADERS.values()) + " |",
             "|" + "|".join("---" for _ in HEADERS) + "|"]
    lines += ["| " + " | ".join(r[k].replace("|", "\\|") for k in HEADERS) + " |" for r in rows]
    for entry in result["models"]:
        if not entry["equivalent"]:
            lines += ["", f"**{entry['model']}**", ""] + [f"- {line}" for line in details(entry)]
    lines += ["", f"**{_verdict(result)}**"]
    return "\n".join(lines)


def as_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, sort_keys=True, allow_nan=True)
