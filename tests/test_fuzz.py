"""Fuzz the input files: mutated bytes of .pb, .pbtxt, .h5 and .keras files must give a valid
result or one clean error line; never a traceback, an internal error, a hang or a partial output.

Runs FUZZ_EXAMPLES cases per format (default 8) in `make test`; set KFREEZE_FUZZ_EXAMPLES for more.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.bad_input import Project

ROOT = Path(__file__).resolve().parents[1]
TF1 = ROOT / "models" / "digits_tf1"
EXAMPLES = int(os.environ.get("KFREEZE_FUZZ_EXAMPLES", "8"))
CASE_SECONDS = 120  # above kfreeze.h5check.TIMEOUT_S, which must answer first


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    p = Project(tmp_path_factory.mktemp("fuzz"))
    good = p.root / "models" / "good" / "model.keras"
    from tests.conftest import build_tiny
    build_tiny().save(p.root / "models" / "good" / "model.h5")
    from kfreeze import graphio
    p.seeds = {
        ".keras": good.read_bytes(),
        ".h5": (p.root / "models" / "good" / "model.h5").read_bytes(),
        ".pbtxt": (TF1 / "graph.pbtxt").read_bytes(),
        ".pb": graphio.read_graph(TF1 / "graph.pbtxt").SerializeToString(),
    }
    p.count = 0
    return p


mutation = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 64)),
)


def mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op in ops:
        at = int(op[1] * len(buf)) if buf else 0
        if op[0] == "truncate":
            del buf[at:]
        elif op[0] == "flip" and at < len(buf):
            buf[at] ^= op[2]
        elif op[0] == "insert":
            buf[at:at] = op[2]
        elif op[0] == "delete":
            del buf[at:at + op[2]]
    return bytes(buf)


class Hang(Exception):
    pass


def _alarm(*_):
    raise Hang()


def run_case(project, suffix: str, data: bytes):
    project.count += 1
    name = f"fz{project.count}"
    folder = f"models/{name}"
    if suffix in (".keras", ".h5"):
        project.file(f"{folder}/m{suffix}", data)
        project.add_keras(name, f"{folder}/m{suffix}")
        stage, outputs = "convert", ["model"]
    else:
        project.file(f"{folder}/graph{suffix}", data)
        for ext in (".index", ".data-00000-of-00001"):
            project.file(f"{folder}/model.ckpt-600{ext}", copy_from=TF1 / f"model.ckpt-600{ext}")
        project.add_graph(name, f"{folder}/graph{suffix}", f"{folder}/model.ckpt-600")
        stage, outputs = "freeze", ["frozen.pb", "names.json"]
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    try:
        result = project.run(stage, name)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    made = [o for o in outputs if (project.root / "build" / name / o).exists()]
    if result.code == 0:
        assert made == outputs, "a success must publish every output"
    else:
        line = result.stderr.strip()
        assert result.code == 1, f"{suffix}: {result.stderr or result.stdout}"
        assert len(line.splitlines()) == 1 and line.startswith("error: ") and "internal error" not in line, line
        assert made == [], f"failed {stage} left {made}"
    leftovers = [p.name for p in (project.root / "build" / name).glob(".*")] if (project.root / "build" / name).exists() else []
    assert not leftovers, leftovers
    del project.params["models" if stage == "convert" else "graphs"][name]
    project.save()


@pytest.mark.parametrize("suffix", [".keras", ".h5", ".pbtxt", ".pb"])
def test_mutated_files_fail_cleanly_or_work(project, suffix):
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(ops=st.lists(mutation, min_size=1, max_size=3))
    def case(ops):
        run_case(project, suffix, mutate(project.seeds[suffix], ops))
    case()
