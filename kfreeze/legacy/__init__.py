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
           "reference_model", "reference_outputs", "theano_decision", "theano_evidence", "to_channels_first",
           "to_channels_last", "uses_theano_kernels"]


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
        raise KfreezeError(where, f"layout '{layout}' is not one of {', '.join(files.LAYOUTS)}", "use channels_first, channels_last or null")
    stated = files.explicit_layout(src, where)
    if layout and stated and layout != stated:
        raise KfreezeError(where, f"layout is set to {layout} but the file's layers say {stated}",
                           "remove 'layout' or correct it")
    return layout or stated or "channels_last"


def theano_evidence(src: files.SourceFile) -> str | None:
    """Why the file's weights are Theano's, or None when nothing in the file says so.

    The default of ``theano_kernels`` (null) follows this, because a wrong guess either way gives a model
    that loads, runs and computes something else, and only the file can tell:

    - ``backend: theano`` (the attribute Keras 2 wrote beside the weights): Keras 2's own loader
      (``preprocess_weights_for_loading``) flipped the Conv kernels of exactly such files on load, so
      flipping reproduces what the model computed for its users.
    - a backend attribute other than theano is believed, whatever the names.
    - weight names without ``:0`` (Keras 1 wrote no backend attribute): Keras saved each weight's
      variable name, and a TensorFlow variable's name ends in ``:0`` (its output), a Theano shared
      variable's does not (``convolution2d_1_W``). Keras 2 did not flip these; the conversion went
      silently wrong unless the user knew to flip.
    - ``dim_ordering: th`` alone is a layout, not a backend: TensorFlow-trained Keras 1 models used it
      too, and their names end in ``:0``. kfreeze converts the layout on its own (``layout``).
    """
    if src.backend:  # the file names its backend: believed
        return "the file says backend 'theano'" if src.backend.lower() == "theano" else None
    names = files.weight_names(src.weights)
    if names and not any(":" in n for n in names):
        return f"its weight names have no ':0' (e.g. '{names[0]}'), as Theano named them"
    return None


def theano_decision(src: files.SourceFile, setting: bool | None, model=None) -> tuple[bool, str | None]:
    """(flip the convolution kernels?, the one-line notice when kfreeze decided it), for ``theano_kernels``
    set to ``setting``: true/false is the user's word; null is ``theano_evidence``."""
    if setting is not None:
        return bool(setting), None
    evidence = theano_evidence(src)
    if evidence is None:
        return False, None
    convs = [layer.name for layer in (model.layers if model is not None else [])
             if type(layer).__name__ in keras3.THEANO_KERNELS]
    notice = (f"{src.weights}: weights saved by Theano ({evidence}); flipping the kernels of {len(convs)} "
              "convolution layer(s) as Theano convolved; set theano_kernels to false (kfreeze run: "
              "--no-theano-kernels) if they "
              "were not trained with Theano") if convs else None
    return True, notice


def uses_theano_kernels(source, arch=None, setting: bool | None = None) -> bool:
    """What ``convert`` decided for this source (verify's reference flips the same way)."""
    if setting is not None or _keras3_arch_config(arch):
        return bool(setting)
    return theano_decision(files.read_source(source, arch), None)[0]


def _keras3_arch_config(arch) -> bool:
    return arch is not None and files.is_keras3_config(files.read_arch(check_file(arch, "architecture file")))


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


def convert_source(source, arch=None, layout: str | None = None, theano_kernels: bool | None = None,
                   warn=None) -> Converted:
    """``theano_kernels`` null: flip when the file's weights are Theano's (``theano_evidence``), saying so
    in one line through ``warn`` (stderr by default)."""
    if (native := _keras3_arch(source, arch)) is not None:
        return Converted(native, _unchanged(native))
    src, model, config, plan = _source_model(source, arch, layout)
    keras3.check_activations(config, arch or source)
    flip, notice = theano_decision(src, theano_kernels, model)
    if notice:
        (warn or _stderr)(notice)
    files.load_weights(model, src)
    where = arch or source
    converted = keras3.build(keras3.keras3_config(config, plan, where, model), where)
    keras3.copy_weights(model, converted, plan, flip, where)
    return Converted(converted, plan)



def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def load_source(source: Path, arch: Path | None = None, layout: str | None = None,
                theano_kernels: bool | None = None, warn=None):
    """The Keras 3, channels_last model of a legacy source, with the source's layer, input and output names."""
    from kfreeze import keras_io
    with keras_io.bounded_load(Path(source), arch and Path(arch)):
        return convert_source(source, arch, layout, theano_kernels, warn).model


def to_channels_last(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, cl_perm(x.ndim))


def to_channels_first(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, np.argsort(cl_perm(x.ndim)))
