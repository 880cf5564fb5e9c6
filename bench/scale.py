"""kfreeze's DVC pipeline with many models (issue 24): how long `dvc status`, a no-op `dvc repro` and
`dvc repro --dry` take with N models, and what a one-model edit of params.yaml reruns.

A benchmark, not a test: nothing fails when a target is missed, the numbers are written down
(bench/README.md, section 'scale', says how the scratch project is made and why that is honest).

    python bench/scale.py --models 200 --out bench/          # also N=4 for comparison (--compare)
    python bench/scale.py --check-identical --work /tmp/w    # only: are two models' builds the same bytes?

Building N models for real would take hours (every stage process imports TensorFlow), so one model,
m000, is built for real (`dvc repro verify@m000`); every model's source is the same model.keras, so
each other model's build/<name>/ and metrics/<name>.json are copies of m000's (the --check-identical
phase builds two such models for real and lists the files that differ, and the bytes that do), and
`dvc commit -f` records every stage in dvc.lock.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TARGETS = {"status_s": 10.0, "noop_repro_s": 10.0}  # the targets, 200 models, idle machine
EDITS = {  # what the one-model edit sets in that model's params entry
    "input_shape": ("input_shape", [1, 8, 8, 1]),
    "atol": ("verify", {"atol": 2.0e-4}),
}


# --------------------------------------------------------------------------- pure helpers (tested)

def model_names(n: int) -> list[str]:
    """m000, m001, ...: names of one length, so a name inside an artifact is replaced byte for byte."""
    width = max(3, len(str(n - 1)))
    return [f"m{i:0{width}d}" for i in range(n)]


def params_dict(names: list[str], edit: str | None = None, edited: str | None = None) -> dict:
    """params.yaml for ``names``: every entry just its source (the rest are defaults); with ``edit``,
    the entry ``edited`` also gets EDITS[edit]."""
    models = {}
    for name in names:
        entry = {"source": f"models/{name}/model.keras"}
        if edit is not None and name == edited:
            key, value = EDITS[edit]
            entry[key] = value
        models[name] = entry
    return {"models": models, "graphs": {}, "verify": {"samples": 4, "seed": 0}}


def params_text(names: list[str], edit: str | None = None, edited: str | None = None) -> str:
    import yaml
    return yaml.safe_dump(params_dict(names, edit, edited), sort_keys=False)


def stages_ran(output: str) -> list[str]:
    """The stages a `dvc repro` ran (each one process), in order."""
    return re.findall(r"Running stage '([^']+)'", output)


def stages_skipped(output: str) -> int:
    """How many stages a `dvc repro` found unchanged."""
    return len(re.findall(r"Stage '[^']+' didn't change, skipping", output))


def status_changed(output: str) -> list[str]:
    """The stages `dvc status` lists (a stage is a line 'name:' at the left margin)."""
    if "Data and pipelines are up to date" in output:
        return []
    return [m.group(1) for m in re.finditer(r"^([^\s#][^:\n]*):\s*$", output, re.M)]


def median(times: list[float]) -> float:
    return round(statistics.median(times), 2)


def differing_files(a: dict[str, bytes], b: dict[str, bytes], name_a: str, name_b: str) -> dict[str, str]:
    """{relative path: why} for the files of two builds (path -> bytes, the model's name in the paths
    spelled as in build a) that differ: 'name' when replacing name_a by name_b in a's bytes gives b's,
    'other' otherwise, 'missing' when one side lacks it."""
    out = {}
    for path in sorted(set(a) | set(b)):
        if path not in a or path not in b:
            out[path] = "missing"
        elif a[path] != b[path]:
            out[path] = "name" if a[path].replace(name_a.encode(), name_b.encode()) == b[path] else "other"
    return out


def result_markdown(results: dict) -> str:
    """bench/scale_results.md from the results dict."""
    lines = ["# kfreeze pipeline with many models (bench/scale.py)", "",
             f"Date: {results['date']}. Machine: {results['machine']}. DVC {results['dvc']}. "
             f"Wall time, median of {results['reps']} runs (each run listed in scale_results.json).", ""]
    check = results.get("identical_check")
    if check:
        lines += ["## Two models from one model file, both built for real", "",
                  f"{check['files']} files under build/<name>/ and metrics/<name>.json; "
                  f"{len(check['differ'])} differ: "
                  + (", ".join(f"`{p}` ({why})" for p, why in sorted(check["differ"].items())) or "none")
                  + ".", ""]
    runs = results["runs"]
    ns = sorted(runs, key=int)
    lines += ["## Times (seconds)", "", "| | " + " | ".join(f"{n} models" for n in ns) + " |",
              "|---|" + "---|" * len(ns)]
    rows = [("stages in dvc.yaml", "stages"), ("`dvc status`", "status_s"), ("no-op `dvc repro`", "noop_repro_s"),
            ("`dvc repro --dry`", "dry_repro_s"), ("`dvc status` after the edit", "edit_status_s"),
            ("`dvc repro` after the edit", "edit_repro_s"), ("load average before timing", "load_before_timing"), ("build m000 for real", "build_one_s"),
            ("`dvc commit -f` of every stage", "commit_s")]
    for label, key in rows:
        lines.append(f"| {label} | " + " | ".join(str(runs[n].get(key, "")) for n in ns) + " |")
    lines += ["", "## The one-model edit", ""]
    for n in ns:
        r = runs[n]
        lines += [f"{n} models: `{r['edit']}` of `{r['edited']}`. `dvc status` listed "
                  f"{len(r['edit_status_listed'])} stage(s): {', '.join(r['edit_status_listed']) or 'none'}. "
                  f"`dvc repro` ran {len(r['edit_ran'])} stage(s) (one process each): {', '.join(r['edit_ran'])}; "
                  f"only resolve and {r['edited']}'s: {r['edit_only_that_model']}.", ""]
    lines += ["## Targets (issue 24, 200 models)", ""]
    for key, limit in sorted(TARGETS.items()):
        for n in ns:
            if int(n) >= 200:
                v = runs[n][key]
                lines.append(f"- {key} ≤ {limit} s: {v} s, {'met' if v <= limit else 'missed'} ({n} models)")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the scratch project

def env() -> dict:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(ROOT), "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com",
            "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.com", "DVC_NO_ANALYTICS": "1"}


def run(cmd: list[str], cwd: Path, check: bool = True) -> tuple[float, str]:
    """(wall seconds, stdout + stderr)."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if check and p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{p.stdout}\n{p.stderr}")
    return dt, p.stdout + p.stderr


def model_file(work: Path) -> Path:
    """One tiny Keras model (tests/conftest.py build_tiny), saved once."""
    path = work / "tiny.keras"
    if not path.exists():
        sys.path.insert(0, str(ROOT))
        from tests.conftest import build_tiny
        build_tiny(0).save(path)
    return path


def make_project(repo: Path, names: list[str], model: Path) -> Path:
    """As tests/compare/repo_helpers.py make_repo: dvc.yaml, .dvcignore, stages/, kfreeze/, one
    models/<name>/model.keras per name (the same bytes), params.yaml; git and DVC initialised."""
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    for item in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / item, repo / item)
    for item in ("stages", "kfreeze"):
        shutil.copytree(ROOT / item, repo / item, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / ".gitignore").write_text("__pycache__/\n*.pyc\n")
    for name in names:
        (repo / "models" / name).mkdir(parents=True)
        shutil.copy(model, repo / "models" / name / "model.keras")
    (repo / "params.yaml").write_text(params_text(names))
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["dvc", "config", "core.analytics", "false"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "scratch project"], repo)
    return repo


def model_files(repo: Path, name: str) -> dict[str, bytes]:
    """build/<name>/** and metrics/<name>.json, paths relative with the name replaced by NAME."""
    found = {}
    for path in sorted((repo / "build" / name).rglob("*")):
        if path.is_file():
            found["build/NAME/" + str(path.relative_to(repo / "build" / name))] = path.read_bytes()
    found["metrics/NAME.json"] = (repo / "metrics" / f"{name}.json").read_bytes()
    return found


def check_identical(work: Path, model: Path) -> dict:
    """Two models from one model file, both built for real: which of their files differ, and how."""
    names = model_names(2)
    repo = make_project(work / "identical", names, model)
    dt, _ = run(["dvc", "repro", *(f"verify@{n}" for n in names)], repo)
    a, b = model_files(repo, names[0]), model_files(repo, names[1])
    differ = differing_files(a, b, names[0], names[1])
    print(f"identical check: {len(a)} files, differ {differ} ({dt:.0f} s)", flush=True)
    return {"files": len(a), "differ": differ, "build_s": round(dt, 1),
            "sha256": {p: hashlib.sha256(v).hexdigest()[:16] for p, v in a.items()}}


def clone_artifacts(repo: Path, src: str, dst: str) -> None:
    """build/<src>/ -> build/<dst>/ and metrics/<src>.json -> metrics/<dst>.json, the name
    replaced inside files that hold it (same length: m000 -> m123)."""
    assert len(src) == len(dst)
    shutil.copytree(repo / "build" / src, repo / "build" / dst)
    shutil.copy(repo / "metrics" / f"{src}.json", repo / "metrics" / f"{dst}.json")
    for path in [*(repo / "build" / dst).rglob("*"), repo / "metrics" / f"{dst}.json"]:
        if path.is_file():
            data = path.read_bytes()
            if src.encode() in data:
                path.write_bytes(data.replace(src.encode(), dst.encode()))


def per_model_stage_groups() -> list[str]:
    from kfreeze import layout
    return [s.name for s in layout.STAGES]


def timed(cmd: list[str], repo: Path, reps: int) -> tuple[list[float], str]:
    times, out = [], ""
    for _ in range(reps):
        dt, out = run(cmd, repo)
        times.append(round(dt, 2))
    return times, out


def build_n(work: Path, n: int, model: Path) -> dict:
    """The scratch project with n models, every stage in dvc.lock (one model built for real)."""
    names = model_names(n)
    repo = make_project(work / f"n{n}", names, model)
    r: dict = {"models": n}
    r["build_one_s"] = round(run(["dvc", "repro", f"verify@{names[0]}"], repo)[0], 1)
    for name in names[1:]:
        clone_artifacts(repo, names[0], name)
    r["commit_s"] = round(run(["dvc", "commit", "-f", "-q", "resolve", *per_model_stage_groups()], repo)[0], 1)
    dt, out = run(["dvc", "repro"], repo)  # only 'summary' (the table of every model's metrics) is left
    r["first_repro_ran"] = stages_ran(out)
    r["first_repro_s"] = round(dt, 1)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "built"], repo)
    (repo / "build.json").write_text(json.dumps(r, sort_keys=True))  # for --reuse
    return r


def bench_n(work: Path, n: int, model: Path, reps: int, edit: str, reuse: bool = False) -> dict:
    names = model_names(n)
    repo = work / f"n{n}"
    if reuse and (repo / "build.json").is_file():  # built by an earlier run: only the timing
        r = json.loads((repo / "build.json").read_text())
    else:
        r = build_n(work, n, model)
    import yaml
    r["stages"] = len(yaml.safe_load((repo / "dvc.lock").read_text())["stages"])  # every stage is in it
    r["load_before_timing"] = round(os.getloadavg()[0], 1)  # 1-min load average: the machine's other jobs
    print(f"{n} models: {r['stages']} stages, built m000 in {r['build_one_s']} s, commit {r['commit_s']} s", flush=True)
    for key, cmd in (("status", ["dvc", "status"]), ("noop_repro", ["dvc", "repro"]),
                     ("dry_repro", ["dvc", "repro", "--dry"])):
        times, out = timed(cmd, repo, reps)
        r[f"{key}_runs_s"], r[f"{key}_s"] = times, median(times)
        if key == "noop_repro":
            r["noop_repro_ran"] = stages_ran(out)
            r["noop_repro_skipped"] = stages_skipped(out)
        print(f"  {key}: {times}", flush=True)
        if key == "status":
            assert status_changed(out) == [], out  # every stage up to date before the edit
    edited = names[len(names) // 2]
    (repo / "params.yaml").write_text(params_text(names, edit, edited))
    r["edit"], r["edited"] = edit, edited
    dt, out = run(["dvc", "status"], repo)
    r["edit_status_s"], r["edit_status_listed"] = round(dt, 2), status_changed(out)
    dt, out = run(["dvc", "repro"], repo)
    r["edit_repro_s"], r["edit_ran"] = round(dt, 1), stages_ran(out)
    r["edit_only_that_model"] = all(s in ("resolve", "summary") or s.endswith(f"@{edited}") for s in r["edit_ran"])
    print(f"  edit {edit} of {edited}: status listed {r['edit_status_listed']}; repro ran {r['edit_ran']} "
          f"in {r['edit_repro_s']} s", flush=True)
    times, _ = timed(["dvc", "status"], repo, 1)
    r["after_edit_status_s"] = times[0]
    return r


def machine() -> str:
    load = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {load[0]:.1f} at the start"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=200)
    ap.add_argument("--compare", type=int, default=4, help="also this many models (0: none)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--edit", choices=sorted(EDITS), default="input_shape")
    ap.add_argument("--out", type=Path, default=None, help="write scale_results.{md,json} here")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--check-identical", action="store_true", help="only build two models and compare")
    ap.add_argument("--reuse", action="store_true", help="time the projects an earlier run built in --work "
                    "(before its edit: git checkout params.yaml first)")
    ap.add_argument("--skip-check", action="store_true", help="skip the two-model build")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="kfreeze-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    model = model_file(work)
    results = {"date": datetime.date.today().isoformat(), "machine": machine(), "reps": args.reps,
               "dvc": run(["dvc", "--version"], work)[1].strip(), "runs": {}}
    if not args.skip_check:
        results["identical_check"] = check_identical(work, model)
        if args.check_identical:
            print(json.dumps(results["identical_check"], indent=1, sort_keys=True))
            return
    for n in sorted({args.models, args.compare} - {0}):
        results["runs"][str(n)] = bench_n(work, n, model, args.reps, args.edit, args.reuse)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "scale_results.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        (args.out / "scale_results.md").write_text(result_markdown(results))
    print(result_markdown(results))


if __name__ == "__main__":
    main()


def move_code_dep(lock: dict, md5: str, size: int, code: str = "build/settings/kfreeze.json") -> int:
    """dvc.lock (parsed) of a project built with the per-model stages depending on the ``kfreeze``
    folder, changed as `dvc commit -f` would record them depending on ``code`` (md5 and size of that
    file) instead: used to time the layout fix on an already built project without a quadratic
    `dvc commit` of every stage (`dvc status` afterwards rehashes everything and must say up to date).
    Returns how many stages changed."""
    changed = 0
    for name, stage in lock["stages"].items():
        if name in ("resolve", "summary"):
            continue
        deps = [d for d in stage["deps"] if d["path"] != "kfreeze"]
        if len(deps) != len(stage["deps"]):
            deps.append({"path": code, "hash": "md5", "md5": md5, "size": size})
            stage["deps"] = sorted(deps, key=lambda d: d["path"])
            changed += 1
    return changed
