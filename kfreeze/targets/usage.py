"""What ``kfreeze run`` prints for each sibling: the file, how to load it, the names and shapes to feed.

Each target module says it (``usage``, and optionally ``note`` and ``checked`` for what its
``extra_check`` recorded): kfreeze/targets/registry.py."""

from __future__ import annotations

import json
from pathlib import Path

from kfreeze.targets import EXTRA, SIGNATURE, get


def verify_note(metrics: dict) -> str:
    """What verify's line adds for the siblings: '; onnx max_rel_diff 1.2e-07 (OpenCV ...); tflite ...'."""
    parts = []
    for target, got in (metrics.get("targets") or {}).items():
        text = f"{target} max_rel_diff {got['max_rel_diff']:.3g}" if got.get("max_rel_diff") is not None else \
            f"{target} failed"
        module = get(target).load()
        if hasattr(module, "note"):
            text += module.note(got)
        parts.append(text)
    return "".join(f"; {p}" for p in parts)


def usage_lines(out: Path, metrics: dict) -> list[str]:
    lines = []
    for target in EXTRA:
        sig_file = Path(out) / target / SIGNATURE
        if not sig_file.is_file():
            continue
        sig = json.loads(sig_file.read_text())
        if not sig.get("requested"):
            continue
        entry = get(target)
        module = entry.load()
        path = Path(out) / target / entry.file
        got = (metrics.get("targets") or {}).get(target, {})
        rel = got.get("max_rel_diff")
        lines += module.usage(path, sig, got)
        checked = f"  max_rel_diff {rel:.3g} against the source model" if rel is not None else "  not verified"
        if hasattr(module, "checked"):
            checked += module.checked(got)
        lines.append(checked)
    return lines
