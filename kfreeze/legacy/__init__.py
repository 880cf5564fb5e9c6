"""Legacy Keras sources: Keras 1/2 .h5 files, JSON + weights pairs, Theano and channels_first models.

``convert`` routes such sources here; everything after it sees the canonical Keras 3,
channels_last model. The path: read the file with tf_keras (upgrading Keras 1
configs first), plan the layout rewrite, build the Keras 3 model from the rewritten
config, and copy the weights with kernels flipped and Dense rows reordered as needed.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kfreeze.errors import KfreezeError
from kfreeze.graphio import check_file
from kfreeze.legacy import keras3, layout as layout_lib, source as files
from kfreeze.legacy.layout import Plan, cl_perm
from kfreeze.legacy.reference import reference_model, reference_outputs

__all__ = ["Converted", "Plan", "convert_source", "is_legacy", "layout_plan", "load_source",
           "reference_model", "reference_outputs", "to_channels_first", "to_channels_last"]


@dataclass(frozen=True)
class Converted:
    model: object   # keras.Model, channels_last
    plan: Plan      # which inputs/outputs changed layout


def is_legacy(source, arch=None) -> bool:
    """True for JSON + weights, and for .h5 files not written by Keras 3 (which keras_io loads as before)."""
    if arch is not None:
        return True
    from kfreeze import sources

    path = Path(source)
    if not path.is_file() or (path.suffix.lower() not in files.H5_SUFFIXES and sources.kind(path) != "hdf5"):
        return False
    version = files.h5_keras_version(path)
    return version is not None and not version.startswith("3.")


def resolve_layout(src: files.SourceFile, layout: str | None, where) -> str:
    """The 'layout' setting, checked against what the layers say; else what they say; else channels_last."""
    if layout is not None and layout not in files.LAYOUTS:
        raise KfreezeError(where, f"layout '{layout}' is not one of {', '.join(files.LAYOUTS)}", "fix params.yaml")
    stated = files.explicit_layout(src, where)
    if layout and stated and layout != stated:
        raise KfreezeError(where, f"layout is set to {layout} but the file's layers say {stated}",
                           "remove 'layout' or correct it")
    return layout or stated or "channels_last"


def _warn_theano(src: files.SourceFile, theano_kernels: bool | None) -> None:
    if theano_kernels is None and (src.backend or "").lower() == "theano":
        print(f"warning: {src.weights}: written with the Theano backend; if it was trained with Theano its "
              "convolution kernels must be flipped: set theano_kernels: true (or false to silence this)",
              file=sys.stderr)


def _source_model(source, arch, layout: str | None):
    src = files.read_source(source, arch)
    where = arch or source
    fmt = resolve_layout(src, layout, where)
    model = files.build_model(src, fmt)
    config = {"class_name": "Sequential" if type(model).__name__ == "Sequential" else "Functional",
              "config": model.get_config()}
    return src, model, config, layout_lib.analyse(model, config, where)


def layout_plan(source, arch=None, layout: str | None = None) -> Plan:
    """Which inputs and outputs the conversion transposes; verify feeds and compares by it."""
    if (native := _keras3_arch(source, arch)) is not None:
        return _unchanged(native)
    return _source_model(source, arch, layout)[3]


def _keras3_arch(source, arch):
    """A Keras 3 ``to_json`` architecture with ``save_weights`` weights: Keras 3 builds it as it is."""
    if arch is None:
        return None
    config = files.read_arch(check_file(arch, "architecture file"))  # as read_source does
    if not files.is_keras3_config(config):
        return None
    source = Path(source)
    if not source.name.lower().endswith(".weights.h5"):
        raise KfreezeError(source, "a Keras 3 architecture needs the weights Keras 3's save_weights() writes, "
                           "a '.weights.h5' file", "give that file (rename it to end in .weights.h5 if needed)")
    from kfreeze import h5check
    try:
        model = keras3.keras.models.model_from_json(json.dumps(config))
        shapes = {layer.name: [tuple(v.shape) for v in layer.variables] for layer in model.layers}
    except Exception as e:  # Keras raises many types; all mean "this pair does not load"
        raise _keras3_error(source, arch, e) from None
    h5check.check_structure(source)
    h5check.check_weights(source, shapes, by_layer=False)  # before Keras reads a value
    try:
        model.load_weights(source)
    except Exception as e:  # Keras raises many types; all mean "this pair does not load"
        raise _keras3_error(source, arch, e) from None
    return model


def _keras3_error(source, arch, e: Exception) -> KfreezeError:
    return KfreezeError(source, f"Keras 3 cannot load these weights into the architecture in {arch} "
                        f"({' '.join(str(e).split())[:200]})", "give the weights saved from that model")


def _unchanged(model) -> Plan:
    return Plan(False, [False] * len(model.inputs), [False] * len(model.outputs))


def convert_source(source, arch=None, layout: str | None = None, theano_kernels: bool | None = None) -> Converted:
    if (native := _keras3_arch(source, arch)) is not None:
        return Converted(native, _unchanged(native))
    src, model, config, plan = _source_model(source, arch, layout)
    keras3.check_activations(config, arch or source)
    _warn_theano(src, theano_kernels)
    files.load_weights(model, src)
    where = arch or source
    converted = keras3.build(keras3.keras3_config(config, plan, where, model), where)
    keras3.copy_weights(model, converted, plan, bool(theano_kernels), where)
    return Converted(converted, plan)


def load_source(source: Path, arch: Path | None = None, layout: str | None = None,
                theano_kernels: bool | None = None):
    """The Keras 3, channels_last model of a legacy source, with the source's layer, input and output names."""
    return convert_source(source, arch, layout, theano_kernels).model


def to_channels_last(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, cl_perm(x.ndim))


def to_channels_first(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, np.argsort(cl_perm(x.ndim)))
