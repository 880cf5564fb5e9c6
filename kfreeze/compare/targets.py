"""``kfreeze diff`` for the siblings (params ``targets``): which were built at each revision, and whether
their bytes, op counts or signatures changed. The graphs themselves are compared in ``diff``."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

from kfreeze.compare.revisions import Revision, git_file, locked_md5
from kfreeze.targets import EXTRA, FILES, SIGNATURE, get


def _built(revision: Revision, model: str, target: str) -> Optional[dict]:
    """{bytes, ops, sha256, signature} of BUILD/<model>/<target>/ at ``revision``, or None when that
    revision did not build the target (no such stage in its dvc.lock, or the target not requested)."""
    folder = f"build/{model}/{target}"
    if revision.rev is None:
        if not (revision.root / folder / SIGNATURE).is_file():
            return None
    elif locked_md5(git_file(revision.root, revision.sha, "dvc.lock"), f"{folder}/{SIGNATURE}") is None:
        return None
    signature = json.loads(revision.read(f"{folder}/{SIGNATURE}", f"the {target} signature of '{model}'"))
    if not signature.get("requested"):
        return None
    data = revision.read(f"{folder}/{FILES[target]}", f"the {target} file of '{model}'")
    digest = hashlib.sha256(data)
    for other in signature.get("other_files", []):  # e.g. OpenVINO's model.bin: the weights
        digest.update(revision.read(f"{folder}/{other}", f"the {target} file {other} of '{model}'"))
    return {"bytes": len(data), "ops": _ops(target, data), "sha256": digest.hexdigest(),
            "inputs": signature.get("inputs"), "outputs": signature.get("outputs")}


def _ops(target: str, data: bytes) -> Optional[int]:
    try:
        return get(target).load().op_count(data)
    except Exception:  # an unreadable file still has a size and a hash to compare
        return None


def compare_targets(a: Revision, b: Revision, model: str) -> dict[str, Any]:
    """{target: {status, a, b}} for every target built on either side; status same/changed/added/removed."""
    result = {}
    for target in EXTRA:
        side_a, side_b = _built(a, model, target), _built(b, model, target)
        if side_a is None and side_b is None:
            continue
        status = ("added" if side_a is None else "removed" if side_b is None
                  else "same" if side_a["sha256"] == side_b["sha256"] else "changed")
        result[target] = {"status": status, "a": side_a, "b": side_b}
    return result


def target_lines(targets: dict) -> list[str]:
    """One readable line per target that is not the same on both sides."""
    lines = []
    for target, entry in targets.items():
        a, b = entry["a"], entry["b"]
        if entry["status"] == "added":
            lines.append(f"{target}: {FILES[target]} added ({b['bytes']} bytes, {b['ops']} ops)")
        elif entry["status"] == "removed":
            lines.append(f"{target}: {FILES[target]} removed (not in targets at the second revision)")
        elif entry["status"] == "changed":
            io = "" if (a["inputs"], a["outputs"]) == (b["inputs"], b["outputs"]) else "; inputs/outputs changed"
            lines.append(f"{target}: {FILES[target]} changed, {a['bytes']} -> {b['bytes']} bytes, "
                         f"{a['ops']} -> {b['ops']} ops{io}")
    return lines
