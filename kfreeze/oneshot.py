"""``kfreeze run``: one model file in, frozen + optimized + verified graph out, no params.yaml or DVC.

The stages are the pipeline's own functions (``kfreeze.pipeline``), run in this process (one
TensorFlow import) inside a throwaway project: a temp folder holding ``params.yaml`` with the one
entry, and ``models/<name>/`` with copies of the user's files (copies, not links: the stages refuse
files that lead outside their folder). Nothing here re-implements a stage.

Every params key has a flag, generated from ``kfreeze.params.KEYS`` (``flag_keys``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import yaml

from kfreeze import params
from kfreeze.errors import KfreezeError
from kfreeze.params import KERAS, KEYS, NAME_RE, TF1, VERIFY
from kfreeze.targets.registry import EXTRA

# Keys given as files (positional SOURCE, --arch, --graph, --checkpoint), not as value flags.
FILE_KEYS = ("source", "arch", "graph", "checkpoint")
# What --out receives from build/<name>/ (the metrics JSON is added as metrics.json).
ARTIFACTS = ("optimized.pb", "frozen.pb", "graph.pbtxt", "op_names.txt", "signature.json", "names.json",
             "passes.json", "verify_failed.json")
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
        value = safe_yaml(text, f"--{key.replace('_', '-')}")  # alias bombs refused, as in params.yaml
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


COPY_LIMIT = 8 * 2**30  # a model, graph or checkpoint bigger than this is refused before it is copied


def _copy_file(src: Path, dst: Path, what: str, folder_ok: bool = True) -> None:
    """``src`` into the workspace, after checking what it is: a FIFO or device would block or never
    end (``kfreeze run /dev/zero``), and a huge file or folder is refused before a byte is copied."""
    from kfreeze.settings import special_file

    if not src.exists():
        raise KfreezeError(src, f"{what} not found", "check the path")
    special_file(src.resolve())
    if src.is_dir() and not folder_ok:
        raise KfreezeError(src, f"{what} is a folder, expected a file", "give the file itself")
    files = [f for f in src.rglob("*") if f.is_file()] if src.is_dir() else [src]
    for f in files:
        special_file(f.resolve())
    size = sum(f.stat().st_size for f in files)
    if size > COPY_LIMIT:
        raise KfreezeError(src, f"{what} holds {size / 2**30:.1f} GiB, over the {COPY_LIMIT / 2**30:.0f} GiB "
                           "kfreeze run copies", "point at the model's own file or folder")
    if src.is_dir():
        shutil.copytree(src, dst, symlinks=False)
    else:
        shutil.copyfile(src, dst)  # follows a symlink: the copy is a real file


# What kfreeze run writes to --out: a folder holding anything else is not replaced.
OUT_FILES = {*("optimized.pb", "frozen.pb", "graph.pbtxt", "op_names.txt", "signature.json", "names.json",
               "passes.json", "verify_failed.json", "metrics.json")}


def check_out(out: Path) -> None:
    """``--out`` before any work: a folder kfreeze can replace as a whole (new, empty, or its own)."""
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            raise KfreezeError("--out", f"{parent} is a file, not a folder", "give a folder for the results")
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if p.name not in OUT_FILES and p.name not in TARGET_FOLDERS)
        if other:
            raise KfreezeError("--out", f"{out} holds files kfreeze run did not write ({', '.join(other[:3])}"
                               f"{' ...' if len(other) > 3 else ''}); it replaces --out as a whole",
                               "give a new or empty folder")


def copy_checkpoint(checkpoint: Path, folder: Path) -> str:
    """A checkpoint folder, or a prefix (model.ckpt-600 -> its .index/.data-* and 'checkpoint' files)."""
    if checkpoint.is_dir():
        _copy_file(checkpoint, folder / checkpoint.name, "checkpoint")
        return checkpoint.name
    parts = sorted(checkpoint.parent.glob(glob_escape(checkpoint.name) + ".*"))
    if not parts:
        raise KfreezeError(checkpoint, "checkpoint not found (no .index or .data-* files with this prefix)",
                           "give the prefix, e.g. model.ckpt-600, or the checkpoint folder")
    for part in parts:
        _copy_file(part, folder / part.name, "checkpoint")
    return checkpoint.name


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


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


@dataclass
class Result:
    name: str
    out: Path
    inputs: list
    outputs: list
    opencv: dict  # output -> the layer name verify called net.forward with, or {} when OpenCV failed
    opencv_error: Optional[str]
    metrics: dict


@contextlib.contextmanager
def _inside(folder: Path):
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def _user_paths(text: str, name: str, files: dict, out: Path) -> str:
    """The temp project's paths in a message, as the user knows them."""
    for user in files.values():
        text = text.replace(f"models/{name}/{Path(user).name}", str(user))
    return text.replace(f"build/{name}/", f"{out}/")


def _rename_where(e: KfreezeError, name: str, files: dict, out: Path) -> KfreezeError:
    """'params.yaml: models.x.input_shape' -> '--input-shape'; the temp project's paths -> the user's."""
    where = re.sub(rf"^{re.escape(params.PARAMS_FILE)}: (?:(?:models|graphs)\.{re.escape(name)}|verify)\.(\w+)",
                   lambda m: "--" + m.group(1).replace("_", "-") if m.group(1) not in FILE_KEYS
                   else files.get(m.group(1), "--" + m.group(1)), e.where)
    where = re.sub(rf"^{re.escape(params.PARAMS_FILE)}: (?:models|graphs)\.{re.escape(name)}", "kfreeze run", where)
    where, problem, fix = _user_paths(f"{where}\x00{e.problem}\x00{e.fix}", name, files, out).split("\x00")
    return KfreezeError(where, problem, flag_fix(fix, name))


def flag_fix(fix: str, name: str) -> str:
    """A fix that names a params key ('set graphs.x.trust_code: true in params.yaml') names the flag."""
    def flag(m):
        key, value = m.group(1), m.group(2)
        dashed = key.replace("_", "-")
        if value in ("true", "false"):
            return f"pass --{'' if value == 'true' else 'no-'}{dashed}"
        return f"pass --{dashed} {value}" if value else f"pass --{dashed}"
    fix = re.sub(rf"(?:set|add) (?:(?:models|graphs)\.{re.escape(name)}\.)?(\w+)(?:: (\S+|\[[^\]]*\]))? in "
                 rf"{re.escape(params.PARAMS_FILE)}", flag, fix)
    return re.sub(rf"fix (?:the value in )?{re.escape(params.PARAMS_FILE)}", "fix the flag's value", fix)


def run(source: Optional[Path], out: Optional[Path], settings: dict, arch: Optional[Path] = None,
        graph: Optional[Path] = None, checkpoint: Optional[Path] = None,
        echo: Callable[[str], None] = print, warn: Callable[[str], None] = None) -> Result:
    """Freeze, optimize and verify one model; copy the artifacts to ``out``.

    ``settings`` maps params keys (e.g. ``input_shape``) to values, as params.yaml would;
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
    with tempfile.TemporaryDirectory(prefix="kfreeze-run-") as tmp:
        ws = Path(tmp)
        folder = ws / "models" / name
        folder.mkdir(parents=True)
        files = {}
        entry = {}
        if section == KERAS:
            _copy_file(main, folder / main.name, "model file")
            entry["source"], files["source"] = f"models/{name}/{main.name}", str(source)
            if arch is not None:
                _copy_file(Path(arch), folder / Path(arch).name, "architecture file")
                entry["arch"], files["arch"] = f"models/{name}/{Path(arch).name}", str(arch)
        else:
            _copy_file(main, folder / main.name, "graph file")
            entry["graph"], files["graph"] = f"models/{name}/{main.name}", str(graph)
            if checkpoint is not None:  # none: a graph frozen already, or a SavedModel folder
                entry["checkpoint"] = f"models/{name}/{copy_checkpoint(Path(checkpoint), folder)}"
                files["checkpoint"] = str(checkpoint)
        data_file = settings.get("data")
        if data_file is not None:  # verify.data is read from models/<name>/
            _copy_file(Path(data_file), folder / Path(data_file).name, "--data file", folder_ok=False)
            settings = {**settings, "data": Path(data_file).name}
            files["data"] = str(data_file)
        entry.update({k: v for k, v in settings.items() if k in KEYS[section]})
        full = {k: entry.get(k, spec.default) for k, spec in KEYS[section].items() if k in entry or not spec.required}
        verify = {k: settings.get(k, spec.default) for k, spec in KEYS[VERIFY].items()}
        (ws / params.PARAMS_FILE).write_text(yaml.safe_dump(
            {KERAS: {name: full} if section == KERAS else {}, TF1: {name: full} if section == TF1 else {},
             VERIFY: verify}, sort_keys=False))
        build, metrics = Path("build"), Path("metrics")
        stages = ((("convert", "export") if section == KERAS else ())
                  + ("freeze", "optimize", *EXTRA, "verify"))
        failure = None
        with _inside(ws):
            try:
                for stage in stages:
                    fn = functools.partial(pipeline.target, stage) if stage in EXTRA else getattr(pipeline, stage)
                    args = (name, params.PARAMS_FILE, build) + ((metrics,) if stage == "verify" else ())
                    kwargs = ({"warn": lambda line: warn(flag_fix(line, name))}
                              if stage in ("convert", "freeze", "verify") else {})
                    echo(_user_paths(fn(*args, **kwargs), name, files, out))
            except KfreezeError as e:
                failure = _rename_where(e, name, files, out)
        built = ws / build / name
        if failure is not None and not (built / "verify_failed.json").exists():
            raise failure
        # --out is written whole beside itself and renamed into place, metrics last: a kill or a full
        # disk never leaves one model's files beside another's verdict.
        from kfreeze import atomic, graphio
        with atomic.directory(out) as staged:
            for artifact in ARTIFACTS:
                if (built / artifact).is_file():
                    shutil.copyfile(built / artifact, staged / artifact)
            for target in TARGET_FOLDERS:  # the siblings (--targets), each in its folder as under build/<name>/
                if (built / target / "signature.json").is_file() and len(list((built / target).iterdir())) > 1:
                    shutil.copytree(built / target, staged / target)
            if failure is None:
                names = graphio.read_json(built / "names.json")
                result_metrics = graphio.read_json(ws / metrics / f"{name}.json")
                layers = result_metrics.get("opencv_names") or {}
                record_opencv_names(staged, names["outputs"], layers)
                shutil.copyfile(ws / metrics / f"{name}.json", staged / "metrics.json")
        if failure is not None:
            raise KfreezeError(failure.where, failure.problem, f"the report is in {out / 'verify_failed.json'}")
        from kfreeze.verify.run import opencv_failure
        return Result(name, out, names["inputs"], names["outputs"], layers,
                      result_metrics.get("opencv_error") and opencv_failure(result_metrics), result_metrics)


def record_opencv_names(out: Path, outputs: list[str], layers: dict) -> None:
    """The name ``net.forward`` takes per output, as verify called it, into --out's names.json
    (``opencv_outputs``, beside ``outputs``) and signature.json (``opencv_name`` of each output)."""
    from kfreeze import graphio

    names = graphio.read_json(out / "names.json")
    names["opencv_outputs"] = [layers.get(o) for o in outputs]
    graphio.write_json(out / "names.json", names)
    if (out / "signature.json").is_file():
        signature = graphio.read_json(out / "signature.json")
        for entry in signature.get("outputs", []):
            if entry.get("name") in layers:
                entry["opencv_name"] = layers[entry["name"]]
        graphio.write_json(out / "signature.json", signature)


def report(result: Result) -> list[str]:
    """What the user types next: file names, and the tensor and layer names for TF and OpenCV."""
    from kfreeze.optimize.context import placeholder_name

    m = result.metrics
    lines = [f"wrote {result.out}/: optimized.pb ({m['ops_optimized']} ops, {m['bytes_optimized']} bytes), "
             f"frozen.pb, metrics.json" + (", signature.json" if (result.out / "signature.json").exists() else ""),
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
