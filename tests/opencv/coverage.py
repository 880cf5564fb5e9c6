"""How many ``keras.layers`` classes make a graph OpenCV dnn (4.x) loads and computes right.

    python -m tests.opencv.coverage [--only Conv1D,Permute] [--out docs/opencv-coverage.md]

One tiny model per class (tests/opencv/zoo.py) goes through kfreeze's own stages (convert,
export, freeze, optimize with ``opencv: true``) in a throwaway project; then

- TF: ``optimized.pb`` in a TF session against Keras, by relative error;
- OpenCV: the same graph in ``cv2.dnn.readNetFromTensorflow``, run the way verify runs it
  (kfreeze/verify/opencv_child.py: NCHW feeds, the output's OpenCV layer name), in a fresh
  interpreter (tests/opencv/runner.py; never a fork of this TF process) with an address-space
  limit and a timeout, against Keras by relative error.

A graph optimize refuses with ``opencv: true`` is recorded with its one-line reason. The
table and the summary figure go to ``docs/opencv-coverage.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REL_TOL = 1e-4
MEMORY_MB = 3072     # the OpenCV child's address space (OpenCV 4.6 took 18.9 GB on a BiLSTM graph)
TIMEOUT_S = 60
ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("runner.py")
DOC = ROOT / "docs" / "opencv-coverage.md"
STAGES = ("convert", "export", "freeze", "optimize")
# The same run before the opencv_* rewrite passes (commit c46ab8b, opencv_compat only).
BASELINE = "36 of 93 (39%), none refused"


@dataclass
class Row:
    cls: str
    family: str
    tf_ok: bool = False
    refused: bool = False
    opencv_load: bool = False
    opencv_match: bool = False
    tf_rel: float | None = None
    opencv_rel: float | None = None
    reason: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.tf_ok and self.opencv_load and self.opencv_match


def feeds_for(model) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for t in model.inputs:
        shape = tuple(int(d) for d in t.shape)
        dtype = np.dtype(t.dtype if isinstance(t.dtype, str) else t.dtype.name)
        if np.issubdtype(dtype, np.integer):
            feeds[t.name] = rng.integers(0, 10, shape).astype(dtype)
        else:
            feeds[t.name] = rng.normal(0, 1, shape).astype(dtype)
    return feeds


def rel_err(ref: np.ndarray, got: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64)
    got = np.asarray(got, np.float64)
    if got.size != ref.size:
        raise ValueError(f"OpenCV gave shape {list(got.shape)}, Keras {list(ref.shape)}")
    scale = float(np.max(np.abs(ref))) or 1.0
    return float(np.max(np.abs(got.reshape(ref.shape) - ref))) / scale


def run_opencv(graph: Path, feeds: dict, outputs: list[str], tmp: Path) -> tuple[dict | None, str | None]:
    """OpenCV's outputs (keyed like ``outputs``) in a fresh, memory-limited interpreter, or why not."""
    inp, out = tmp / "in.npz", tmp / "out.npz"
    np.savez(inp, **feeds)
    cmd = [sys.executable, str(RUNNER), str(MEMORY_MB), str(graph), str(inp), str(out), ",".join(feeds),
           ",".join(outputs)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, f"OpenCV did not finish within {TIMEOUT_S} s"
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        if proc.returncode < 0:
            return None, f"OpenCV crashed (signal {-proc.returncode})"
        return None, (lines[-1] if lines else f"exit {proc.returncode}")[:300]
    with np.load(out) as data:
        return {k: data[k] for k in outputs}, None


def measure(cls: str, family: str, build, tmp: Path) -> Row:
    from kfreeze import graphio
    from kfreeze.errors import KfreezeError
    from kfreeze.verify import inputs as verify_inputs, run as verify_run
    from tests.conformance import harness, zoo as conformance_zoo

    row = Row(cls, family)
    t0 = time.perf_counter()
    try:
        model = conformance_zoo.randomize(build())
        feeds = feeds_for(model)
        ref = [np.asarray(v) for v in _flat(model([feeds[t.name] for t in model.inputs]
                                                  if len(model.inputs) > 1 else feeds[model.inputs[0].name],
                                                  training=False))]
    except Exception as e:  # noqa: BLE001  the class cannot be built here: recorded, not fatal
        row.reason = f"Keras: {type(e).__name__}: {' '.join(str(e).split())[:160]}"
        return row
    name = "m"
    project = tmp / cls
    # As an OpenCV user runs it: opencv on and every input's shape fixed at batch 1 (the export
    # leaves the batch free, as Keras' own does, unless input_shape fixes it).
    shapes = [[1, *(int(d) for d in t.shape[1:])] for t in model.inputs]
    harness.write_project(project, name, model, opencv=True, input_shape=shapes[0] if len(shapes) == 1 else shapes)
    stage = "convert"
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            for stage in STAGES:
                harness.run_stages(project, name, (stage,))
    except KfreezeError as e:
        if stage == "optimize":
            row.tf_ok, row.refused = True, True
            row.reason = e.problem + (f"; {e.fix}" if e.fix else "")
        else:
            row.reason = f"{stage}: {e.problem}"
        row.seconds = time.perf_counter() - t0
        return row
    except Exception as e:  # noqa: BLE001
        row.reason = f"{stage}: {type(e).__name__}: {' '.join(str(e).split())[:160]}"
        row.seconds = time.perf_counter() - t0
        return row
    build_dir = project / "build" / name
    graph = graphio.read_graph(build_dir / "optimized.pb")
    names = graphio.read_json(build_dir / "names.json")
    placeholders = [n.split(":")[0] for n in names["inputs"]]
    # in the placeholders' dtypes: opencv_embedding makes an int32 ids input float32
    dtypes = {i.name: i.dtype for i in verify_inputs.placeholder_infos(graph, placeholders)}
    graph_feeds = {p: feeds[t.name].astype(dtypes[p]) for p, t in zip(placeholders, model.inputs)}
    got = verify_run.run_graph(graph, graph_feeds, names["outputs"])
    row.tf_rel = max(rel_err(r, got[o]) for r, o in zip(ref, names["outputs"]))
    row.tf_ok = row.tf_rel <= REL_TOL
    if not row.tf_ok:
        row.reason = f"TF session on optimized.pb differs from Keras (rel {row.tf_rel:.1e})"
    candidates = [verify_run.opencv_layer(graph, o) for o in names["outputs"]]
    results, error = run_opencv(build_dir / "optimized.pb", graph_feeds, candidates, project)
    row.seconds = time.perf_counter() - t0
    if error is not None:
        row.reason = row.reason or error
        return row
    row.opencv_load = True
    try:
        row.opencv_rel = max(rel_err(r, results[c]) for r, c in zip(ref, candidates))
    except ValueError as e:
        row.reason = row.reason or str(e)
        return row
    row.opencv_match = row.opencv_rel <= REL_TOL
    if not row.opencv_match:
        row.reason = row.reason or f"OpenCV differs from Keras (rel {row.opencv_rel:.1e})"
    return row


def _flat(value):
    if isinstance(value, dict):
        return [value[k] for k in value]
    if isinstance(value, (list, tuple)):
        return [v for x in value for v in _flat(x)]
    return [value]


def summary(rows: list[Row]) -> str:
    frozen = [r for r in rows if r.tf_ok]
    passed = [r for r in frozen if r.passed]
    refused = [r for r in frozen if r.refused]
    other = [r for r in frozen if not r.passed and not r.refused]
    pct = 100.0 * len(passed) / len(frozen) if frozen else 0.0
    return (f"**{len(passed)} of {len(frozen)} layer classes that freeze in TF ({pct:.0f}%) load and match in "
            f"OpenCV {_cv2_version()}** (relative error <= {REL_TOL:g}); {len(refused)} refused at optimize with a "
            f"reason; {len(other)} other failures; {len(rows) - len(frozen)} of {len(rows)} measured classes do not "
            f"freeze or do not match in TF.")


def _cv2_version() -> str:
    out = subprocess.run([sys.executable, "-c", "import cv2; print(cv2.__version__)"], capture_output=True, text=True)
    return out.stdout.strip() or "?"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def families(rows: list[Row]) -> str:
    """Per family: classes measured, passing, refused, failing in OpenCV, not freezing in TF."""
    lines = ["| family | classes | load + match | refused at optimize | OpenCV fails | TF fails |",
             "|---|---|---|---|---|---|"]
    order = list(dict.fromkeys(r.family for r in rows))
    for fam in order + ["all"]:
        rs = [r for r in rows if fam in ("all", r.family)]
        ok = sum(r.passed for r in rs)
        refused = sum(r.tf_ok and r.refused for r in rs)
        tf_fail = sum(not r.tf_ok for r in rs)
        name = f"**{fam}**" if fam == "all" else fam
        lines.append(f"| {name} | {len(rs)} | {ok} | {refused} | {len(rs) - ok - refused - tf_fail} | {tf_fail} |")
    return "\n".join(lines)


def table(rows: list[Row]) -> str:
    lines = ["| class | family | TF ok | OpenCV load | OpenCV match | reason |", "|---|---|---|---|---|---|"]
    for r in rows:
        load = "refused" if r.refused else _yes(r.opencv_load) if r.tf_ok or r.opencv_load else "-"
        match = "-" if r.refused or not r.opencv_load else (
            f"{_yes(r.opencv_match)} ({r.opencv_rel:.1e})" if r.opencv_rel is not None else "no")
        tf_ok = _yes(r.tf_ok) + (f" ({r.tf_rel:.1e})" if r.tf_rel is not None else "")
        reason = r.reason.replace("|", "/")
        lines.append(f"| {r.cls} | {r.family} | {tf_ok} | {load} | {match} | {reason} |")
    return "\n".join(lines)


def document(rows: list[Row], seconds: float) -> str:
    return "\n".join([
        "# OpenCV dnn coverage of Keras layer classes",
        "",
        "Generated by `python -m tests.opencv.coverage` (one tiny model per `keras.layers` class, batch 1,",
        "random weights and BatchNorm statistics; converted by kfreeze's stages with `opencv: true`;",
        "`optimized.pb` run in `cv2.dnn.readNetFromTensorflow` in a fresh, memory-limited process the way",
        "`verify` runs it; compared to Keras by max |diff| / max |Keras|).",
        "",
        summary(rows),
        "",
        f"Before the `opencv_*` rewrite passes: {BASELINE}.",
        "",
        families(rows),
        "",
        "Refused at optimize: the `opencv_refuse` pass stops the stage with one line naming the op or form",
        "OpenCV's importer lacks, and the alternatives (the onnx target, or `opencv: false`), instead of",
        "writing a graph that fails where it is deployed (a Bidirectional LSTM made OpenCV 4.6 allocate 18.9 GB).",
        "",
        "Recurrent layers: with `opencv: true` and a fixed time axis convert unrolls them (`unroll=True`, one cell per",
        "step, no while loop); `opencv_unstack`, `opencv_matmul_sum` and `opencv_const_sub` put the steps in forms",
        "OpenCV's importer reads. ConvLSTM's steps are 4-D/5-D slices of the input, refused (Unpack).",
        "",
        "5-D tensors: `verify` feeds a 5-D input to OpenCV as NCDHW, the layout OpenCV's importer keeps for 3-D",
        "convs and poolings (Conv3D, MaxPool3D and AvgPool3D match TF, and GlobalAverage/MaxPooling3D through",
        "`opencv_global_pool3d`). Its Pad and Slice apply the graph's NDHWC paddings and begins to that NCDHW blob",
        "unchanged, which is why ZeroPadding3D (a wrong shape) and Cropping3D (an empty blob) fail: no rewrite that",
        "keeps the TF graph's numbers gives OpenCV the NCDHW form.",
        "",
        table(rows),
        "",
        "Not measured: base classes and cells used through `RNN` (Layer, InputLayer, Wrapper, *Cell, StackedRNNCells),",
        "other backends' wrappers (FlaxLayer, JaxLayer, TorchModuleWrapper, TFSMLayer), string and hashing layers",
        "(StringLookup, IntegerLookup, Hashing, HashedCrossing, TextVectorization), audio front ends",
        "(MelSpectrogram, STFTSpectrogram), and the random augmentation layers, which are the identity at inference.",
        "",
        f"Run time: {seconds:.0f} s.",
        "",
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated class names")
    parser.add_argument("--out", default=str(DOC), help="the markdown file ('-': none)")
    args = parser.parse_args(argv)
    os.environ["KFREEZE_DEBUG"] = "1"  # optimize in this process: no fork of a process that ran eager TF ops
    from tests.opencv.zoo import MODELS

    wanted = [c for c in args.only.split(",") if c] or list(MODELS)
    unknown = [c for c in wanted if c not in MODELS]
    if unknown:
        parser.error(f"no model for {unknown}")
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kfreeze-ocv-") as tmp:
        for cls in wanted:
            family, build = MODELS[cls]
            row = measure(cls, family, build, Path(tmp))
            rows.append(row)
            status = "ok" if row.passed else "refused" if row.refused else "FAIL"
            print(f"{cls:28s} {status:8s} {row.seconds:5.1f}s {row.reason}", flush=True)
    elapsed = time.perf_counter() - start
    print(summary(rows))
    if args.out != "-":
        Path(args.out).write_text(document(rows, elapsed))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
