"""params.yaml: the model entries and the verify settings, validated up front.

Defaults and precise reruns. An entry holds only what differs from the table's defaults
(``KEYS``), so dvc.yaml cannot declare ``params:`` (DVC refuses a stage whose declared key is
absent, before kfreeze can say anything). Instead one cheap, TensorFlow-free ``resolve`` stage for
all models depends on params.yaml as a whole, validates each entry with kfreeze's own messages, and
writes each stage's resolved settings (its keys of ``STAGE_PARAMS``, defaults filled in) to
``build/settings/<name>/<stage>.json``, canonical JSON. Each stage depends on its own settings
file, and DVC skips a stage whose file's bytes did not change: a node-name edit reruns exactly
freeze, optimize and verify of that model; a verify.atol edit only the verify stages.
``kfreeze.settings`` writes those files, and a stage reads its own file and nothing else
(``settings.read``); a key its file does not cover cannot be read. A spec's ``Origin`` (a params
file's entry, or kfreeze run's flags) is what every message names.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from kfreeze.errors import KfreezeError
from kfreeze.safeyaml import safe_yaml, short
from kfreeze.targets import registry as _registry

PARAMS_FILE = "params.yaml"
# Not '-' first: it would read as a CLI option. \Z, not $: '$' also matches before a trailing newline.
NAME_RE = re.compile(r"[a-z0-9_][a-z0-9_-]{0,99}\Z")

# Keras models live under 'models:', TF graph + checkpoint models under 'graphs:'.
# They are two sections because DVC's foreach cannot filter: TF1 models have no
# convert/export stages, and a section per kind keeps dvc.yaml free of dummy stages.
KERAS, TF1, VERIFY = "models", "graphs", "verify"

PRECISIONS = ("float32", "float16", "int8")
# precision: int8 quantizes the tflite sibling only (optimized.pb, the reference, stays float32); these
# targets have no int8 path here and are refused with it.
NO_INT8 = ("onnx", "openvino", "saved_model")
# Runtimes a model is built for: tf (optimized.pb, always built) and siblings made from it, one per
# entry of kfreeze/targets/registry.py (onnx, tflite...).
TARGETS = ("tf", *_registry.EXTRA)
ONNX_LAYOUTS = ("NCHW", "NHWC")
LAYOUTS = (None, "channels_first", "channels_last")
VERIFY_MAX_SAMPLES = 100_000
SHAPE_DIM_MAX = 2**31 - 1  # int32, TensorShape's dimension type
SHAPE_RANK_MAX = 8


@dataclass(frozen=True)
class Key:
    """One params key: its YAML types, its default, and the stages that read it.

    ``stages`` is what dvc.yaml declares for the key (``dvc_params`` lists it per
    stage; a test holds dvc.yaml to it), so DVC reruns exactly the stages a change
    can affect. ``check(value, where, name)`` validates beyond the type;
    ``what`` names the accepted values in the error line.
    """
    types: tuple
    default: Any
    stages: tuple[str, ...]
    required: bool = False
    check: Optional[Callable[[Any, str, str], None]] = None
    what: str = ""
    convert: Callable[[Any], Any] = lambda v: list(v) if isinstance(v, list) else v
    per_stage: Optional[Callable[[Any, str], Any]] = None  # (value, stage) -> what that stage's settings hold
    # (value, stage, spec) -> what that stage's settings hold, when it depends on another key of the entry
    per_spec: Optional[Callable[[Any, str, Any], Any]] = None


def _is_type(value, types: tuple) -> bool:
    """isinstance, except that YAML's true/false are no numbers."""
    return (bool in types) if isinstance(value, bool) else isinstance(value, types)


_NONE = type(None)
_SHAPE = (list, dict, _NONE)
_KERAS_SOURCE = ("convert", "verify")
_FREEZE_K, _OPT_K, _VERIFY_K = ("freeze", "optimize", "verify")
_FREEZE_T, _OPT_T, _VERIFY_T = ("freeze_tf1", "optimize_tf1", "verify_tf1")
_TARGETS_K, _TARGETS_T = _registry.stages_reading("targets"), _registry.stages_reading("targets", "_tf1")
_PRECISION_K, _PRECISION_T = _registry.stages_reading("precision"), _registry.stages_reading("precision", "_tf1")
# precision int8 calibrates model.tflite on verify.data (the rows after verify's first samples)
_CALIBRATION = CALIBRATION_STAGES = ("tflite", "tflite_tf1")
_LAYOUT_K, _LAYOUT_T = _registry.stages_reading("onnx_layout"), _registry.stages_reading("onnx_layout", "_tf1")


def _check_names(value, where, _name):
    if not all(isinstance(v, str) and v for v in value):
        raise KfreezeError(where, "must be a list of node names", "e.g. [image] or []")


def _check_dtypes(value, where, _name):
    if isinstance(value, list) and not all(isinstance(d, str) for d in value):
        raise KfreezeError(where, "must be a dtype name or a list of them", "e.g. float32")


def _check_custom_objects(value, where, _name):
    for ref in value:
        if not isinstance(ref, str) or not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", ref):
            raise KfreezeError(where, f"{ref!r} is not 'module.path:Name'",
                               "e.g. custom_objects: [models.mynet.layers:MyLayer]")


def _one_of(choices, shown: str):
    def check(value, where, _name):
        if value not in choices:
            raise KfreezeError(where, f"must be {shown}, got {value!r}", f"use one of: {shown}")
    return check


def _check_targets(value, where, _name):
    for target in value:
        if target not in TARGETS:
            raise KfreezeError(where, f"unknown target {short(target)}{_suggest(str(target), TARGETS)}",
                               f"targets are {', '.join(TARGETS)}, e.g. targets: [tf, onnx, tflite]")


def _targets(value) -> list[str]:
    """Canonical order, no repeats, tf always (the other targets are made from optimized.pb)."""
    return [t for t in TARGETS if t in value or t == "tf"]


def _target_stage(targets: list[str], stage: str) -> list[str]:
    """What a target's stage (onnx, onnx_tf1...) sees of ``targets``: its own target or nothing, so adding
    tflite to a model leaves its onnx settings file, and so its onnx stage, untouched."""
    return [t for t in targets if t == stage.removesuffix("_tf1")]


def _check_file(value, where, name):
    """A model's files stay in models/<name>/, the folder DVC tracks for it: lexically, then after symlinks."""
    folder = Path("models") / name
    if value is None:
        return
    if not _inside(Path(value), folder):
        raise KfreezeError(where, f"'{value}' is not inside {folder}/, the folder DVC tracks for this model",
                           f"move the file to {folder}/ and update the path")
    check_inside(value, folder, where)


def _check_signature(value, where, _name):
    if value is not None and not value:
        raise KfreezeError(where, "must be a signature key or null", "e.g. signature: serving_default")


def _check_shape(raw, where: str, _name: str = "") -> None:
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
        raise KfreezeError(where, f"{short(raw)} is not a shape (or list of shapes, or mapping of input to shape)",
                           f"use up to {SHAPE_RANK_MAX} positive integers, -1 or null, e.g. [1, 224, 224, 3]; "
                           "true/false are not numbers")


def _at_least(low: int, high: int | None = None, example: str = ""):
    def check(value, where, _name):
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise KfreezeError(where, f"must be {bound}, got {value}", example)
    return check


def _check_tolerance(value, where, _name):
    if not math.isfinite(value) or value <= 0:
        raise KfreezeError(where, f"must be a finite number > 0, got {value!r}", "e.g. 1.0e-4")


def _check_range(rng, where, _name):
    if not (len(rng) == 2 and all(_is_type(v, (int, float)) and math.isfinite(v) for v in rng) and rng[0] < rng[1]):
        raise KfreezeError(where, f"must be [low, high] with finite numbers low < high, got {rng!r}",
                           "e.g. [0, 1] or [0, 255] for 8-bit images")


def _fraction(value, where, _name):
    if _is_type(value, (int, float)) and not (0 < value <= 1):
        raise KfreezeError(where, f"must be a number in (0, 1], got {value!r}", "e.g. top1_int8: 0.9")


def _check_data(data, where, _name):
    if data is not None and not (data and _inside(Path("models/x") / data, Path("models/x"))
                                 and not Path(data).is_absolute()):
        raise KfreezeError(where, f"must be null or a file name inside models/<name>/, got {data!r}",
                           "e.g. data: samples.npz (read from models/<name>/samples.npz)")


def _precision_stage(value, stage):
    """int8 quantizes only model.tflite: optimize builds the same float32 optimized.pb (and does not rerun)."""
    return "float32" if value == "int8" and stage in (_OPT_K, _OPT_T) else value


_NAMES = dict(check=_check_names)
_TOL = dict(check=_check_tolerance, what="a finite number > 0", convert=float)
_TARGETS = dict(check=_check_targets, what=f"a list of targets ({', '.join(TARGETS)})", convert=_targets,
                per_stage=lambda v, stage: _target_stage(v, stage) if _registry.is_target_stage(stage) else v)

# Every key of params.yaml, in the order params.yaml writes them. dvc.yaml, STAGE_PARAMS,
# the spec dataclasses and the tests' example entries all derive from this table.
KEYS: dict[str, dict[str, Key]] = {
    KERAS: {
        "source": Key((str,), None, _KERAS_SOURCE, required=True, check=_check_file),  # Keras file
        "arch": Key((str, _NONE), None, _KERAS_SOURCE, check=_check_file),  # JSON architecture beside a weights .h5
        "layout": Key((str, _NONE), None, _KERAS_SOURCE, check=_one_of(LAYOUTS, "channels_first, channels_last "
                                                                      "or null")),  # None: what the file says
        # flip conv kernels trained with Theano; None: when the weights are Theano's (kfreeze.legacy.theano_evidence)
        "theano_kernels": Key((bool, _NONE), None, _KERAS_SOURCE),
        "custom_objects": Key((list,), [], ("convert", "export", _VERIFY_K), check=_check_custom_objects),
        "trust_code": Key((bool,), False, ("convert", "export", _FREEZE_K, _VERIFY_K)),  # Lambda layers, any op
        "inputs": Key((list,), [], (_FREEZE_K, _OPT_K, _VERIFY_K), **_NAMES),
        "outputs": Key((list,), [], (_FREEZE_K, _OPT_K, _VERIFY_K), **_NAMES),
        # convert reads both: with opencv, recurrent layers are unrolled over the fixed time axis (kfreeze.unroll);
        # without opencv its settings hold no shape, so a shape edit reruns no convert
        "input_shape": Key(_SHAPE, None, ("convert", _OPT_K, _VERIFY_K), check=_check_shape,
                           per_spec=lambda v, stage, spec: None if stage == "convert" and not spec.opencv else v),
        "opencv": Key((bool,), False, ("convert", _OPT_K, _VERIFY_K)),  # rewrite to forms OpenCV dnn imports
        "precision": Key((str,), "float32", (_OPT_K, *_PRECISION_K, _VERIFY_K),
                         check=_one_of(PRECISIONS, " or ".join(PRECISIONS)), per_stage=_precision_stage),
        "targets": Key((list,), ["tf"], (*_TARGETS_K, _VERIFY_K), **_TARGETS),  # tf, onnx, tflite...
        "onnx_layout": Key((str,), "NCHW", (*_LAYOUT_K, _VERIFY_K), check=_one_of(ONNX_LAYOUTS, "NCHW or NHWC")),
        # This model's own verify keys over the project's 'verify:' (verify_spec merges them).
        "verify": Key((dict, _NONE), None, (_VERIFY_K,), check=lambda v, w, n: _check_verify_override(v, w, n),
                      what="null or a mapping of verify keys"),
    },
    TF1: {
        # A GraphDef file (with a checkpoint, or already frozen without one), or a SavedModel folder
        "graph": Key((str,), None, (_FREEZE_T, _VERIFY_T), required=True, check=_check_file),
        "checkpoint": Key((str, _NONE), None, (_FREEZE_T, _VERIFY_T), check=_check_file),  # prefix or dir; null: frozen
        "signature": Key((str, _NONE), None, (_FREEZE_T, _VERIFY_T), check=_check_signature),  # SavedModel only
        "inputs": Key((list,), [], (_FREEZE_T, _OPT_T, _VERIFY_T), **_NAMES),
        "outputs": Key((list,), [], (_FREEZE_T, _OPT_T, _VERIFY_T), **_NAMES),
        "input_shape": Key(_SHAPE, None, (_OPT_T, _VERIFY_T), check=_check_shape),
        "input_dtype": Key((str, list, _NONE), None, (_OPT_T, _VERIFY_T), check=_check_dtypes),
        "opencv": Key((bool,), False, (_OPT_T, _VERIFY_T)),
        "precision": Key((str,), "float32", (_OPT_T, *_PRECISION_T, _VERIFY_T),
                         check=_one_of(PRECISIONS, " or ".join(PRECISIONS)), per_stage=_precision_stage),
        "trust_code": Key((bool,), False, (_FREEZE_T, _VERIFY_T)),
        "targets": Key((list,), ["tf"], (*_TARGETS_T, _VERIFY_T), **_TARGETS),
        "onnx_layout": Key((str,), "NCHW", (*_LAYOUT_T, _VERIFY_T), check=_one_of(ONNX_LAYOUTS, "NCHW or NHWC")),
        "verify": Key((dict, _NONE), None, (_VERIFY_T,), check=lambda v, w, n: _check_verify_override(v, w, n),
                      what="null or a mapping of verify keys"),
    },
    VERIFY: {
        "samples": Key((int,), 16, (_VERIFY_K, _VERIFY_T, *_CALIBRATION),
                       check=_at_least(1, VERIFY_MAX_SAMPLES, "e.g. samples: 16")),
        "seed": Key((int,), 0, (_VERIFY_K, _VERIFY_T), check=_at_least(0, example="e.g. seed: 0")),
        "atol": Key((int, float), 1.0e-4, (_VERIFY_K, _VERIFY_T), **_TOL),
        "atol_float16": Key((int, float), 5.0e-3, (_VERIFY_K, _VERIFY_T), **_TOL),  # for precision: float16
        # times max|reference|: float32 sums over a ResNet50 differ by 3.5e-5 of the output's scale
        # between two correct conversions (Keras vs the TFLite converter's own file)
        "rtol": Key((int, float), 1.0e-4, (_VERIFY_K, _VERIFY_T), **_TOL),
        "rtol_float16": Key((int, float), 5.0e-3, (_VERIFY_K, _VERIFY_T), **_TOL),
        # precision: int8 (model.tflite only), measured in docs/targets.md
        "atol_int8": Key((int, float), 5.0e-2, (_VERIFY_K, _VERIFY_T), **_TOL),
        "rtol_int8": Key((int, float), 5.0e-2, (_VERIFY_K, _VERIFY_T), **_TOL),
        "top1_int8": Key((int, float), 0.9, (_VERIFY_K, _VERIFY_T), check=_fraction, what="a number in (0, 1]",
                         convert=float),  # least top-1 agreement of an int8 file's probability outputs
        "input_range": Key((list,), [0.0, 1.0], (_VERIFY_K, _VERIFY_T), check=_check_range,  # random inputs
                           what="[low, high]", convert=lambda r: (float(r[0]), float(r[1]))),
        "data": Key((str, _NONE), None, (_VERIFY_K, _VERIFY_T, *_CALIBRATION), check=_check_data,  # real inputs
                    what="null or a file name inside models/<name>/"),
    },
}
MODEL_SECTIONS = (KERAS, TF1)


def stage_params(section: str) -> dict[str, tuple[str, ...]]:
    """What each stage reads of <section>.<name> (or of verify:), in table order."""
    stages: dict[str, list[str]] = {}
    for key, spec in KEYS[section].items():
        for stage in spec.stages:
            stages.setdefault(stage, []).append(key)
    return {stage: tuple(keys) for stage, keys in stages.items()}


# What each stage reads of <section>.<name>; dvc.yaml must declare exactly these.
STAGE_PARAMS: dict[str, dict[str, tuple[str, ...]]] = {s: stage_params(s) for s in MODEL_SECTIONS}


def _spec_fields(sections) -> list[tuple]:
    fields = {}
    for section in sections:
        for key, spec in KEYS[section].items():
            default = spec.convert(spec.default)
            fields.setdefault(key, (key, Any, field(default_factory=lambda d=default: list(d))
                                    if isinstance(default, list) else field(default=default)))
    return list(fields.values())


# Keys given as files: kfreeze run takes them as SOURCE, --arch, --graph, --checkpoint, not as value flags.
FILE_KEYS = ("source", "arch", "graph", "checkpoint")


@dataclass(frozen=True)
class Origin:
    """Where a model's settings were written, so a message names what the user edits.

    A params file ('params.yaml: models.digits.input_shape', 'set ... in params.yaml'), or kfreeze
    run's command line ('--input-shape', 'pass --input-shape ...'): the library never rewrites a
    message after the fact, it asks the spec's origin.
    ``folder``: where the model's files must stay (models/<name> in a project; None for files the
    user named on the command line).
    """
    section: str = KERAS
    name: str = "model"
    params: Optional[str] = PARAMS_FILE  # None: kfreeze run's flags
    folder: Optional[str] = None

    @classmethod
    def project(cls, section: str, name: str, params: str | Path = PARAMS_FILE) -> "Origin":
        return cls(section, name, str(params), f"models/{name}")

    @property
    def entry(self) -> str:
        """'params.yaml: models.digits', or 'kfreeze run'."""
        return f"{self.params}: {self.section}.{self.name}" if self.params else "kfreeze run"

    def where(self, key: str, value: Any = None) -> str:
        """A key as the user wrote it; 'verify.<key>' is the project's verify section."""
        verify_key = key.startswith(VERIFY + ".")
        bare = key.split(".", 1)[1] if verify_key else key
        if self.params is None:
            return str(value) if bare in FILE_KEYS and value else "--" + bare.replace("_", "-")
        return f"{self.params}: {key}" if verify_key else f"{self.entry}.{key}"

    def setting(self, key: str, value: str = "") -> str:
        """The fix that sets a key: 'set models.x.trust_code: true in params.yaml' / 'pass --trust-code'."""
        verify_key = key.startswith(VERIFY + ".")
        bare = key.split(".", 1)[1] if verify_key else key
        if self.params is None:
            dashed = bare.replace("_", "-")
            if value in ("true", "false"):
                return f"pass --{'' if value == 'true' else 'no-'}{dashed}"
            return f"pass --{dashed} {value}".rstrip()
        place = key if verify_key else f"{self.section}.{self.name}.{key}"
        return f"set {place}{': ' + value if value else ''} in {self.params}"


class _ModelSpecBase:
    @property
    def is_keras(self) -> bool:
        return self.section == KERAS

    @property
    def at(self) -> Origin:
        """Where this entry came from (a params file by default)."""
        return self.origin or Origin.project(self.section, self.name)

    def where(self, key: str) -> str:
        """The key an error is about, as the user wrote it: 'params.yaml: models.digits.input_shape'."""
        return self.at.where(key, getattr(self, key, None) if key in FILE_KEYS and self.at.params is None else None)

    def setting(self, key: str, value: str = "") -> str:
        return self.at.setting(key, value)

    @property
    def maybe_legacy(self) -> bool:
        """A JSON + weights pair or an HDF5 file (by its bytes, else its suffix): possibly Keras 1/2
        (kfreeze.legacy decides)."""
        from kfreeze import sources
        return (self.arch is not None or Path(self.source or "").suffix.lower() in (".h5", ".hdf5")
                or sources.kind(self.source or "") == "hdf5")


class _VerifySpecBase:
    """Tolerances by precision; int8 only for the tflite sibling (optimized.pb stays float32)."""
    def atol_for(self, precision: str) -> float:
        return {"float16": self.atol_float16, "int8": self.atol_int8}.get(precision, self.atol)

    def rtol_for(self, precision: str) -> float:
        return {"float16": self.rtol_float16, "int8": self.rtol_int8}.get(precision, self.rtol)


# One model entry ('models:' or 'graphs:'), validated: a field per key of either section, and where it
# came from (``Origin``: a params file or kfreeze run's flags), which messages name.
ModelSpec = make_dataclass("ModelSpec", [("name", str), ("section", str, field(default=KERAS)),
                                         *_spec_fields(MODEL_SECTIONS),
                                         ("origin", Any, field(default=None, compare=False, repr=False))],
                           bases=(_ModelSpecBase,), frozen=True)
# The 'verify:' section, validated.
VerifySpec = make_dataclass("VerifySpec", _spec_fields([VERIFY]), bases=(_VerifySpecBase,), frozen=True)
ModelSpec.__module__ = VerifySpec.__module__ = __name__


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_name(types) -> str:
    names = {list: "a list", dict: "a mapping", str: "a string", type(None): "null", int: "an integer", float: "a number"}
    return " or ".join(names.get(t, t.__name__) for t in types)


_LOADED: dict = {}  # the last file parsed: {(path, text): data}


def load(path: str | Path = PARAMS_FILE) -> dict:
    """The params file, parsed and checked. The file is read on every call, its parse kept for the
    same path and text: resolve asks once per model and per section, and parsing a 200-model file
    200 times took most of its minute (issue 24). A copy is returned: callers may change it."""
    import copy

    path = Path(path)
    if not path.is_file():
        raise KfreezeError(path, "params file not found", "run from the project root, next to params.yaml")
    text = path.read_text()
    key = (str(path), text)
    if key not in _LOADED:
        data = load_text(text, path)
        _LOADED.clear()
        _LOADED[key] = data
    return copy.deepcopy(_LOADED[key])


def load_text(text: str, path: str | Path = PARAMS_FILE, require_models: bool = True) -> dict:
    """``load`` for text in hand (``kfreeze add`` checks its edit before writing it, and may
    start from a project with no models yet: ``require_models=False``)."""
    path = Path(path)
    try:
        data = safe_yaml(text, path) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise KfreezeError(where, f"not valid YAML ({getattr(e, 'problem', e)})", "fix the syntax") from None
    if not isinstance(data, dict):
        raise KfreezeError(path, "must be a mapping with 'models:' and/or 'graphs:'", "see README")
    for section in (KERAS, TF1):
        if section not in data and not require_models:
            continue
        if section not in data:  # dvc.yaml iterates both; DVC cannot parse it without them
            raise KfreezeError(path, f"no '{section}:' section", f"add '{section}: {{}}' if you have no such models")
        if data.get(section) is not None and not isinstance(data[section], dict):
            raise KfreezeError(f"{path}: {section}", "must be a mapping of model names to entries", "see README")
    if require_models and not (data.get(KERAS) or data.get(TF1)):
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
    if looks_like_a_file(name):
        raise not_a_name(name)
    raise KfreezeError(path, f"no model '{name}' under 'models:' or 'graphs:'{_suggest(name, known)}",
                       f"models are: {', '.join(known)}")


GRAPH_SUFFIXES = (".pb", ".pbtxt", ".meta")
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5", ".json") + GRAPH_SUFFIXES


def looks_like_a_file(name: str) -> bool:
    """A path where a model name belongs: a '/', a model file's suffix, or an existing file."""
    return "/" in name or "\\" in name or Path(name).suffix.lower() in MODEL_SUFFIXES or Path(name).is_file()


def not_a_name(name: str) -> KfreezeError:
    """The stage commands take a params.yaml name; a file goes to 'kfreeze run' or 'kfreeze add'."""
    if Path(name).suffix.lower() in GRAPH_SUFFIXES:
        run, add = f"kfreeze run --graph {name} --checkpoint CKPT", f"kfreeze add NAME --graph {name} --checkpoint CKPT"
    else:
        run, add = f"kfreeze run {name}", f"kfreeze add NAME {name}"
    return KfreezeError(name, "is a file path; this command takes a model name from params.yaml",
                        f"to freeze a single file use '{run}' (or '{add}' to register it)")


# build/<name>/ beside build/settings/, which holds every model's settings
RESERVED_NAMES = ("settings",)


def check_name(name: Any, where: str) -> None:
    """A model name is data that dvc.yaml puts on command lines: a-z, 0-9, '_', '-', at most 100."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise KfreezeError(where, "model name may only use a-z, 0-9, '_' and '-', at most 100 of them, not '-' "
                           "first (it names DVC stages and is part of their command lines)", "rename the entry")
    if name in RESERVED_NAMES:
        raise KfreezeError(where, f"'{name}' is reserved (build/{name}/ holds every model's settings)",
                           "rename the entry")


def check_all_names(path: str | Path = PARAMS_FILE) -> list[str]:
    """Every model name in params.yaml, checked: the 'names' DVC stage runs this before any stage whose
    command line holds a name; and no FIFO or device in their folders, which DVC would hash next.
    Returns them as 'models.<name>' / 'graphs.<name>'."""
    from kfreeze.settings import special_file

    raw = load(path)
    found = []
    for section in (KERAS, TF1):
        for name in raw.get(section) or {}:
            check_name(name, f"{path}: {section}.{escape_name(name)}")
            found.append(f"{section}.{name}")
            # DVC hashes models/ for resolve: a FIFO there would block it for good.
            folder = Path(path).parent / "models" / name
            for file in sorted(folder.rglob("*")) if folder.is_dir() and not folder.is_symlink() else []:
                special_file(file)
    return found


def escape_name(name: Any) -> str:
    """A name as it can be shown on one line: control characters and quotes escaped."""
    text = str(name)
    return text if NAME_RE.match(text) else repr(text)


def parse_model(name: str, entry: Any, path: str | Path = PARAMS_FILE, section: str = KERAS,
                origin: Optional[Origin] = None) -> ModelSpec:
    """An entry, validated. ``origin`` says where it came from (default: ``path``'s section.name);
    kfreeze run's flags (``Origin(params=None)``) name files the user gave on the command line,
    which need not be in models/<name>/."""
    origin = origin or Origin.project(section, name, path)
    where = origin.entry
    check_name(name, where)
    if not isinstance(entry, dict):
        raise KfreezeError(where, "entry must be a mapping of keys", "see README 'Add your own model'")
    other = KERAS if section == TF1 else TF1
    keys = KEYS[section]
    _check_types(entry, keys, origin.where, hint=lambda key: (f" (a '{key}' entry belongs under '{other}:')"
                                                              if key in KEYS[other] else _suggest(key, keys)))
    needed = [k for k, key in keys.items() if key.required and k not in entry]
    if needed:
        raise KfreezeError(where, f"missing key(s) {', '.join(needed)}",
                           "every other key has a default (README: the keys table lists them)")
    _check_values({k: v for k, v in entry.items() if origin.folder is not None or k not in FILE_KEYS},
                  keys, origin.where, name)
    if entry.get("opencv") is True and entry.get("precision") == "float16":
        # Checked here, before any stage runs: OpenCV 4.6, 4.14 and 5.0 all fail to load such a graph
        # ("Const input blob for weights not found": its importer has no Cast after a weight).
        raise KfreezeError(origin.where("precision"), "float16 weights and opencv: true do not go together: OpenCV's "
                           "TF importer cannot read float16 weights",
                           "use precision: float32 for OpenCV (OpenCV halves weights itself with "
                           "net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU_FP16)), or set opencv: false")
    if entry.get("precision") == "int8":
        others = [t for t in _targets(entry.get("targets", ["tf"])) if t in NO_INT8]
        if "tflite" not in entry.get("targets", []) or others:
            problem = ("int8 quantizes only the tflite target, and targets has no tflite" if not others else
                       f"int8 quantizes only the tflite target; {', '.join(others)} cannot be int8 here")
            both = "[tf, tflite]" if origin.params else "'[tf, tflite]'"  # quoted for the shell
            raise KfreezeError(origin.where("precision"), problem, f"{origin.setting('targets', both)} "
                               "with int8 (optimized.pb stays float32), or use precision float32/float16 for the "
                               "other targets")
    return ModelSpec(name=name, section=section, origin=origin,
                     **{k: key.convert(entry[k] if k in entry else key.default) for k, key in keys.items()})


def check_int8(spec, vspec) -> None:
    """precision: int8 calibrates on verify's real inputs: refused up front without verify.data."""
    if spec.precision == "int8" and not vspec.data:
        raise KfreezeError(spec.where("precision"),
                           "int8 needs real inputs to calibrate on, and verify.data is not set",
                           "set verify.data to an .npz of inputs in models/<name>/ (as verify reads it), "
                           "or use precision: float32 or float16")


def _check_types(entry: dict, keys: dict[str, Key], where: Callable[[str], str] | str, hint) -> None:
    """Unknown keys and each key's type (then ``_check_values``): every key is validated here and only here.
    ``where``: the entry's place, or a function from a key to its place (``Origin.where``)."""
    at = where if callable(where) else lambda key: f"{where}.{key}"
    for key, value in entry.items():
        if key not in keys:
            raise KfreezeError(at("").rstrip("."),
                               f"unknown key '{key}'{hint(str(key))}", f"known keys: {', '.join(keys)}")
        spec = keys[key]
        if not _is_type(value, spec.types):
            raise KfreezeError(at(key), f"must be {spec.what or _type_name(spec.types)}, got {short(value)}",
                               f"give {spec.what or _type_name(spec.types)}")


def _check_values(entry: dict, keys: dict[str, Key], where: Callable[[str], str] | str, name: str) -> None:
    at = where if callable(where) else lambda key: f"{where}.{key}"
    for key, value in entry.items():
        if keys[key].check is not None:
            keys[key].check(value, at(key), name)


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


def verify_spec(path: str | Path = PARAMS_FILE, name: str | None = None) -> VerifySpec:
    """The 'verify:' section, every key checked for its exact type (a YAML ``true`` is no integer);
    with ``name``, that model's own ``verify:`` keys override the project's (a text model and an
    image model in one project take different input ranges and data files)."""
    data = load(path)
    raw = _verify_mapping(data.get(VERIFY), f"{path}: verify", "")
    if name is not None:
        for section in (KERAS, TF1):
            entry = (data.get(section) or {}).get(name)
            if isinstance(entry, dict) and entry.get(VERIFY) is not None:
                raw = {**raw, **_verify_mapping(entry[VERIFY], f"{path}: {section}.{name}.verify", name)}
    keys = KEYS[VERIFY]
    return VerifySpec(**{k: key.convert(raw.get(k, key.default)) for k, key in keys.items()})


def verify_from(raw: dict, origin: Origin) -> VerifySpec:
    """Verify keys given elsewhere than a params file (kfreeze run's flags), checked as ``verify_spec``
    checks them; ``data`` is then a path the user named, not a file in models/<name>/."""
    keys = KEYS[VERIFY]
    _check_types(raw, keys, lambda k: origin.where(f"{VERIFY}.{k}"), hint=lambda key: _suggest(key, keys))
    _check_values({k: v for k, v in raw.items() if origin.folder is not None or k != "data"}, keys,
                  lambda k: origin.where(f"{VERIFY}.{k}"), origin.name)
    return VerifySpec(**{k: key.convert(raw.get(k, key.default)) for k, key in keys.items()})


def _verify_mapping(raw, where: str, name: str) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise KfreezeError(where, "must be a mapping", "e.g. verify: {samples: 16, seed: 0, atol: 1.0e-4}")
    keys = KEYS[VERIFY]
    _check_types(raw, keys, where, hint=lambda key: _suggest(key, keys))
    _check_values(raw, keys, where, name)
    return raw


def _check_verify_override(value, where, name):
    _verify_mapping(value, where, name)
