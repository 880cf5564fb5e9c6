"""Every example's optimized.pb in the C++ OpenCV a Debian/Ubuntu service links (libopencv-dev).

verify judges OpenCV through pip's opencv-python-headless; a C++ service links the distribution's
OpenCV (4.6 on Debian 12), whose TF importer is older. Here each example in params.yaml is built
with the pipeline's own stages (``kfreeze run`` on its source and its entry's keys, in process),
``tests/cpp/load_graph.cpp`` is compiled against ``pkg-config opencv4`` and run, in a child bounded in
memory and time, on verify's inputs (NCHW), fetching the layer names verify recorded
(``opencv_names``); its outputs are compared with TensorFlow running the same optimized.pb, by
verify's rule: ``max|diff| <= atol + rtol * max|reference|``.

A graph that C++ OpenCV cannot run is listed in CANNOT_RUN with the reason, and the test asserts
that it fails, as one line; besides the examples, a Bidirectional LSTM (the graph that made OpenCV
4.6 allocate 18.9 GB) proves the failure path and the memory bound. ``make test-cpp`` runs this tier.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

pytestmark = [pytest.mark.cpp, pytest.mark.slow]


def _opencv4() -> str | None:
    """The version ``pkg-config opencv4`` reports, or None when it has no opencv4 (or no pkg-config)."""
    if shutil.which("pkg-config") is None:
        return None
    done = subprocess.run(["pkg-config", "--modversion", "opencv4"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


OPENCV_VERSION = _opencv4()
if OPENCV_VERSION is None:
    pytest.skip("no C++ OpenCV: 'pkg-config --exists opencv4' fails (install libopencv-dev; .ci/run does)",
                allow_module_level=True)

from kfreeze import child, graphio, oneshot  # noqa: E402
from kfreeze.opencv_names import layer_name  # noqa: E402
from kfreeze.optimize.context import placeholder_name  # noqa: E402
from kfreeze.params import KERAS, KEYS, TF1, VERIFY  # noqa: E402
from kfreeze.verify.compare import compare, probability_outputs  # noqa: E402
from kfreeze.verify.inputs import load_data, make_inputs, placeholder_infos  # noqa: E402
from kfreeze.verify.run import fixed_batch, graph_session, run_batched  # noqa: E402

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
EXAMPLES = {name: (section, entry) for section in (KERAS, TF1) for name, entry in (PARAMS.get(section) or {}).items()}
VERIFY_SETTINGS = {k: PARAMS.get(VERIFY, {}).get(k, spec.default) for k, spec in KEYS[VERIFY].items()}

# A graph beside the examples: the one OpenCV 4.6 allocated 18.9 GB for.
RECURRENT = "bidirectional_lstm"

# Graphs the C++ OpenCV cannot run: name -> why. The test asserts that the loader fails on them, with
# one line (OpenCV 4.6 runs out of the memory bound on the Bidirectional LSTM: docs/opencv.md).
CANNOT_RUN = {
    RECURRENT: "recurrent: TF while loops, which OpenCV's TF importer does not have",
}

# The loader's address space: 512 MiB plus 8 times the graph and its inputs (the examples need under
# 100 MB; the Bidirectional LSTM reaches 512 MiB in 7 to 20 s, 2 GiB in 85 s), or KFREEZE_MEMORY_LIMIT_GB
# as for kfreeze's own children. Two OpenCV threads and two malloc arenas keep it the same on any machine.
MEMORY = 512 * 2**20
TIMEOUT_S = 120.0
LOADER_ENV = {"LOAD_GRAPH_THREADS": "2", "MALLOC_ARENA_MAX": "2"}


@pytest.fixture(scope="session")
def loader(tmp_path_factory) -> Path:
    """load_graph.cpp compiled against pkg-config's opencv4, into a temp folder (never committed)."""
    if shutil.which("g++") is None:
        pytest.fail("pkg-config has opencv4 but there is no g++ to build tests/cpp/load_graph.cpp (apt-get install g++)")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "opencv4"], capture_output=True, text=True, check=True)
    exe = tmp_path_factory.mktemp("cpp") / "load_graph"
    cmd = ["g++", "-O2", "-std=c++17", "-o", str(exe), str(HERE / "load_graph.cpp"), *shlex.split(flags.stdout)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{shlex.join(cmd)} failed:\n{done.stderr[-3000:]}"
    return exe


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """name -> kfreeze run's output folder for that model (built once, on first use)."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            cache[name] = _build(name, tmp_path_factory.mktemp(name))
        return cache[name]
    return get


def _build(name: str, folder: Path) -> Path:
    """kfreeze run on the example's files and its entry's keys (its verify settings too); only the tf target."""
    out = folder / "out"
    quiet = dict(echo=lambda line: None, warn=lambda line: None)
    if name == RECURRENT:
        from tests.conformance.zoo import bidirectional
        model_file = folder / "bidir.keras"
        bidirectional().save(model_file)
        oneshot.run(model_file, out, dict(VERIFY_SETTINGS), **quiet)
        return out
    section, entry = EXAMPLES[name]
    files = {k: ROOT / entry[k] for k in oneshot.FILE_KEYS if entry.get(k)}
    settings = {k: v for k, v in entry.items() if k not in oneshot.FILE_KEYS}
    settings.update(VERIFY_SETTINGS, targets=["tf"])
    if settings.get("data"):
        settings["data"] = ROOT / "models" / name / settings["data"]
    else:
        settings.pop("data", None)
    oneshot.run(files.get("source"), out, settings, arch=files.get("arch"), graph=files.get("graph"),
                checkpoint=files.get("checkpoint"), **quiet)
    return out


def _inputs(graph, feed_names: list[str], name: str) -> dict[str, np.ndarray]:
    """verify's inputs: the model's verify data, or seeded random ones in input_range."""
    infos = placeholder_infos(graph, feed_names)
    v = VERIFY_SETTINGS
    if name in EXAMPLES and v.get("data") and (ROOT / "models" / name / v["data"]).is_file():
        return load_data(ROOT / "models" / name / v["data"], infos, feed_names, v["samples"])
    return make_inputs(infos, v["samples"], v["seed"], tuple(v["input_range"]))


def run_loader(exe: Path, graph_path: Path, feeds: dict[str, np.ndarray], layers: list[str],
               batch: int | None, work: Path) -> tuple[dict[str, np.ndarray] | None, child.Outcome, float]:
    """The C++ loader on ``feeds`` (NHWC, as TF takes them; 4-D ones sent NCHW); its outputs back in
    TF's layout (4-D ones NCHW -> NHWC), keyed by layer, the rows fed; None when it failed."""
    work.mkdir(parents=True, exist_ok=True)
    rows = len(next(iter(feeds.values())))
    padded = rows if not batch else -(-rows // batch) * batch
    cmd = [str(exe), str(graph_path), str(work), str(batch or 0)]
    for i, (name, x) in enumerate(feeds.items()):
        assert x.dtype == np.float32, f"input {name} is {x.dtype}: the loader feeds float32"
        x = np.resize(x, (padded, *x.shape[1:])) if padded != rows else x
        blob = np.ascontiguousarray(x.transpose(0, 3, 1, 2) if x.ndim == 4 else x)
        blob.tofile(work / f"in{i}.f32")
        cmd += ["-i", name, str(work / f"in{i}.f32"), ",".join(str(d) for d in blob.shape)]
    for layer in layers:
        cmd += ["-o", layer]
    memory = MEMORY + 8 * (graph_path.stat().st_size + sum(v.nbytes for v in feeds.values()))
    if os.environ.get("KFREEZE_MEMORY_LIMIT_GB"):  # the override child's message names
        memory = child.memory_bound(0)
    start = time.monotonic()
    done = child.run(cmd, what="C++ OpenCV", timeout=TIMEOUT_S, memory=memory, env={**os.environ, **LOADER_ENV})
    seconds = time.monotonic() - start
    if done.problem:
        return None, done, seconds
    got = {}
    for k, layer in enumerate(layers):
        shape = [int(d) for d in (work / f"{k}.shape").read_text().split()]
        y = np.fromfile(work / f"{k}.f32", dtype=np.float32).reshape(shape)
        got[layer] = (y.transpose(0, 2, 3, 1) if y.ndim == 4 else y)[:rows]
    return got, done, seconds


CASES = sorted(EXAMPLES) + [RECURRENT]


def test_every_cannot_run_entry_is_a_case():
    assert set(CANNOT_RUN) <= set(CASES)


@pytest.mark.parametrize("name", CASES)
def test_optimized_pb_in_cpp_opencv(name, loader, built, tmp_path, record_property):
    out = built(name)
    graph_path = out / "optimized.pb"
    graph = graphio.read_graph(graph_path)
    names = graphio.read_json(out / "names.json")
    metrics = graphio.read_json(out / "metrics.json")
    inputs, outputs = names["inputs"], names["outputs"]
    feed_names = [placeholder_name(i) for i in inputs]
    # The layer names kfreeze prints (verify fetched them in pip's OpenCV); kfreeze's own rule when
    # pip's OpenCV could not run the graph either.
    recorded = metrics.get("opencv_names") or {}
    layers = [recorded.get(o) or layer_name(graph, o) for o in outputs]
    assert all(layers), f"no OpenCV layer name for {outputs}"
    feeds = _inputs(graph, feed_names, name)
    batch = fixed_batch(i.shape for i in placeholder_infos(graph, feed_names) if i.shape is not None)

    got, done, seconds = run_loader(loader, graph_path, feeds, layers, batch, tmp_path / "io")
    record_property("cpp_opencv_seconds", round(seconds, 2))
    if name in CANNOT_RUN:
        why = CANNOT_RUN[name]
        if name == RECURRENT:
            assert graphio.loop_nodes(graph), "the recurrent case has no TF loop left: it no longer tests one"
        assert got is None, f"{name}: C++ OpenCV {OPENCV_VERSION} now runs it ({why}): move it out of CANNOT_RUN"
        line = done.stderr.strip()
        assert line.startswith("load_graph: ") and "\n" not in line, done.stderr
        record_property("cpp_opencv", f"cannot run ({why}): {done.problem}")
        print(f"\n{name}: C++ OpenCV {OPENCV_VERSION} cannot run it, as expected ({why}): {done.problem} "
              f"[{seconds:.1f} s]")
        return
    assert got is not None, f"{name}: C++ OpenCV {OPENCV_VERSION} could not run optimized.pb: {done.problem}"

    with graph_session(graph, outputs) as run:
        reference = run_batched(run, feeds, batch)
    atol, rtol = VERIFY_SETTINGS["atol"], VERIFY_SETTINGS["rtol"]
    if metrics.get("precision") == "float16":
        atol, rtol = VERIFY_SETTINGS["atol_float16"], VERIFY_SETTINGS["rtol_float16"]
    result = compare(reference, {o: got[layer] for o, layer in zip(outputs, layers)},
                     probability_outputs(graph, outputs), atol, rtol)
    summary = {o: (r["max_abs_diff"], r["rel_diff"]) for o, r in result.items()}
    record_property("cpp_opencv", summary)
    print(f"\n{name}: C++ OpenCV {OPENCV_VERSION} runs it, layers {layers}, "
          + ", ".join(f"{o}: max abs diff {a:.3g}, rel {r:.3g}" for o, (a, r) in summary.items())
          + f" [{seconds:.1f} s]")
    for o, r in result.items():
        assert r["passed"], f"{name}: output {o} (layer {layers[outputs.index(o)]}) differs from TF: {r}"
        assert not r.get("constant"), f"{name}: output {o} is constant across samples: the comparison proves nothing"


def test_loader_failure_is_one_line(loader, tmp_path):
    """Not a graph: status 2 and one line naming OpenCV's reason."""
    (tmp_path / "bad.pb").write_bytes(b"not a graph")
    (tmp_path / "x.f32").write_bytes(np.zeros(4, np.float32).tobytes())
    done = subprocess.run([str(loader), str(tmp_path / "bad.pb"), str(tmp_path), "0", "-i", "x", str(tmp_path / "x.f32"),
                           "1,4", "-o", "y"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("load_graph: "), done.stderr
