"""Graph-aware comparison of two revisions' optimized graphs.

The pure functions take GraphDefs (and the names from ``names.json``) and return plain,
JSON-ready dicts. ``open_revision`` reads a revision's ``params.yaml`` from git and its artifacts
through DVC (``dvc.api.DVCFileSystem``: the local cache, else the workspace's default remote)
without checking anything out; ``rev=None`` reads the workspace.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import yaml

from kfreeze.errors import KfreezeError
from kfreeze.params import KEYS, MODEL_SECTIONS, VERIFY
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2

from kfreeze.optimize.context import placeholder_name

SECTIONS = MODEL_SECTIONS
WORKSPACE = "workspace"


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
    from kfreeze.verify import compare, make_inputs, placeholder_infos, run_batched, run_graph

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
            feeds = make_inputs(infos, setting["samples"], setting["seed"])
        except KfreezeError as e:
            return {"max_abs_diff": None, "outputs": {}, "note": f"cannot make inputs: {e.problem}"}
        ya = run_batched(lambda f: run_graph(a, f, shared), feeds, batch)
        yb = run_batched(lambda f: run_graph(b, f, shared), feeds, batch)
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

def repo_root(start: Path | str = ".") -> Path:
    """The git work tree containing ``start``."""
    proc = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=start, capture_output=True, text=True)
    if proc.returncode != 0:
        raise KfreezeError(Path(start).resolve(), "not inside a git repository",
                           "run kfreeze diff from the project's git work tree")
    return Path(proc.stdout.strip())


def _git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else ""


@dataclass
class Revision:
    """One side of a comparison: a git revision, or the workspace (rev None).

    Git-tracked files (params.yaml, dvc.lock) come from git. DVC-tracked artifacts come through
    DVC at that commit: the local cache (``.dvc/cache``) first, then the workspace's default remote.
    """
    root: Path
    rev: Optional[str]
    sha: Optional[str] = None
    params: dict = field(default_factory=dict)
    _fs: Any = None

    @property
    def label(self) -> str:
        if self.rev is None:
            return WORKSPACE
        return self.rev if self.sha.startswith(self.rev) else f"{self.rev} ({self.sha[:7]})"

    @property
    def models(self) -> list[str]:
        return sorted(name for s in SECTIONS for name in (self.params.get(s) or {}))

    @property
    def verify(self) -> dict:
        raw = self.params.get("verify") or {}
        return {k: raw.get(k, KEYS[VERIFY][k].default) for k in ("samples", "seed")}

    def read(self, path: str, what: str) -> bytes:
        """A file at this revision: git-tracked, or DVC-tracked (local cache first, then the remote)."""
        if self.rev is None:
            file = self.root / path
            if not file.is_file():
                raise KfreezeError(file, f"{what} not found in the workspace",
                                   "run 'dvc repro' (it restores outputs from the cache, else rebuilds them)")
            return file.read_bytes()
        data = git_file(self.root, self.sha, path)
        if data is not None:
            return data
        try:
            return self._fs.read_bytes(path)
        except Exception as e:  # not in the cache and no remote has it, remote unreachable, not an output...
            reason = " ".join(str(e).split())[:160] or type(e).__name__
            raise missing_artifact(self, path, what, reason) from None


def git_file(root: Path, sha: str, path: str) -> Optional[bytes]:
    """``path`` as committed at ``sha``, or None when git does not track it there."""
    proc = subprocess.run(["git", "show", f"{sha}:{path}"], cwd=root, capture_output=True)
    return proc.stdout if proc.returncode == 0 else None


def locked_md5(lock: Optional[bytes], path: str) -> Optional[str]:
    """The md5 that a dvc.lock records for the output ``path`` (or the directory output holding it)."""
    if not lock:
        return None
    try:
        data = yaml.safe_load(lock) or {}
    except yaml.YAMLError:
        return None
    for stage in (data.get("stages") or {}).values():
        for out in (stage or {}).get("outs") or []:
            out_path = str(out.get("path", "")).rstrip("/")
            if path == out_path or path.startswith(out_path + "/"):
                return out.get("md5")
    return None


def _storage(root: Path) -> tuple[Optional[Path], Optional[str], Optional[str]]:
    """(local cache dir, default remote name, its URL) of the workspace's DVC config."""
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            name = repo.config["core"].get("remote")
            url = repo.config.get("remote", {}).get(name, {}).get("url") if name else None
            return Path(repo.cache.local_cache_dir), name, url
    except Exception:
        return None, None, None


def missing_artifact(revision: Revision, path: str, what: str, reason: str) -> KfreezeError:
    """One line saying why ``path`` at ``revision`` cannot be read, with a command that fixes it.

    Every fix named here is exercised in tests/compare/test_revisions.py.
    """
    sha, where = revision.sha[:7], f"{path} at {revision.label}"
    rebuild = f"'git checkout {sha} && dvc repro && git checkout - && dvc checkout'"
    md5 = locked_md5(git_file(revision.root, revision.sha, "dvc.lock"), path)
    if md5 is None:
        return KfreezeError(where, f"{what} was not built at that commit (its dvc.lock does not list {path})",
                            f"compare a commit whose dvc.lock lists it, or build it and compare against "
                            f"the workspace: 'git checkout {sha} && dvc repro', then 'kfreeze diff OTHER_REV'")
    cache, remote, url = _storage(revision.root)
    in_cache = cache is not None and (cache / "files" / "md5" / md5[:2] / md5[2:]).is_file()
    if in_cache:  # DVC failed for another reason: say it
        return KfreezeError(where, f"DVC cannot read {what} from the local cache ({reason})",
                            "check 'dvc doctor' and the cache directory's permissions")
    if remote is None:
        return KfreezeError(where, f"{what} (md5 {md5}) is not in the local DVC cache, and no default DVC remote is "
                            "configured", f"rebuild it into the cache: {rebuild}, or add the remote that has it "
                            "('dvc remote add -d NAME URL')")
    if url and "://" not in str(url) and not Path(url).is_dir():
        return KfreezeError(where, f"{what} (md5 {md5}) is not in the local DVC cache, and remote '{remote}' "
                            f"points at {url}, which does not exist", f"point the remote at its real location "
                            f"('dvc remote modify --local {remote} url PATH'), or rebuild it into the cache: {rebuild}")
    return KfreezeError(where, f"{what} (md5 {md5}) is neither in the local DVC cache nor in remote '{remote}' "
                        f"({url})", f"rebuild it into the cache: {rebuild}; or, where it was built, push every "
                        f"commit's artifacts: 'dvc remote add --local -f {remote} {url} && dvc push "
                        f"--all-commits -r {remote}' (see README: Share and compare)")


def open_revision(root: Path, rev: Optional[str]) -> Revision:
    """A revision's params; its artifacts are read lazily by ``load_model``."""
    root = Path(root)
    if rev is None:
        params_file = root / "params.yaml"
        if not params_file.is_file():
            raise KfreezeError(params_file, "params file not found", "run kfreeze diff in the project root")
        return Revision(root, None, None, _load_yaml(params_file.read_bytes(), params_file))
    sha = _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if not sha:
        raise KfreezeError(root, f"revision '{rev}' not found",
                           "give a commit, branch or tag that 'git log' shows (fetch it first if it is remote)")
    revision = Revision(root, rev, sha)
    params = git_file(root, sha, "params.yaml")
    if params is None:
        raise KfreezeError(f"params.yaml at {revision.label}", "no params.yaml in that commit",
                           "give a commit of this kfreeze project ('git log -- params.yaml' lists them)")
    revision.params = _load_yaml(params, f"params.yaml at {revision.label}")
    from dvc.api import DVCFileSystem
    try:
        revision._fs = DVCFileSystem(str(root), rev=sha, config=_workspace_storage(root))
    except Exception as e:
        raise KfreezeError(f"{root} at {rev}", f"DVC cannot read this revision ({' '.join(str(e).split())[:200]})",
                           "check that it is a DVC project at that commit ('git show REV:dvc.yaml')") from None
    return revision


def _workspace_storage(root: Path) -> dict | None:
    """Today's remotes and cache for every revision.

    DVC reads a revision with the config committed at that revision, which for an older commit
    may predate 'dvc remote add'; DVC's own overlay only carries today's default remote. Without
    a default remote, DVC points the revision at the local cache (its 'auto-generated-upstream'
    remote): a 'remote' section here would replace that and break every read, so none is given.
    """
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            config = repo.config
            storage: dict = {"cache": {"dir": repo.cache.local_cache_dir}}
            if config["core"].get("remote"):
                storage["remote"] = {name: dict(conf) for name, conf in config.get("remote", {}).items()}
                storage["core"] = {"remote": config["core"]["remote"]}
            return storage
    except Exception:
        return None  # not a DVC workspace right now: the revision's own config only


def _load_yaml(data: bytes, where) -> dict:
    try:
        from kfreeze.params import safe_yaml  # alias bombs and duplicate keys refused, as for the working tree
        params = safe_yaml(data, where) or {}
    except yaml.YAMLError as e:
        raise KfreezeError(where, f"not valid YAML ({getattr(e, 'problem', e)})", "fix the params file") from None
    if not isinstance(params, dict):
        raise KfreezeError(where, "not a mapping", "see README")
    return params


def load_model(revision: Revision, model: str) -> tuple[graph_pb2.GraphDef, dict]:
    """build/<model>/optimized.pb and names.json at a revision."""
    data = revision.read(f"build/{model}/optimized.pb", f"the optimized graph of '{model}'")
    names = json.loads(revision.read(f"build/{model}/names.json", f"names.json of '{model}'"))
    graph = graph_pb2.GraphDef()
    try:
        graph.ParseFromString(data)
    except Exception:
        raise KfreezeError(f"build/{model}/optimized.pb at {revision.label}", "not a binary GraphDef",
                           "rebuild it with 'dvc repro'") from None
    return graph, names


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
            entry.update(compare_graphs(ga, names_a, gb, names_b, [a.verify, b.verify], drift=drift))
        results.append(entry)
    return {"a": a.label, "b": b.label, "a_sha": a.sha, "b_sha": b.sha,
            "equivalent": all(r["equivalent"] for r in results), "models": results}
