"""``kfreeze run``: one model file in, frozen + optimized + verified graph out, no params file or DVC.

The flags become a model spec (``spec_from_flags``: validated as a params entry is, with an origin
that makes every message name a flag), and the pipeline's own steps (``kfreeze.pipeline``) run on it
in this process (one TensorFlow import), reading the user's files where they are and writing to
--out what 'dvc repro' writes to build/<name>/. Nothing here re-implements a step.

Every params key has a flag, generated from ``kfreeze.params.KEYS`` (``flag_keys``).
"""

from __future__ import annotations

import contextlib
import glob
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import yaml

from kfreeze import layout
from kfreeze import params
from kfreeze.errors import KfreezeError
from kfreeze.params import FILE_KEYS, KERAS, KEYS, NAME_RE, TF1, VERIFY
from kfreeze.targets.registry import EXTRA

TARGET_FOLDERS = EXTRA  # build/<name>/<target>/ for --targets onnx,tflite (kfreeze.targets.registry)


def flag_keys() -> dict[str, tuple[str, params.Key]]:
    """Every params key that is a value (not a file), once: flag name -> (key, its Key).

    A key in both model sections (inputs, opencv...) is one flag; its types are the union.
    """
    flags: dict[str, tuple[str, params.Key]] = {}
    for section in (KERAS, TF1, VERIFY):
        for key, spec in KEYS[section].items():
            if key not in FILE_KEYS and key not in {k for k, _ in flags.values()}:
                flags[key.replace("_", "-")] = (key, spec)
    return flags


def is_switch(spec: params.Key) -> bool:
    """true/false keys become --key/--no-key switches."""
    return bool in spec.types and not (set(spec.types) - {bool, type(None)})


def parse_flag(key: str, spec: params.Key, text: str):
    """A flag's text as YAML (``[1, 224, 224, 3]``, ``null``, ``1e-3``); a list key also takes ``a,b``."""
    from kfreeze.safeyaml import safe_yaml
    try:
        value = safe_yaml(text, f"--{key.replace('_', '-')}")  # alias bombs refused, as in a params file
    except yaml.YAMLError:
        raise KfreezeError(f"--{key.replace('_', '-')}", f"cannot read {text!r}",
                           "give a YAML value, e.g. [1, 224, 224, 3] or null") from None
    if list in spec.types and isinstance(value, (str, int, float)) and str not in spec.types:
        value = [v.strip() for v in text.split(",") if v.strip()]
    if float in spec.types and isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
        with contextlib.suppress(ValueError):
            value = float(value)
    return value


def model_name(path: Path) -> str:
    """A params name from the file name: lower case, other characters to '_'."""
    name = re.sub(r"[^a-z0-9_-]", "_", path.stem.lower()).lstrip("-") or "model"
    return name if NAME_RE.match(name) else "model"


COPY_LIMIT = 8 * 2**30  # a model, graph or checkpoint bigger than this is refused before it is read
FILE_LIMIT = 10000  # a SavedModel or checkpoint folder holds tens of files; /usr holds 10^5


# What kfreeze run writes to --out: what 'dvc repro' writes to build/<name>/ (its settings aside), and
# metrics.json; a folder holding anything else is not replaced.
METRICS = layout.METRICS
OUT_FILES = {layout.OPTIMIZED, layout.FROZEN, layout.GRAPH, layout.OP_NAMES, layout.SIGNATURE, layout.NAMES,
             layout.PASSES, layout.FAILED, METRICS}
OUT_FOLDERS = (layout.MODEL, layout.CKPT)


def check_out(out: Path) -> None:
    """``--out`` before any work: a folder kfreeze can replace as a whole (new, empty, or its own)."""
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            raise KfreezeError("--out", f"{parent} is a file, not a folder", "give a folder for the results")
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir()
                       if p.name not in OUT_FILES and p.name not in TARGET_FOLDERS and p.name not in OUT_FOLDERS)
        if other:
            raise KfreezeError("--out", f"{out} holds files kfreeze run did not write ({', '.join(other[:3])}"
                               f"{' ...' if len(other) > 3 else ''}); it replaces --out as a whole",
                               "give a new or empty folder")


def route(source: Optional[Path], graph: Optional[Path], arch: Optional[Path] = None,
          command: str = "kfreeze run") -> tuple[Optional[Path], Optional[Path]]:
    """(source, graph) by what SOURCE holds (its bytes, not its name): a GraphDef file or a SavedModel
    folder given as SOURCE is a graph; an HDF5 or zip file is a Keras model whatever its suffix."""
    from kfreeze import sources

    if graph is not None and sources.kind(graph) in sources.KERAS_KINDS:
        raise KfreezeError(graph, f"is {sources.describe(sources.kind(graph))}, a Keras model file, not a graph",
                           f"give it as SOURCE: {command} {'NAME ' if command == 'kfreeze add' else ''}{graph}")
    if source is None or arch is not None:
        return source, graph
    path = Path(source)
    found = sources.kind(path)
    if found in sources.GRAPH_KINDS or found == "savedmodel":
        return None, path
    if path.is_dir():
        raise KfreezeError(path, "folder holds no saved_model.pb, so it is no SavedModel",
                           f"give a SavedModel folder, a Keras file or a frozen graph file to {command}")
    if path.is_file() and found is None and path.suffix.lower() not in sources.KERAS_SUFFIXES:
        raise KfreezeError(path, "is no Keras file (HDF5 or zip), GraphDef or SavedModel folder (judged by its "
                           "bytes)", "give a .keras/.h5 model, a frozen .pb/.pbtxt graph or a SavedModel folder; "
                           "a graph with a checkpoint goes in --graph with --checkpoint")
    return source, graph


@dataclass
class Result:
    name: str
    out: Path
    inputs: list
    outputs: list
    opencv: dict  # output -> the layer name verify called net.forward with, or {} when OpenCV failed
    opencv_error: Optional[str]
    metrics: dict


def _given_file(path: Path, what: str, folder_ok: bool = True) -> str:
    """A file the user named, checked before any work: what it is (a FIFO or device would block or
    never end: ``kfreeze run /dev/zero``) and its size (a huge file or folder is refused before a byte
    is read). The steps read it where it is."""
    from kfreeze.settings import special_file

    if not path.exists():
        raise KfreezeError(path, f"{what} not found", "check the path")
    special_file(path.resolve())
    if path.is_dir() and not folder_ok:
        raise KfreezeError(path, f"{what} is a folder, expected a file", "give the file itself")
    size, count = 0, 0
    for f in path.rglob("*") if path.is_dir() else [path]:
        if f.resolve().exists():  # a FIFO inside a folder too (is_file() says False for one)
            special_file(f.resolve())
        if not f.is_file():
            continue
        size, count = size + f.stat().st_size, count + 1
        if count > FILE_LIMIT:  # stop walking: --checkpoint /usr took 35 s to sum 5 GiB
            raise KfreezeError(path, f"{what} holds over {FILE_LIMIT} files, not one model's",
                               "point at the model's own file or folder")
        if size > COPY_LIMIT:
            raise KfreezeError(path, f"{what} holds over {COPY_LIMIT / 2**30:.0f} GiB, more than kfreeze run "
                               "reads", "point at the model's own file or folder")
    return str(path)


def _given_checkpoint(checkpoint: Path) -> str:
    """A checkpoint folder, or a prefix (model.ckpt-600 -> its .index/.data-* and 'checkpoint' files)."""
    if checkpoint.is_dir():
        return _given_file(checkpoint, "checkpoint")
    if checkpoint.is_file():  # a V1 checkpoint: one file named by its prefix
        return _given_file(checkpoint, "checkpoint", folder_ok=False)
    parts = sorted(checkpoint.parent.glob(glob.escape(checkpoint.name) + ".*"))
    if not parts:
        raise KfreezeError(checkpoint, "checkpoint not found (no .index or .data-* files with this prefix)",
                           "give the prefix, e.g. model.ckpt-600, or the checkpoint folder")
    for part in parts:
        _given_file(part, "checkpoint")
    return str(checkpoint)


def spec_from_flags(section: str, name: str, files: dict, settings: dict):
    """(ModelSpec, VerifySpec) from kfreeze run's files and flags, validated as a params entry is;
    their origin is the command line, so every message names a flag or the file the user gave."""
    origin = params.Origin(section, name, params=None, folder=None)
    entry = {**files, **{k: v for k, v in settings.items() if k in KEYS[section]}}
    spec = params.parse_model(name, entry, section=section, origin=origin)
    vspec = params.verify_from({k: v for k, v in settings.items() if k in KEYS[VERIFY]}, origin)
    params.check_int8(spec, vspec)
    return spec, vspec


def steps(section: str) -> tuple[str, ...]:
    """The pipeline's steps for a section, in order: what 'dvc repro' runs for one model."""
    return (("convert", "export") if section == KERAS else ()) + ("freeze", "optimize", *EXTRA, "verify")


def _relocated(e: KfreezeError, work: Path, out: Path) -> KfreezeError:
    """The error as the user must read it: about ``--out``, not the temp folder that is gone."""
    swap = lambda text: text.replace(str(work), str(out))
    return KfreezeError(swap(e.where), swap(e.problem), swap(e.fix))


def run(source: Optional[Path], out: Optional[Path], settings: dict, arch: Optional[Path] = None,
        graph: Optional[Path] = None, checkpoint: Optional[Path] = None,
        echo: Callable[[str], None] = print, warn: Callable[[str], None] = None) -> Result:
    """Freeze, optimize and verify one model into ``out``: the steps 'dvc repro' runs, called with a
    spec built from the flags, writing what BUILD/<name>/ holds (and metrics.json).

    ``settings`` maps params keys (e.g. ``input_shape``) to values, as a params entry would;
    what is not given takes the table's default.
    """
    from kfreeze import pipeline

    if (source is None) == (graph is None):
        raise KfreezeError("kfreeze run", "give either SOURCE (a Keras file, a frozen graph or a SavedModel folder) "
                           "or --graph with --checkpoint", "e.g. kfreeze run model.keras, kfreeze run frozen.pb "
                           "--inputs x --input-shape '[1, 224, 224, 3]', or kfreeze run --graph g.pbtxt "
                           "--checkpoint model.ckpt")
    source, graph = route(source, graph, arch)
    section = KERAS if source is not None else TF1
    main = Path(source if source is not None else graph)
    name = model_name(main)
    out = Path(out) if out is not None else Path(f"{main.stem}_frozen")
    check_out(out)
    unknown = sorted(set(settings) - set(KEYS[section]) - set(KEYS[VERIFY]))
    if unknown:
        other = "SOURCE (a Keras file)" if section == TF1 else "--graph (or a frozen graph or SavedModel as SOURCE)"
        raise KfreezeError(f"--{unknown[0].replace('_', '-')}", f"applies only with {other}",
                           "leave it out for this model")
    warn = warn or (lambda line: print(line, file=sys.stderr))
    files = {}
    if section == KERAS:
        files["source"] = _given_file(main, "model file")
        if arch is not None:
            files["arch"] = _given_file(Path(arch), "architecture file")
    else:
        files["graph"] = _given_file(main, "graph file")
        if checkpoint is not None:  # none: a graph frozen already, or a SavedModel folder
            files["checkpoint"] = _given_checkpoint(Path(checkpoint))
    if settings.get("data") is not None:
        settings = {**settings, "data": _given_file(Path(settings["data"]), "--data file", folder_ok=False)}
    spec, vspec = spec_from_flags(section, name, files, settings)
    # Built in a temp folder beside --out and renamed into place whole: a kill, a full disk or a failed
    # step leaves --out as it was, never one run's files beside another's metrics.json.
    from kfreeze import atomic

    failed, work = None, out
    try:
        with atomic.directory(out) as work:
            for step in steps(section):
                if step in EXTRA and step not in spec.targets:
                    continue  # dvc repro writes a 'not requested' marker, as its stage must have an output
                if step == "verify":
                    try:
                        line = pipeline.verify(spec, vspec, work, work / METRICS, warn=warn)
                    except KfreezeError as e:
                        if not (work / layout.FAILED).exists():
                            raise
                        failed = e  # a verdict (verify_failed.json): published with the files it judged
                        break
                elif step in ("convert", "freeze"):
                    line = getattr(pipeline, step)(spec, work, warn=warn)
                elif step in EXTRA:
                    line = pipeline.target(step, spec, vspec, work)
                else:
                    line = getattr(pipeline, step)(spec, work)
                echo(line.replace(str(work), str(out)))
    except KfreezeError as e:
        raise _relocated(e, work, out) from e
    except OSError as e:  # a full disk: name --out, not the temp file that is gone
        if work != out and e.filename:
            e.filename = str(e.filename).replace(str(work), str(out))
        raise
    if failed is not None:
        raise _relocated(failed, work, out) from failed
    metrics_file = out / METRICS
    from kfreeze import graphio
    from kfreeze.verify.run import opencv_failure
    names = graphio.read_json(out / layout.NAMES)
    result_metrics = graphio.read_json(metrics_file)
    layers = result_metrics.get("opencv_names") or {}
    return Result(name, out, names["inputs"], names["outputs"], layers,
                  result_metrics.get("opencv_error") and opencv_failure(result_metrics), result_metrics)


def report(result: Result) -> list[str]:
    """What the user types next: file names, and the tensor and layer names for TF and OpenCV."""
    from kfreeze.optimize.context import placeholder_name

    m = result.metrics
    lines = [f"wrote {result.out}/: optimized.pb ({m['ops_optimized']} ops, {m['bytes_optimized']} bytes), "
             f"frozen.pb, metrics.json" + (", signature.json" if (result.out / layout.SIGNATURE).exists() else ""),
             "TensorFlow (tf.import_graph_def(graph_def, name='import')):"]
    for i in result.inputs:
        lines.append(f"  input   import/{placeholder_name(i)}:0")
    for o in result.outputs:
        lines.append(f"  output  import/{o.split(':')[0]}:{o.split(':')[1] if ':' in o else 0}")
    lines.append("OpenCV (cv2.dnn.readNetFromTensorflow('optimized.pb'); input NCHW):")
    if result.opencv and len(result.opencv) == len(result.outputs):
        lines.append(f"  net.forward({[result.opencv[o] for o in result.outputs]!r})" if len(result.outputs) > 1
                     else f"  net.forward({result.opencv[result.outputs[0]]!r})")
        lines += [f"  {o} -> {result.opencv[o]!r}" for o in result.outputs if result.opencv[o] != o]
    else:
        lines.append(f"  {result.opencv_error}")
    from kfreeze.targets.usage import usage_lines
    return lines + usage_lines(result.out, result.metrics)
