"""params.yaml: the model entries and the verify settings, validated up front.

Each stage reads only the keys it declares in dvc.yaml (``STAGE_PARAMS``), so
DVC reruns exactly the stages a change can affect.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kfreeze.errors import KfreezeError

PARAMS_FILE = "params.yaml"
NAME_RE = re.compile(r"^[a-z0-9_-]+$")

# What each stage reads of models.<name>; dvc.yaml must declare exactly these.
STAGE_PARAMS: dict[str, tuple[str, ...]] = {
    "convert": ("source",),
    "export": (),
    "freeze": ("inputs", "outputs"),
    "optimize": ("inputs", "outputs", "input_shape"),
    "verify": ("source", "inputs", "outputs", "input_shape"),
}
VERIFY_KEYS = ("samples", "seed", "atol")

MODEL_KEYS = {
    "source": (str,),
    "inputs": (list,),
    "outputs": (list,),
    "input_shape": (list, dict, type(None)),
}
VERIFY_DEFAULTS = {"samples": 16, "seed": 0, "atol": 1.0e-4}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    input_shape: Any = None


@dataclass(frozen=True)
class VerifySpec:
    samples: int = 16
    seed: int = 0
    atol: float = 1.0e-4


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_name(types) -> str:
    names = {list: "a list", dict: "a mapping", str: "a string", type(None): "null", int: "an integer", float: "a number"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def load(path: str | Path = PARAMS_FILE) -> dict:
    path = Path(path)
    if not path.is_file():
        raise KfreezeError(path, "params file not found", "run from the project root, next to params.yaml")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise KfreezeError(where, f"not valid YAML ({getattr(e, 'problem', e)})", "fix the syntax") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict) or not data["models"]:
        raise KfreezeError(path, "no 'models:' mapping", "add at least one model entry under 'models:'")
    return data


def model_spec(name: str, path: str | Path = PARAMS_FILE) -> ModelSpec:
    data = load(path)
    models = data["models"]
    if name not in models:
        raise KfreezeError(path, f"no model '{name}' under 'models:'{_suggest(name, models)}",
                           f"models are: {', '.join(models)}")
    return parse_model(name, models[name], path)


def parse_model(name: str, entry: Any, path: str | Path = PARAMS_FILE) -> ModelSpec:
    where = f"{path}: models.{name}"
    if not NAME_RE.match(name):
        raise KfreezeError(where, "model name may only use a-z, 0-9, '_' and '-' (DVC stage names)",
                           "rename the entry")
    if not isinstance(entry, dict):
        raise KfreezeError(where, "entry must be a mapping of keys", "see README 'Add your own model'")
    for key, value in entry.items():
        if key not in MODEL_KEYS:
            raise KfreezeError(where, f"unknown key '{key}'{_suggest(key, MODEL_KEYS)}",
                               f"known keys: {', '.join(MODEL_KEYS)}")
        if not isinstance(value, MODEL_KEYS[key]):
            raise KfreezeError(f"{where}.{key}", f"must be {_type_name(MODEL_KEYS[key])}, got {value!r}",
                               "fix the value in params.yaml")
    if "source" not in entry:
        raise KfreezeError(where, "missing key 'source'", "set source: models/<name>/model.keras")
    for key in ("inputs", "outputs"):
        if not all(isinstance(v, str) and v for v in entry.get(key) or []):
            raise KfreezeError(f"{where}.{key}", "must be a list of node names", "e.g. [image] or []")
    return ModelSpec(
        name=name,
        source=entry["source"],
        inputs=list(entry.get("inputs") or []),
        outputs=list(entry.get("outputs") or []),
        input_shape=entry.get("input_shape"),
    )


def verify_spec(path: str | Path = PARAMS_FILE) -> VerifySpec:
    raw = load(path).get("verify") or {}
    where = f"{path}: verify"
    for key in raw:
        if key not in VERIFY_DEFAULTS:
            raise KfreezeError(where, f"unknown key '{key}'{_suggest(key, VERIFY_DEFAULTS)}",
                               f"known keys: {', '.join(VERIFY_DEFAULTS)}")
    merged = {**VERIFY_DEFAULTS, **raw}
    try:
        spec = VerifySpec(samples=int(merged["samples"]), seed=int(merged["seed"]), atol=float(merged["atol"]))
    except (TypeError, ValueError):
        raise KfreezeError(where, f"samples and seed must be integers and atol a number, got {raw}",
                           "fix the values") from None
    if spec.samples < 1 or spec.atol < 0:
        raise KfreezeError(where, "samples must be >= 1 and atol >= 0", "fix the values")
    return spec
