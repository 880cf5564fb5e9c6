"""Regenerate the pasted outputs of README.md and docs/*.md from real runs, so that they cannot drift.

Each block sits between markers in one of those pages and is written by one function here:

- ``repro`` (``<!-- real-run:start -->``): clones this repository's HEAD into a scratch
  folder, runs `dvc repro` there with the project's `.venv` (a full build of every example)
  and pastes the abridged transcript: every line of the first model's stages, then each
  other model's optimize and verify lines. Minutes.
- named blocks (``<!-- real-run:NAME:start -->``, ``BLOCKS``): the README's ``kfreeze run``,
  ``kfreeze nodes`` and error examples, each command run as a user types it (a ``kfreeze``
  process in a scratch folder) and pasted with its output. About a minute for all.

Usage: `python docs/readme_run.py [--check] [BLOCK ...]` (default: every block); `--check`
exits 1 when the README differs (the timing line excepted: it is measured, not reproducible).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- real-run:start -->", "<!-- real-run:end -->"
NOISE = re.compile(r"^([IWE]\d{4} |To enable auto staging|\s*dvc config core.autostage|Use `dvc push`|Updating lock file|$)")
# What TensorFlow's C++ side may print before kfreeze quiets it: not the command's output.
TF_NOISE = re.compile(r"^([IWE]\d{4} |WARNING: All log messages before absl|To enable the following instructions|"
                      r"oneDNN custom operations|.*cuda|.*TF_ENABLE_ONEDNN_OPTS)")


def transcript(repo: Path) -> tuple[list[str], float]:
    t0 = time.monotonic()
    # --no-run-cache: every stage runs, so no "is cached" line depends on what ran before.
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "dvc"), "repro", "--no-run-cache"], cwd=repo,
                          capture_output=True, text=True)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"dvc repro failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return [ln.rstrip() for ln in proc.stdout.splitlines() if not NOISE.match(ln)], seconds


def abridge(lines: list[str], first: str) -> list[str]:
    """All of ``first``'s stages (with DVC's headers), then the optimize/verify result lines of the rest."""
    keep, current = [], None
    for ln in lines:
        m = re.match(r"Running stage '(\w+)@([\w-]+)'", ln)
        if m:
            current = m.group(2)
            if current == first:
                keep.append(ln)
            continue
        if current == first:
            keep.append(ln)
    keep.append("...")
    for ln in lines:
        name = ln.split(":", 1)[0]
        if name != first and re.match(r"^[\w-]+: (\d+ -> \d+ ops|max_abs_diff|Converted)", ln):
            keep.append(ln)
    return keep


def block(lines: list[str], seconds: float, models: int) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return (f"{START}\n`dvc repro` building all {models} examples from scratch ({minutes} min {secs} s on this 2-core "
            "machine, install excluded; written by `python docs/readme_run.py`, abridged to the first model's "
            "stages and each other model's results):\n\n```\n" + "\n".join(lines) + f"\n```\n{END}")


def repro_block() -> str:
    """The text between the ``real-run`` markers, from a `dvc repro` in a fresh clone."""
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        (repo / ".venv").symlink_to(ROOT / ".venv")
        # From scratch: no outputs and no dvc.lock. With the lock, DVC skips a stage whose recorded
        # output it already has in the cache (the 'not requested' markers are the same bytes for
        # every model): "is cached" lines that depend on whether the lock is current.
        for out in ("build", "metrics", "dvc.lock"):
            subprocess.run(["rm", "-rf", str(repo / out)], check=True)
        lines, seconds = transcript(repo)
    models = sorted({m.group(1) for ln in lines if (m := re.match(r"^([\w-]+): \d+ -> \d+ ops", ln))})
    first = next((ln.split("@")[1].rstrip("':") for ln in lines if "@" in ln), "")  # 'names' runs first, for all
    return block(abridge(lines, first), seconds, len(models))


# -- named blocks: kfreeze commands as a user types them --------------------------------------

def kfreeze(cwd: Path, shown: str, *args: str) -> str:
    """``$ <shown>`` and what ``kfreeze ARGS`` prints (stdout and stderr, in order) run in ``cwd``."""
    # No progress lines: they are measured times, and the tests' environment turns them off anyway.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "KFREEZE_QUIET": "1"}
    env.pop("KFREEZE_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "kfreeze.cli", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)
    lines = [ln.rstrip() for ln in proc.stdout.splitlines() if ln.strip() and not TF_NOISE.match(ln)]
    return "\n".join([f"$ {shown}", *lines])


def console(*parts: str) -> str:
    return "```console\n" + "\n".join(parts) + "\n```"


def run_block(tmp: Path) -> str:
    """`kfreeze run` on a tiny conv + batch-norm + dense model (the tests' ``build_tiny``)."""
    sys.path.insert(0, str(ROOT))
    from tests.conftest import build_tiny
    build_tiny(name="mynet").save(tmp / "mynet.keras")
    return console(kfreeze(tmp, "kfreeze run mynet.keras --input-shape '[1, 8, 8, 1]'",
                           "run", "mynet.keras", "--input-shape", "[1, 8, 8, 1]"))


def nodes_block(tmp: Path) -> str:
    """`kfreeze nodes` on two_heads' exported graph, and on its optimized graph (with OpenCV's names)."""
    folder = tmp / "models" / "two_heads"
    shutil.copytree(ROOT / "models" / "two_heads", folder)
    subprocess.run([sys.executable, "-m", "kfreeze.cli", "run", str(folder / "model.keras"), "--out",
                    str(tmp / "build" / "two_heads")], cwd=tmp, env={**os.environ, "PYTHONPATH": str(ROOT)},
                   capture_output=True, check=True, timeout=600)
    return console(*(kfreeze(tmp, f"kfreeze nodes build/two_heads/{f}", "nodes", f"build/two_heads/{f}")
                     for f in ("graph.pbtxt", "optimized.pb")))


def errors_block(tmp: Path) -> str:
    """A misspelt output name (``outputs: [prob]`` for digits) at freeze, and a file given as a model name."""
    shutil.copytree(ROOT / "models" / "digits", tmp / "models" / "digits")
    (tmp / "params.yaml").write_text("models:\n  digits:\n    source: models/digits/model.keras\n"
                                     "    outputs: [prob]\ngraphs: {}\n")
    for stage in ("convert", "export"):
        subprocess.run([sys.executable, "-m", "kfreeze.cli", stage, "digits"], cwd=tmp, capture_output=True,
                       check=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return console(kfreeze(tmp, "kfreeze freeze digits        # with outputs: [prob] in params.yaml",
                           "freeze", "digits"),
                   kfreeze(tmp, "kfreeze convert models/digits/model.keras", "convert", "models/digits/model.keras"))


BLOCKS = {"run": run_block, "nodes": nodes_block, "errors": errors_block}


def markers(name: str) -> tuple[str, str]:
    return (START, END) if name == "repro" else (f"<!-- real-run:{name}:start -->", f"<!-- real-run:{name}:end -->")


def generate(name: str) -> str:
    """The block ``name`` with its markers."""
    if name == "repro":
        return repro_block()
    with tempfile.TemporaryDirectory(prefix=f"readme-{name}-") as tmp:
        text = BLOCKS[name](Path(tmp))
    start, end = markers(name)
    return f"{start}\n{text}\n{end}"


def main(check: bool = False, names: list[str] | None = None) -> int:
    names = names or ["repro", *BLOCKS]
    unknown = [n for n in names if n != "repro" and n not in BLOCKS]
    if unknown:
        sys.exit(f"unknown block {unknown[0]!r}; blocks: repro, {', '.join(BLOCKS)}")
    pages = {path: path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}
    # Measured times are not reproducible: the repro block's total and the progress lines' step times.
    timing = re.compile(r"\(\d+ min \d+ s on|(?<=\.\.\. )\d+\.\d s")
    differ = []
    for name in names:
        start, end = markers(name)
        page = next((p for p, text in pages.items() if start in text and end in text), None)
        if page is None:
            sys.exit(f"no page (README.md, docs/*.md) has a {start} ... {end} block")
        text = pages[page]
        new = generate(name)
        a, b = text.index(start), text.index(end) + len(end)
        if check:
            if timing.sub("(", text[a:b]) != timing.sub("(", new):
                differ.append(name)
                print(f"block {name!r} in {page.relative_to(ROOT)} differs; it is now:\n{new}")
            continue
        pages[page] = text[:a] + new + text[b:]
        print(new)
    if check:
        print("README blocks are current: " + ", ".join(names) if not differ else f"differ: {', '.join(differ)}")
        return 1 if differ else 0
    for page, text in pages.items():
        if page.read_text() != text:
            page.write_text(text)
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(main("--check" in args, [a for a in args if a != "--check"]))
