"""Regenerate the README's "Output of a real run" block from a real `dvc repro`.

Clones this repository's HEAD into a scratch folder, runs `dvc repro` there with
the project's `.venv` (a full build of every example), and replaces the text
between the README's `real-run` markers with the abridged transcript: every
line of the first model's stages, then each other model's optimize and verify
lines. Usage: `python docs/readme_run.py [--check]`; `--check` exits 1 when the
README differs (the timing line excepted: it is measured, not reproducible).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- real-run:start -->", "<!-- real-run:end -->"
NOISE = re.compile(r"^([IWE]\d{4} |To enable auto staging|\s*dvc config core.autostage|Use `dvc push`|Updating lock file|$)")


def transcript(repo: Path) -> tuple[list[str], float]:
    t0 = time.monotonic()
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "dvc"), "repro"], cwd=repo, capture_output=True, text=True)
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


def main(check: bool = False) -> int:
    readme = (ROOT / "README.md").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        (repo / ".venv").symlink_to(ROOT / ".venv")
        for out in ("build", "metrics"):
            subprocess.run(["rm", "-rf", str(repo / out)], check=True)
        lines, seconds = transcript(repo)
    models = sorted({m.group(1) for ln in lines if (m := re.match(r"^([\w-]+): \d+ -> \d+ ops", ln))})
    new = block(abridge(lines, lines[0].split("@")[1].rstrip("':") if lines else ""), seconds, len(models))
    a, b = readme.index(START), readme.index(END) + len(END)
    old = readme[a:b]
    timing = re.compile(r"\(\d+ min \d+ s on")
    if check:
        same = timing.sub("(", old) == timing.sub("(", new)
        print("README real-run block is current" if same else "README real-run block differs:\n" + new)
        return 0 if same else 1
    (ROOT / "README.md").write_text(readme[:a] + new + readme[b:])
    print(new)
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv[1:]))
