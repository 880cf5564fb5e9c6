"""Graph-aware comparison of two revisions' optimized graphs.

The pure functions take GraphDefs (and the names from ``names.json``) and return plain,
JSON-ready dicts; ``diff_revisions`` reads both sides with ``kfreeze.compare.revisions``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from kfreeze.errors import KfreezeError
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2

from kfreeze.optimize.context import placeholder_name
from kfreeze.compare.revisions import load_model, open_revision



# --------------------------------------------------------------------------- pure comparisons

def _tensor(name: str) -> str:
    return name if ":" in name else f"{name}:0"


def _shape(shape: tf.TensorShape) -> Optional[list]:
    return None if shape.rank is None else shape.as_list()


def signature(graph: graph_pb2.GraphDef, names: dict) -> dict:
    """Inputs (the placeholders) and outputs with dtype and static shape (None = unknown)."""
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph, name="")
    sig = {}
    for kind, tensors in (("inputs", [placeholder_name(i) for i in names["inputs"]]), ("outputs", names["outputs"])):
        entries = []
        for name in tensors:
            try:
                t = g.get_tensor_by_name(_tensor(name))
                entries.append({"name": name, "dtype": t.dtype.name, "shape": _shape(t.shape)})
            except (KeyError, ValueError):
                entries.append({"name": name, "dtype": None, "shape": None})
        sig[kind] = entries
    return sig


def _fmt_shape(shape) -> str:
    return "?" if shape is None else "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def signature_changes(a: dict, b: dict) -> list[str]:
    """Readable lines, one per difference: added/removed inputs and outputs, dtype and shape changes."""
    lines = []
    for kind in ("inputs", "outputs"):
        one = kind[:-1]
        ea, eb = {e["name"]: e for e in a[kind]}, {e["name"]: e for e in b[kind]}
        for name in ea.keys() - eb.keys():
            lines.append(f"{one} '{name}' removed ({ea[name]['dtype']} {_fmt_shape(ea[name]['shape'])})")
        for name in eb.keys() - ea.keys():
            lines.append(f"{one} '{name}' added ({eb[name]['dtype']} {_fmt_shape(eb[name]['shape'])})")
        for name in ea.keys() & eb.keys():
            for key, fmt in (("dtype", str), ("shape", _fmt_shape)):
                if ea[name][key] != eb[name][key]:
                    lines.append(f"{one} '{name}' {key} {fmt(ea[name][key])} -> {fmt(eb[name][key])}")
        if not lines and [e["name"] for e in a[kind]] != [e["name"] for e in b[kind]]:
            lines.append(f"{kind} reordered: {[e['name'] for e in a[kind]]} -> {[e['name'] for e in b[kind]]}")
    return sorted(lines)


def op_histogram(graph: graph_pb2.GraphDef) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in graph.node:
        counts[node.op] = counts.get(node.op, 0) + 1
    return dict(sorted(counts.items()))


def op_delta(a: graph_pb2.GraphDef, b: graph_pb2.GraphDef) -> dict[str, list[int]]:
    """{op: [count in a, count in b]} for every op type whose count differs."""
    ha, hb = op_histogram(a), op_histogram(b)
    return {op: [ha.get(op, 0), hb.get(op, 0)] for op in sorted(ha.keys() | hb.keys()) if ha.get(op, 0) != hb.get(op, 0)}


def _without_value(node) -> bytes:
    copy = type(node)()
    copy.CopyFrom(node)
    if copy.op == "Const":
        del copy.attr["value"]
    return copy.SerializeToString(deterministic=True)


def node_delta(a: graph_pb2.GraphDef, b: graph_pb2.GraphDef) -> dict[str, list[str]]:
    """Nodes only in b (added), only in a (removed), and in both but with another op, inputs or
    attributes (changed). A Const whose only difference is its value is a weight change, not here."""
    na, nb = {n.name: n for n in a.node}, {n.name: n for n in b.node}
    changed = [name for name in sorted(na.keys() & nb.keys()) if _without_value(na[name]) != _without_value(nb[name])]
    return {"added": sorted(nb.keys() - na.keys()), "removed": sorted(na.keys() - nb.keys()), "changed": changed}


def weight_changes(a: graph_pb2.GraphDef, b: graph_pb2.GraphDef) -> dict[str, Any]:
    """Const nodes matched by name (and dtype and shape): how many changed, and the largest changes.

    ``max_abs_change`` is the largest |b - a| over all elements of all constants.
    ``max_rel_change`` is, over the constants, the largest max|b - a| / max|a|: how far a whole
    tensor moved relative to its own scale (an element-wise ratio explodes on values near zero).
    """
    na = {n.name: n for n in a.node if n.op == "Const"}
    nb = {n.name: n for n in b.node if n.op == "Const"}
    result: dict[str, Any] = {"compared": 0, "changed": 0, "changed_names": [], "reshaped": [],
                              "max_abs_change": 0.0, "max_abs_name": None, "max_rel_change": 0.0, "max_rel_name": None}
    for name in sorted(na.keys() & nb.keys()):
        ta, tb = na[name].attr["value"].tensor, nb[name].attr["value"].tensor
        if ta.SerializeToString(deterministic=True) == tb.SerializeToString(deterministic=True):
            result["compared"] += 1
            continue
        va, vb = tf.make_ndarray(ta), tf.make_ndarray(tb)
        if va.dtype != vb.dtype or va.shape != vb.shape:
            result["reshaped"].append(name)
            continue
        result["compared"] += 1
        if np.array_equal(va, vb):
            continue  # same values, another encoding
        result["changed"] += 1
        result["changed_names"].append(name)
        if va.dtype.kind in "fciub" and va.size:
            fa, fb = va.astype(np.float64), vb.astype(np.float64)
            absolute = float(np.max(np.abs(fb - fa)))
            scale = float(np.max(np.abs(fa)))
            relative = absolute / scale if scale > 0 else float("inf")
            if absolute > result["max_abs_change"]:
                result["max_abs_change"], result["max_abs_name"] = absolute, name
            if relative > result["max_rel_change"]:
                result["max_rel_change"], result["max_rel_name"] = relative, name
    return result


def output_drift(a: graph_pb2.GraphDef, names_a: dict, b: graph_pb2.GraphDef, names_b: dict,
                 verify_settings: list[dict]) -> dict[str, Any]:
    """Run both graphs on the verification inputs and compare the outputs they share.

    Needs the same inputs (names, dtypes, shapes). ``verify_settings`` holds each revision's
    {samples, seed}; both graphs run on the inputs of every distinct setting.
    """
    from kfreeze.verify import compare, index_limits, make_inputs, placeholder_infos, run_batched, run_graph

    sig_a, sig_b = signature(a, names_a), signature(b, names_b)
    if sig_a["inputs"] != sig_b["inputs"]:
        return {"max_abs_diff": None, "outputs": {}, "note": "inputs differ: not compared"}
    shared = [o for o in names_a["outputs"] if o in set(names_b["outputs"])]
    outs_a = {e["name"]: e for e in sig_a["outputs"]}
    outs_b = {e["name"]: e for e in sig_b["outputs"]}
    shared = [o for o in shared if outs_a[o] == outs_b[o]]
    if not shared:
        return {"max_abs_diff": None, "outputs": {}, "note": "no output in common: not compared"}
    feed_names = [placeholder_name(i) for i in names_a["inputs"]]
    infos = placeholder_infos(a, feed_names)
    batch = infos[0].shape[0] if infos and infos[0].shape else None
    per_output: dict[str, dict] = {}
    runs = []
    for setting in {(s["samples"], s["seed"]): s for s in verify_settings}.values():
        try:
            feeds = make_inputs(infos, setting["samples"], setting["seed"], index_limits=index_limits(a, feed_names))
        except KfreezeError as e:
            return {"max_abs_diff": None, "outputs": {}, "note": f"cannot make inputs: {e.problem}"}
        try:  # each graph passes the op policy before it runs: a committed graph is untrusted input
            ya = run_batched(lambda f: run_graph(a, f, shared, where="the older graph"), feeds, batch)
            yb = run_batched(lambda f: run_graph(b, f, shared, where="the newer graph"), feeds, batch)
        except KfreezeError as e:
            return {"max_abs_diff": None, "outputs": {}, "note": f"not run: {e.where}: {e.problem}"}
        runs.append(setting)
        for name, value in compare(ya, yb).items():
            old = per_output.get(name)
            if old is None or (value["max_abs_diff"] or 0) > (old["max_abs_diff"] or 0):
                per_output[name] = value
    diffs = [v["max_abs_diff"] for v in per_output.values() if v["max_abs_diff"] is not None]
    note = "" if len(shared) == len(names_a["outputs"]) == len(names_b["outputs"]) else f"shared outputs only: {shared}"
    return {"max_abs_diff": max(diffs) if diffs else None, "outputs": per_output,
            "inputs": [{"samples": s["samples"], "seed": s["seed"]} for s in runs], "note": note}


def compare_graphs(a: graph_pb2.GraphDef, names_a: dict, b: graph_pb2.GraphDef, names_b: dict,
                   verify_settings: list[dict], drift: bool = True) -> dict[str, Any]:
    """Everything ``kfreeze diff`` reports for one model present on both sides."""
    bytes_a, bytes_b = a.SerializeToString(deterministic=True), b.SerializeToString(deterministic=True)
    sig_a, sig_b = signature(a, names_a), signature(b, names_b)
    result = {
        "signature": {"a": sig_a, "b": sig_b, "changes": signature_changes(sig_a, sig_b)},
        "ops": op_delta(a, b),
        "nodes": node_delta(a, b),
        "weights": weight_changes(a, b),
        "size": {"a": {"ops": len(a.node), "bytes": len(bytes_a)}, "b": {"ops": len(b.node), "bytes": len(bytes_b)}},
    }
    if bytes_a == bytes_b and names_a == names_b:
        result["drift"] = {"max_abs_diff": 0.0, "outputs": {}, "note": "identical graphs"}
    elif drift:
        result["drift"] = output_drift(a, names_a, b, names_b, verify_settings)
    else:
        result["drift"] = {"max_abs_diff": None, "outputs": {}, "note": "not computed"}
    result["equivalent"] = is_equivalent(result)
    result["status"] = "same" if result["equivalent"] else "changed"
    return result


def is_equivalent(result: dict) -> bool:
    """Same signature, same nodes (op, inputs, attributes) and same weights; drift only informs."""
    nodes, weights = result["nodes"], result["weights"]
    return not (result["signature"]["changes"] or result["ops"] or nodes["added"] or nodes["removed"]
                or nodes["changed"] or weights["changed"] or weights["reshaped"])


# --------------------------------------------------------------------------- reading revisions

def diff_revisions(root: Path, rev_a: Optional[str], rev_b: Optional[str], model: Optional[str] = None,
                   drift: bool = True) -> dict[str, Any]:
    """Compare every model in either revision's params (or only ``model``)."""
    a, b = open_revision(root, rev_a), open_revision(root, rev_b)
    models = sorted(set(a.models) | set(b.models))
    if model is not None:
        if model not in models:
            raise KfreezeError(f"--model {model}", f"no model '{model}' in params.yaml at {a.label} or {b.label}",
                               f"models there: {', '.join(models) or 'none'}")
        models = [model]
    results = []
    for name in models:
        entry: dict[str, Any] = {"model": name}
        if name not in b.models:
            graph, _ = load_model(a, name)
            entry.update(status="removed", equivalent=False,
                         size={"a": {"ops": len(graph.node), "bytes": graph.ByteSize()}, "b": None})
        elif name not in a.models:
            graph, _ = load_model(b, name)
            entry.update(status="added", equivalent=False,
                         size={"a": None, "b": {"ops": len(graph.node), "bytes": graph.ByteSize()}})
        else:
            ga, names_a = load_model(a, name)
            gb, names_b = load_model(b, name)
            entry.update(compare_graphs(ga, names_a, gb, names_b, [a.verify_for(name), b.verify_for(name)], drift=drift))
            from kfreeze.compare.targets import compare_targets  # model.onnx, model.tflite (params targets)
            entry["targets"] = compare_targets(a, b, name)
            if any(t["status"] != "same" for t in entry["targets"].values()):
                entry.update(equivalent=False, status="changed")
        results.append(entry)
    return {"a": a.label, "b": b.label, "a_sha": a.sha, "b_sha": b.sha,
            "equivalent": all(r["equivalent"] for r in results), "models": results}
