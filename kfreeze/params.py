"""params.yaml: the model entries and the verify settings, validated up front.

Each stage reads only the keys it declares in dvc.yaml (``STAGE_PARAMS``), so
DVC reruns exactly the stages a change can affect.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kfreeze.errors import KfreezeError

PARAMS_FILE = "params.yaml"
NAME_RE = re.compile(r"^[a-z0-9_][a-z0-9_-]*$")  # not '-' first: it would read as a CLI option
YAML_NODES_MAX = 100_000  # params.yaml expanded through its aliases; a real one has a few hundred

# Keras models live under 'models:', TF graph + checkpoint models under 'graphs:'.
# They are two sections because DVC's foreach cannot filter: TF1 models have no
# convert/export stages, and a section per kind keeps dvc.yaml free of dummy stages.
KERAS, TF1 = "models", "graphs"

# What each stage reads of <section>.<name>; dvc.yaml must declare exactly these.
STAGE_PARAMS: dict[str, dict[str, tuple[str, ...]]] = {
    KERAS: {
        "convert": ("source", "arch", "layout", "theano_kernels", "custom_objects", "trust_code"),
        "export": ("custom_objects", "trust_code"),
        "freeze": ("inputs", "outputs", "trust_code"),
        "optimize": ("inputs", "outputs", "input_shape", "opencv", "precision"),
        "verify": ("source", "arch", "layout", "theano_kernels", "custom_objects", "trust_code",
                   "inputs", "outputs", "input_shape", "precision"),
    },
    TF1: {
        "freeze_tf1": ("graph", "checkpoint", "inputs", "outputs", "trust_code"),
        "optimize_tf1": ("inputs", "outputs", "input_shape", "input_dtype", "opencv", "precision"),
        "verify_tf1": ("graph", "checkpoint", "inputs", "outputs", "input_shape", "input_dtype", "precision",
                       "trust_code"),
    },
}
VERIFY_KEYS = ("samples", "seed", "atol", "atol_float16", "rtol", "rtol_float16", "input_range", "data")

_SHAPE = (list, dict, type(None))
SECTION_KEYS: dict[str, dict[str, tuple]] = {
    KERAS: {"source": (str,), "arch": (str, type(None)), "layout": (str, type(None)),
            "theano_kernels": (bool, type(None)), "custom_objects": (list,), "trust_code": (bool,),
            "inputs": (list,), "outputs": (list,), "input_shape": _SHAPE, "opencv": (bool,), "precision": (str,)},
    TF1: {"graph": (str,), "checkpoint": (str,), "inputs": (list,), "outputs": (list,), "input_shape": _SHAPE,
          "input_dtype": (str, list, type(None)), "opencv": (bool,), "precision": (str,), "trust_code": (bool,)},
}
REQUIRED = {KERAS: ("source",), TF1: ("graph", "checkpoint")}
VERIFY_DEFAULTS = {"samples": 16, "seed": 0, "atol": 1.0e-4, "atol_float16": 5.0e-3, "rtol": 1.0e-5,
                   "rtol_float16": 5.0e-3, "input_range": [0.0, 1.0], "data": None}
VERIFY_MAX_SAMPLES = 100_000
PRECISIONS = ("float32", "float16")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    section: str = KERAS                     # KERAS or TF1
    source: str | None = None                # Keras file (models:)
    arch: str | None = None                  # JSON architecture beside a weights-only .h5
    layout: str | None = None                # channels_first | channels_last; None: what the file says
    theano_kernels: bool | None = None       # flip conv kernels trained with Theano
    custom_objects: list[str] = field(default_factory=list)  # "module.path:Name" classes to import
    trust_code: bool = False                 # allow Lambda layers and any graph op (code from the file runs)
    graph: str | None = None                 # GraphDef file (graphs:)
    checkpoint: str | None = None            # checkpoint prefix or directory (graphs:)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    input_shape: Any = None
    input_dtype: Any = None
    opencv: bool = False                     # rewrite to forms OpenCV dnn imports (same outputs, valid TF)
    precision: str = "float32"               # float16: weights stored half-size, with a Cast

    @property
    def is_keras(self) -> bool:
        return self.section == KERAS

    @property
    def maybe_legacy(self) -> bool:
        """A JSON + weights pair or an .h5: possibly Keras 1/2 (kfreeze.legacy decides)."""
        return self.arch is not None or Path(self.source or "").suffix.lower() in (".h5", ".hdf5")


@dataclass(frozen=True)
class VerifySpec:
    samples: int = 16
    seed: int = 0
    atol: float = 1.0e-4
    atol_float16: float = 5.0e-3  # for models with precision: float16
    rtol: float = 1.0e-5          # relative to the output's largest reference magnitude
    rtol_float16: float = 5.0e-3
    input_range: tuple = (0.0, 1.0)  # random inputs: uniform [low, high) for floats
    data: str | None = None          # a file name inside models/<name>/: real inputs, one array per input

    def atol_for(self, precision: str) -> float:
        return self.atol_float16 if precision == "float16" else self.atol

    def rtol_for(self, precision: str) -> float:
        return self.rtol_float16 if precision == "float16" else self.rtol


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_name(types) -> str:
    names = {list: "a list", dict: "a mapping", str: "a string", type(None): "null", int: "an integer", float: "a number"}
    return " or ".join(names.get(t, t.__name__) for t in types)


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                if key in seen:
                    raise KfreezeError(f"{self.name}:{key_node.start_mark.line + 1}", f"duplicate key {_short(key)}",
                                       "YAML keeps only the last one; remove or rename the other")
                seen.add(key)
        return super().construct_mapping(node, deep)


def safe_yaml(text: str, path) -> object:
    """``yaml.safe_load`` with aliases bounded and duplicate keys refused.

    Aliases share one Python object, so a billion-laughs file loads small but
    explodes wherever it is walked or printed; its expanded size is counted on
    the node graph first, before anything is built.
    """
    loader = _Loader(text)
    loader.name = str(path)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        sizes: dict[int, int] = {}

        def expanded(n) -> int:
            if id(n) in sizes:
                return sizes[id(n)]
            sizes[id(n)] = YAML_NODES_MAX + 1  # a recursive alias counts as too big
            children = (n.value if isinstance(n, yaml.SequenceNode) else
                        [c for kv in n.value for c in kv] if isinstance(n, yaml.MappingNode) else [])
            total = 1
            for child in children:
                total += expanded(child)
                if total > YAML_NODES_MAX:
                    break
            sizes[id(n)] = total
            return total

        if expanded(node) > YAML_NODES_MAX:
            raise KfreezeError(path, f"expands to more than {YAML_NODES_MAX} values through its aliases (&anchors "
                               "and *references)", "write the entries out; kfreeze refuses alias bombs")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def load(path: str | Path = PARAMS_FILE) -> dict:
    path = Path(path)
    if not path.is_file():
        raise KfreezeError(path, "params file not found", "run from the project root, next to params.yaml")
    try:
        data = safe_yaml(path.read_text(), path) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise KfreezeError(where, f"not valid YAML ({getattr(e, 'problem', e)})", "fix the syntax") from None
    if not isinstance(data, dict):
        raise KfreezeError(path, "must be a mapping with 'models:' and/or 'graphs:'", "see README")
    for section in (KERAS, TF1):
        if section not in data:  # dvc.yaml iterates both; DVC cannot parse it without them
            raise KfreezeError(path, f"no '{section}:' section", f"add '{section}: {{}}' if you have no such models")
        if data.get(section) is not None and not isinstance(data[section], dict):
            raise KfreezeError(f"{path}: {section}", "must be a mapping of model names to entries", "see README")
    if not (data.get(KERAS) or data.get(TF1)):
        raise KfreezeError(path, "no models", "add an entry under 'models:' (Keras) or 'graphs:' (TF graph + checkpoint)")
    both = set(data.get(KERAS) or {}) & set(data.get(TF1) or {})
    if both:
        raise KfreezeError(path, f"'{sorted(both)[0]}' is under both 'models:' and 'graphs:'", "rename one of them")
    return data


def model_spec(name: str, path: str | Path = PARAMS_FILE) -> ModelSpec:
    """The entry ``name`` from 'models:' or 'graphs:', validated."""
    data = load(path)
    for section in (KERAS, TF1):
        if name in (data.get(section) or {}):
            return parse_model(name, data[section][name], path, section)
    known = [*(data.get(KERAS) or {}), *(data.get(TF1) or {})]
    raise KfreezeError(path, f"no model '{name}' under 'models:' or 'graphs:'{_suggest(name, known)}",
                       f"models are: {', '.join(known)}")


def all_specs(path: str | Path = PARAMS_FILE) -> list[ModelSpec]:
    data = load(path)
    return [parse_model(name, entry, path, section)
            for section in (KERAS, TF1) for name, entry in (data.get(section) or {}).items()]


def parse_model(name: str, entry: Any, path: str | Path = PARAMS_FILE, section: str = KERAS) -> ModelSpec:
    where = f"{path}: {section}.{name}"
    keys = SECTION_KEYS[section]
    if not NAME_RE.match(str(name)):
        raise KfreezeError(where, "model name may only use a-z, 0-9, '_' and '-' (DVC stage names)",
                           "rename the entry")
    if not isinstance(entry, dict):
        raise KfreezeError(where, "entry must be a mapping of keys", "see README 'Add your own model'")
    other = KERAS if section == TF1 else TF1
    for key, value in entry.items():
        if key not in keys:
            hint = (f" (a '{key}' entry belongs under '{other}:')" if key in SECTION_KEYS[other]
                    else _suggest(key, keys))
            raise KfreezeError(where, f"unknown key '{key}'{hint}", f"known keys: {', '.join(keys)}")
        if not isinstance(value, keys[key]):
            raise KfreezeError(f"{where}.{key}", f"must be {_type_name(keys[key])}, got {_short(value)}",
                               "fix the value in params.yaml")
    needed = [k for k in REQUIRED[section] if k not in entry]
    declared = {k for keys_ in STAGE_PARAMS[section].values() for k in keys_}
    missing = [k for k in sorted(declared - set(entry)) if k not in needed]
    if needed or missing:
        raise KfreezeError(where, f"missing key(s) {', '.join(needed + missing)}",
                           "every key DVC tracks must be present; use [] or null for defaults")
    for key in ("inputs", "outputs"):
        if not all(isinstance(v, str) and v for v in entry.get(key) or []):
            raise KfreezeError(f"{where}.{key}", "must be a list of node names", "e.g. [image] or []")
    _check_shape(entry.get("input_shape"), f"{where}.input_shape")
    if isinstance(entry.get("input_dtype"), list) and not all(isinstance(d, str) for d in entry["input_dtype"]):
        raise KfreezeError(f"{where}.input_dtype", "must be a dtype name or a list of them", "e.g. float32")
    for ref in entry.get("custom_objects") or []:
        if not isinstance(ref, str) or not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", ref):
            raise KfreezeError(f"{where}.custom_objects", f"{ref!r} is not 'module.path:Name'",
                               "e.g. custom_objects: [models.mynet.layers:MyLayer]")
    if entry.get("precision", "float32") not in PRECISIONS:
        raise KfreezeError(f"{where}.precision", f"must be one of {', '.join(PRECISIONS)}, got {entry['precision']!r}",
                           "fix the value in params.yaml")
    if entry.get("layout") not in (None, "channels_first", "channels_last"):
        raise KfreezeError(f"{where}.layout", f"must be channels_first, channels_last or null, got {entry['layout']!r}",
                           "fix the value in params.yaml")
    folder = Path("models") / name
    for key in ("source", "arch", "graph", "checkpoint"):
        value = entry.get(key)
        if value is not None and not _inside(Path(value), folder):
            raise KfreezeError(f"{where}.{key}", f"'{value}' is not inside {folder}/, the folder DVC tracks for "
                               "this model", f"move the file to {folder}/ and update the path")
    for key in ("source", "arch", "graph", "checkpoint"):
        if entry.get(key) is not None:
            check_inside(entry[key], folder, f"{where}.{key}")
    return ModelSpec(
        name=name,
        section=section,
        source=entry.get("source"),
        arch=entry.get("arch"),
        layout=entry.get("layout"),
        theano_kernels=entry.get("theano_kernels"),
        custom_objects=list(entry.get("custom_objects") or []),
        trust_code=bool(entry.get("trust_code")),
        graph=entry.get("graph"),
        checkpoint=entry.get("checkpoint"),
        inputs=list(entry.get("inputs") or []),
        outputs=list(entry.get("outputs") or []),
        input_shape=entry.get("input_shape"),
        input_dtype=entry.get("input_dtype"),
        opencv=bool(entry.get("opencv")),
        precision=entry.get("precision") or "float32",
    )


SHAPE_DIM_MAX = 2**31 - 1
SHAPE_RANK_MAX = 8


def _check_shape(raw, where: str) -> None:
    """input_shape's exact types: integers (not booleans), null, lists and a mapping of them."""
    def dims_ok(shape) -> bool:
        return (isinstance(shape, list) and len(shape) <= SHAPE_RANK_MAX and
                all(d is None or (type(d) is int and (0 < d <= SHAPE_DIM_MAX or d == -1)) for d in shape))
    if raw is None:
        return
    shapes = list(raw.values()) if isinstance(raw, dict) else (
        raw if raw and all(isinstance(s, list) for s in raw) else [raw])
    names_ok = not isinstance(raw, dict) or all(isinstance(k, str) for k in raw)
    if not names_ok or not all(s is None and isinstance(raw, dict) or dims_ok(s) for s in shapes):
        raise KfreezeError(where, f"{_short(raw)} is not a shape (or list of shapes, or mapping of input to shape)",
                           f"use up to {SHAPE_RANK_MAX} positive integers, -1 or null, e.g. [1, 224, 224, 3]; "
                           "true/false are not numbers")


def check_inside(path: str | Path, folder: str | Path, where: str) -> Path:
    """``path`` after symlinks, refused unless it stays inside ``folder`` (itself no symlink).

    The lexical check in parse_model is not enough: a symlink in models/<name>/
    can point anywhere, and DVC does not track what it points to.
    """
    folder = Path(folder)
    if folder.is_symlink():
        raise KfreezeError(where, f"{folder} is a symlink (to {os.readlink(folder)}); kfreeze reads models only "
                           "from their own folder", f"put the files in a real folder {folder}/")
    real_folder = folder.resolve()
    real = Path(path).resolve()
    if real != real_folder and real_folder not in real.parents:
        raise KfreezeError(where, f"'{path}' leads outside {folder}/ (to {real}) through a symlink",
                           f"copy the file into {folder}/ instead of linking it")
    return real


def _inside(path: Path, folder: Path) -> bool:
    parts, base = path.parts, folder.parts
    return not path.is_absolute() and ".." not in parts and parts[: len(base)] == base and len(parts) > len(base)


def verify_spec(path: str | Path = PARAMS_FILE) -> VerifySpec:
    """The 'verify:' section, every key checked for its exact type (a YAML ``true`` is no integer)."""
    raw = load(path).get("verify")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise KfreezeError(f"{path}: verify", "must be a mapping", "e.g. verify: {samples: 16, seed: 0, atol: 1.0e-4}")
    where = f"{path}: verify"
    for key in raw:
        if key not in VERIFY_DEFAULTS:
            raise KfreezeError(where, f"unknown key '{key}'{_suggest(str(key), VERIFY_DEFAULTS)}",
                               f"known keys: {', '.join(VERIFY_DEFAULTS)}")
    merged = {**VERIFY_DEFAULTS, **raw}
    for key in ("samples", "seed"):
        value = merged[key]
        if not _is_int(value):
            raise KfreezeError(f"{where}.{key}", f"must be an integer, got {value!r}", "fix the value in params.yaml")
    if not 1 <= merged["samples"] <= VERIFY_MAX_SAMPLES:
        raise KfreezeError(f"{where}.samples", f"must be between 1 and {VERIFY_MAX_SAMPLES}, got {merged['samples']}",
                           "e.g. samples: 16")
    if merged["seed"] < 0:
        raise KfreezeError(f"{where}.seed", f"must be >= 0, got {merged['seed']}", "e.g. seed: 0")
    for key in ("atol", "atol_float16", "rtol", "rtol_float16"):
        value = merged[key]
        if not _is_number(value) or not math.isfinite(value) or value <= 0:
            raise KfreezeError(f"{where}.{key}", f"must be a finite number > 0, got {value!r}",
                               f"e.g. {key}: {VERIFY_DEFAULTS[key]:g}")
    rng = merged["input_range"]
    if not (isinstance(rng, list) and len(rng) == 2 and all(_is_number(v) and math.isfinite(v) for v in rng)
            and rng[0] < rng[1]):
        raise KfreezeError(f"{where}.input_range", f"must be [low, high] with finite numbers low < high, got {rng!r}",
                           "e.g. [0, 1] or [0, 255] for 8-bit images")
    data = merged["data"]
    if data is not None and not (isinstance(data, str) and data and _inside(Path("models/x") / data, Path("models/x"))
                                 and not Path(data).is_absolute()):
        raise KfreezeError(f"{where}.data", f"must be null or a file name inside models/<name>/, got {data!r}",
                           "e.g. data: samples.npz (read from models/<name>/samples.npz)")
    return VerifySpec(samples=merged["samples"], seed=merged["seed"], atol=float(merged["atol"]),
                      atol_float16=float(merged["atol_float16"]), rtol=float(merged["rtol"]),
                      rtol_float16=float(merged["rtol_float16"]),
                      input_range=(float(rng[0]), float(rng[1])), data=data)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
