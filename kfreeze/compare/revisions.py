"""A revision's params.yaml and built artifacts, read without checking anything out.

``params.yaml`` comes from git (``git show``); built files through DVC
(``dvc.api.DVCFileSystem``: the local cache first, else the workspace's default
remote). ``rev=None`` reads the workspace. When a file cannot be read, the error
says why (never built there, not in the cache, not on the remote) and gives a
command that fixes it.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from kfreeze.errors import KfreezeError
from kfreeze.params import KEYS, MODEL_SECTIONS as SECTIONS, VERIFY
from tensorflow.core.framework import graph_pb2

WORKSPACE = "workspace"


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

    def verify_for(self, model: str) -> dict:
        """``verify`` with the model's own ``verify:`` keys over the project's, as verify reads them."""
        merged = dict(self.verify)
        for section in SECTIONS:
            entry = (self.params.get(section) or {}).get(model)
            if isinstance(entry, dict) and isinstance(entry.get("verify"), dict):
                merged.update({k: entry["verify"][k] for k in ("samples", "seed") if k in entry["verify"]})
        return merged

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
