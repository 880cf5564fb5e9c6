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
    """True for JSON + weights, for .h5 files not written by Keras 3 (which keras_io loads as before),
    and for ``.keras`` archives written by tf.keras 2.13-2.15 or tf_keras (``sources.keras2_archive``)."""
    if arch is not None:
        return True
    from kfreeze import sources

    path = Path(source)
    if sources.keras2_archive(path):
        return True
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


def theano_decision(src: files.SourceFile, setting: bool | None, model=None,
                    fix: str = "set theano_kernels: false") -> tuple[bool, str | None]:
    """(flip the convolution kernels?, the one-line notice when kfreeze decided it), for ``theano_kernels``
    set to ``setting``: true/false is the user's word; null is ``theano_evidence``. ``fix``: how the
    user sets it (the entry's key or kfreeze run's flag: ``ModelSpec.setting``)."""
    if setting is not None:
        return bool(setting), None
    evidence = theano_evidence(src)
    if evidence is None:
        return False, None
    convs = [layer.name for layer in (model.layers if model is not None else [])
             if type(layer).__name__ in keras3.THEANO_KERNELS]
    notice = (f"{src.weights}: weights saved by Theano ({evidence}); flipping the kernels of {len(convs)} "
              f"convolution layer(s) as Theano convolved; {fix} if they were not trained with Theano") \
        if convs else None
    return True, notice


def uses_theano_kernels(source, arch=None, setting: bool | None = None) -> bool:
    """What ``convert`` decided for this source (verify's reference flips the same way)."""
    if setting is not None or _keras3_arch_config(arch) or (arch is None and _is_archive(source)):
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
    if arch is None and _is_archive(source):
        return _archive_model(Path(source), layout, trust_code=False, plan_only=True)[2]
    return _source_model(source, arch, layout)[3]


def _is_archive(source) -> bool:
    from kfreeze import sources
    return sources.keras2_archive(Path(source))


def check_archive_ops(path: Path, trust_code: bool) -> None:
    """The TF functions a Keras 2 archive's TFOpLambda layers name, checked before tf_keras builds any."""
    import zipfile

    from kfreeze import tfop
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    files.reject_file_references(config, path)
    for layer in files.walk_layers(config):
        if isinstance(layer, dict) and layer.get("class_name") in tfop.TF_OP_CLASSES:
            tfop.tf_function((layer.get("config") or {}).get("function"), path, trust_code)


def archive_tf_keras_model(path: Path, trust_code: bool = False, custom_objects: dict | None = None, param=None):
    """The archive as tf_keras itself loads it (safe mode on unless trust_code): the converter's source
    and verify's independent reference."""
    from kfreeze import keras_io
    from kfreeze.legacy.source import tf_keras

    check_archive_ops(path, trust_code)
    try:
        with keras_io.named_for_keras(path, "zip") as named:
            return tf_keras.models.load_model(str(named), compile=False, safe_mode=not trust_code,
                                              custom_objects=custom_objects or None)
    except KfreezeError:
        raise
    except keras_io.OUT_OF_MEMORY:
        raise
    except Exception as e:  # tf_keras raises many types; all mean "cannot load this file"
        raise keras_io._load_error(path, e, param) from None


def _archive_model(path: Path, layout: str | None, trust_code: bool, plan_only: bool = False,
                   custom_objects: dict | None = None, param=None):
    """(tf_keras model, its config, the layout plan) of a Keras 2 ``.keras`` archive."""
    model = archive_tf_keras_model(path, trust_code, custom_objects, param)
    config = {"class_name": "Sequential" if type(model).__name__ == "Sequential" else "Functional",
              "config": model.get_config()}
    stated = files.explicit_layout(files.SourceFile(path, config, "2", None), path)
    if layout and stated and layout != stated:
        raise KfreezeError(path, f"layout is set to {layout} but the file's layers say {stated}",
                           "remove 'layout' or correct it")
    return model, config, layout_lib.analyse(model, config, path)


def archive_custom_classes(path: Path) -> list[str]:
    """The custom classes a Keras 2 ``.keras`` archive's config.json names (``registered_name``
    'package>Class', no Keras module), in order."""
    import json
    import zipfile

    from kfreeze import keras_io
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    found: list[str] = []
    for item in keras_io.config_dicts(config):
        registered, module = item.get("registered_name"), item.get("module")
        if isinstance(registered, str) and ">" in registered and not module and registered not in found:
            found.append(registered)
    return found


def convert_archive(path: Path, trust_code: bool = False, custom_objects: dict | None = None,
                    layout: str | None = None, param=None) -> Converted:
    """A tf.keras 2.13-2.15 (or tf_keras) ``.keras`` archive as a Keras 3 model: loaded by tf_keras, then
    rebuilt as the .h5 sources are (TFOpLambda layers become ``kfreeze.tfop.TFOp``).

    A custom class is refused up front: tf_keras loads it only as a tf_keras class, and the Keras 3
    rebuild needs it as a Keras 3 class; one ``custom_objects`` entry cannot be both. A SavedModel
    the user exports from tf.keras carries the computation without the class, and kfreeze takes it."""
    from kfreeze import tfop

    custom = archive_custom_classes(Path(path))
    if custom:
        raise KfreezeError(path, f"a tf.keras 2 .keras file with the custom class '{custom[0].split('>')[-1]}' "
                           "(kfreeze rebuilds tf.keras 2 models in Keras 3, which needs the class in Keras 3)",
                           "in tf.keras, save the model as a SavedModel (model.export(folder) or "
                           "tf.saved_model.save) and give kfreeze that folder; or port the class to Keras 3 and "
                           "save the model with Keras 3")
    model, config, plan = _archive_model(Path(path), layout, trust_code, custom_objects=custom_objects,
                                         param=param)
    keras3.check_activations(config, path)
    with tfop.trusting(trust_code):
        converted = keras3.build(keras3.keras3_config(config, plan, path, model, trust_code), path)
    keras3.copy_weights(model, converted, plan, False, path)
    return Converted(converted, plan)


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
                   warn=None, theano_fix: str = "set theano_kernels: false") -> Converted:
    """``theano_kernels`` null: flip when the file's weights are Theano's (``theano_evidence``), saying so
    in one line through ``warn`` (stderr by default)."""
    if (native := _keras3_arch(source, arch)) is not None:
        return Converted(native, _unchanged(native))
    src, model, config, plan = _source_model(source, arch, layout)
    keras3.check_activations(config, arch or source)
    flip, notice = theano_decision(src, theano_kernels, model, theano_fix)
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
                theano_kernels: bool | None = None, warn=None, theano_fix: str = "set theano_kernels: false"):
    """The Keras 3, channels_last model of a legacy source, with the source's layer, input and output names."""
    from kfreeze import keras_io
    with keras_io.bounded_load(Path(source), arch and Path(arch)):
        if arch is None and _is_archive(source):
            return convert_archive(Path(source), layout=layout).model
        return convert_source(source, arch, layout, theano_kernels, warn, theano_fix).model


def to_channels_last(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, cl_perm(x.ndim))


def to_channels_first(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, np.argsort(cl_perm(x.ndim)))
