"""Load Keras models safely and save them byte-for-byte reproducibly."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import zipfile
from pathlib import Path

from kfreeze import atomic
from kfreeze.errors import KfreezeError
from kfreeze.graphio import check_file
from kfreeze.tfenv import tf  # noqa: F401  (configures TF before Keras)

import keras  # noqa: E402

from kfreeze import tfop  # noqa: E402  (registers kfreeze>TFOp, which a converted tf.keras 2 model holds)

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def import_custom_objects(refs: list[str], where: str) -> dict:
    """'module.path:Name' -> {'Name': object}, importing from the project root.

    Only Keras objects (layers, models, losses, activations, initializers,
    regularizers, constraints, metrics) from a module of the project or an
    installed package other than the standard library. What a ref names is
    checked before it is imported where possible, so ``os:system`` or
    ``this:x`` are refused without importing anything.
    """
    import importlib
    import sys

    if refs and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    found = {}
    for ref in refs:
        module_name, _, attr = ref.partition(":")
        _check_module(module_name, ref, where)
        try:
            module = importlib.import_module(module_name)
        except Exception as e:  # the user's module: any error in it is theirs to fix
            raise KfreezeError(where, f"cannot import '{module_name}' for custom object '{ref}' "
                               f"({type(e).__name__}: {' '.join(str(e).split())[:160]})",
                               "give an importable module path relative to the project root") from None
        if not hasattr(module, attr):
            raise KfreezeError(where, f"module '{module_name}' has no '{attr}'", "check the name after the ':'")
        obj = getattr(module, attr)
        if not _is_keras_object(obj, module_name):
            raise KfreezeError(where, f"'{ref}' is not a Keras layer, model, loss, activation, initializer, "
                               "regularizer, constraint or metric", "custom_objects names only the Keras classes "
                               "and functions the model file refers to")
        found[attr] = obj
    return found


_KERAS_BASES = ()


def _keras_bases() -> tuple:
    global _KERAS_BASES
    if not _KERAS_BASES:
        _KERAS_BASES = (keras.layers.Layer, keras.losses.Loss, keras.initializers.Initializer,
                        keras.regularizers.Regularizer, keras.constraints.Constraint, keras.metrics.Metric)
    return _KERAS_BASES


def _in_project(module_name: str) -> bool:
    """A module file under the project root (the current directory): the user's own code."""
    base = Path.cwd().joinpath(*module_name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _check_module(module_name: str, ref: str, where: str) -> None:
    import importlib.util
    import sys

    top = module_name.split(".")[0]
    if _in_project(module_name):
        return
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        raise KfreezeError(where, f"'{ref}' is from the Python standard library, not a Keras object",
                           "custom_objects names Keras classes from your project or an installed package")
    try:
        spec = importlib.util.find_spec(top)  # the top-level name only: finding 'a.b' would import 'a'
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise KfreezeError(where, f"no module '{module_name}' for custom object '{ref}' in the project or installed",
                           "give a module path relative to the project root, e.g. models.mynet.layers:MyLayer")


def _is_keras_object(obj, module_name: str) -> bool:
    """A Keras base subclass; or a function (an activation, a loss) that is registered with Keras
    or defined in the project's own code."""
    import inspect

    if inspect.isclass(obj):
        return issubclass(obj, _keras_bases())
    if inspect.isfunction(obj):
        registered = keras.saving.get_registered_object(keras.saving.get_registered_name(obj))
        home = getattr(obj, "__module__", "") or module_name
        return registered is obj or home.split(".")[0] == "keras" or _in_project(home)
    return False


def load_options(spec) -> dict:
    """The ``load_model`` keyword arguments a model entry (or kfreeze run's flags) asks for."""
    return {"custom_objects": import_custom_objects(spec.custom_objects, spec.where("custom_objects")),
            "trust_code": spec.trust_code, "param": spec.at}


def load_model(path: str | Path, custom_objects: dict | None = None, trust_code: bool = False,
               param=None) -> keras.Model:
    """Load a ``.keras`` or full-model ``.h5``.

    Keras safe mode stays on unless the user sets ``trust_code``: a Lambda layer
    carries Python code that loading would run. ``param`` (the entry's ``params.Origin``) says how
    a message's fix sets a key: a params file's key or a ``kfreeze run`` flag.
    """
    path = check_file(path, "model file")
    kind = file_kind(path)
    if kind == "zip":
        _check_archive(path)
    else:
        from kfreeze import h5check
        h5check.check_structure(path)
        _check_h5_sizes(path, custom_objects, trust_code, param)
    from kfreeze import sources
    if kind == "zip" and sources.keras2_archive(path):  # tf.keras 2.13-2.15: tf_keras reads it
        from kfreeze import legacy
        try:
            with _bounded(path):
                return legacy.convert_archive(path, trust_code, custom_objects, param=param).model
        except OUT_OF_MEMORY:
            raise _too_big(path) from None
    import warnings
    try:
        with _bounded(path), named_for_keras(path, kind) as named, tfop.trusting(trust_code), \
                shared_layer_nodes(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = keras.models.load_model(named, compile=False, safe_mode=not trust_code,
                                            custom_objects=custom_objects or None)
    except OUT_OF_MEMORY:
        raise _too_big(path) from None
    except Exception as e:  # Keras raises many types; all mean "cannot load this file"
        raise _load_error(path, e, param) from None
    # Keras warns, and returns the model without its weights, when a subclassed model's recorded shape
    # cannot build it (call(self, x, y): Keras records x's shape only). as_functional builds it by
    # calling it; its weights are then read again, strictly.
    unbuilt = [w for w in caught if "cannot be built automatically" in str(w.message)]
    for w in caught:
        if w not in unbuilt:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not isinstance(model, keras.Model):
        raise KfreezeError(path, f"holds a {type(model).__name__}, not a Keras model", "save a keras.Model")
    inner = model
    if not getattr(model, "inputs", None) or not getattr(model, "outputs", None):
        model = as_functional(model, path)
    if unbuilt:
        _reload_weights(inner, path, kind)
    return model


def _reload_weights(model: keras.Model, path: Path, kind: str) -> None:
    """The weights of a model Keras could not build while loading, once it is built; every variable
    must match the file, or the model is refused (a model built on a wrong guess of its shapes)."""
    try:
        with named_for_keras(path, kind) as named:
            model.load_weights(named)
    except Exception as e:  # Keras raises many types; all mean "these weights do not fit"
        reason = " ".join(str(e).split())[:200]
        raise KfreezeError(path, f"subclassed model '{model.name}' ({type(model).__name__}): Keras could not "
                           f"rebuild it from the shapes it recorded, and built on kfreeze's guess its weights do "
                           f"not fit ({type(e).__name__}: {reason})", "save a Functional model that calls it: "
                           "keras.Model([x, y], model(x, y)) with keras.Input for each argument") from None


@contextlib.contextmanager
def shared_layer_nodes():
    """Keras 3 reads a node reference in a Functional config by the wrong count when the layer was
    called before this model's nodes are rebuilt: a submodel called twice here and once inside another
    submodel (keras2onnx's test_recursive_and_shared_model). ``get_config`` numbers a layer's calls
    among those of this model only (``serialize_node`` skips the others: a submodel's own node, the
    calls inside a nested model); ``from_config`` indexes all of them, so ``["sub", 0, 0]`` read the
    submodel's own output and the model computed something else (0.18 off) or did not reload
    ("Output with path `` is not connected to `inputs`").

    Here the references are read as written: the calls a layer already had when this model's nodes
    start to be rebuilt (everything nested models made; an InputLayer's own node is this model's) are
    skipped, in the nodes' arguments and in the model's inputs and outputs. Keras' module functions
    are swapped for the load only.
    """
    from keras.src.models import functional

    original_node, original_model = functional.deserialize_node, functional.functional_from_config
    frames: list[dict] = []  # one per functional_from_config in progress: layer name -> calls to skip

    def skipped(created_layers) -> dict:
        frame = frames[-1] if frames else {}
        if "starts" not in frame:  # the first node of this model: every layer exists, none called here yet
            frame["starts"] = {name: 0 if isinstance(layer, keras.layers.InputLayer) else len(layer._inbound_nodes)
                               for name, layer in created_layers.items()}
        return frame["starts"]

    class _Calls:  # a layer as deserialize_node sees it: only the calls this model made
        def __init__(self, layer, start):
            self.layer, self.start = layer, start

        @property
        def _inbound_nodes(self):
            return self.layer._inbound_nodes[self.start:]

        def __repr__(self):
            return repr(self.layer)

    def deserialize_node(node_data, created_layers):
        for name, layer in created_layers.items():
            # The file's name for the layer: Keras leaves 'name' out of the config of a custom layer whose
            # __init__ takes **kw (not **kwargs), and makes it under its class's default name.
            if layer.name != name:
                layer.name = name
        starts = skipped(created_layers)
        return original_node(node_data, {name: _Calls(layer, starts.get(name, 0))
                                         for name, layer in created_layers.items()})

    class _Ref(list):
        """An [layer, node, tensor] reference whose node is shifted when Keras reads it (after the
        nodes are rebuilt, when the calls to skip are known)."""

        def __iter__(self):
            name, node, tensor = list.__iter__(self)
            starts = frames[-1].get("starts", {}) if frames else {}
            return iter((name, node + starts.get(name, 0), tensor))

    def refs(value):
        if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
            return _Ref(value)
        if isinstance(value, dict):
            return {k: refs(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(refs(v) for v in value)
        return value

    def functional_from_config(cls, config, custom_objects=None):
        config = {**config, **{k: refs(config[k]) for k in ("input_layers", "output_layers") if k in config}}
        frames.append({})
        try:
            return original_model(cls, config, custom_objects)
        finally:
            frames.pop()

    functional.deserialize_node, functional.functional_from_config = deserialize_node, functional_from_config
    try:
        yield
    finally:
        functional.deserialize_node, functional.functional_from_config = original_node, original_model


# Building a model allocates every weight before one is read: a layer config can ask for far more
# than its file holds. A model in memory takes about its file's size, a few times over while it
# loads; past this bound the file is lying about what it is.
LOAD_FACTOR, LOAD_BASE = 8, 2 * 2**30
OUT_OF_MEMORY = (MemoryError, tf.errors.ResourceExhaustedError)


def _bounded(path: Path):
    from kfreeze import child
    return child.bounded_memory(LOAD_BASE + LOAD_FACTOR * path.stat().st_size)


@contextlib.contextmanager
def bounded_load(source: Path, arch: Path | None = None):
    """``_bounded`` for a loader that builds from a config (the legacy Keras 1/2 readers): a
    MemoryError or an OOM inside becomes the one-line refusal."""
    from kfreeze import child
    size = sum(p.stat().st_size for p in (source, arch) if p is not None and p.is_file())
    try:
        with child.bounded_memory(LOAD_BASE + LOAD_FACTOR * size):
            yield
    except OUT_OF_MEMORY:
        raise _too_big(source, size) from None


def _too_big(path: Path, size: int | None = None) -> KfreezeError:
    size = path.stat().st_size if size is None else size
    held = f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size:,} bytes"
    return KfreezeError(path, f"building the model asks for more than {(LOAD_BASE + LOAD_FACTOR * size) / 2**30:.1f} GiB, "
                        f"far more than its {held} file holds (a layer config with huge sizes?)",
                        "check the file; if it is right, set KFREEZE_MEMORY_LIMIT_GB to the memory it needs")


def file_kind(path: Path) -> str:
    """'zip' (a .keras archive) or 'hdf5', by the file's magic bytes (``kfreeze.sources``), whatever its
    suffix; a file with neither magic goes by its suffix, so a damaged .h5 gets the HDF5 checks' message."""
    from kfreeze import sources

    found = sources.kind(path)
    if found in sources.KERAS_KINDS:
        return found
    by_suffix = {".keras": "zip", ".h5": "hdf5", ".hdf5": "hdf5"}.get(path.suffix.lower())
    if by_suffix is None:
        fix = ("a graph belongs under 'graphs:' as graph: (kfreeze add NAME FILE puts it there)"
               if found in sources.GRAPH_KINDS or found == "savedmodel" else
               "give a .keras or full-model .h5 file as 'source'")
        raise KfreezeError(path, f"'{path.suffix}' is not a Keras model file ({sources.describe(found)}, "
                           "judged by its bytes)", fix)
    return by_suffix


@contextlib.contextmanager
def named_for_keras(path: Path, kind: str):
    """``path``, or a link to it whose suffix tells Keras' loader the format (it goes by the name:
    an HDF5 model named ``net.model`` is read through ``<tmp>/net.h5``).

    A .keras archive is always read through a link in a private temp folder, with its weights file
    extracted there (``weights_on_disk``), never into the model's own folder."""
    wanted = (".keras",) if kind == "zip" else (".h5", ".hdf5")
    if path.suffix.lower() in wanted and kind != "zip":
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="kfreeze-load-") as tmp, weights_on_disk(kind):
        link = Path(tmp) / f"model{wanted[0]}"
        link.symlink_to(Path(path).resolve())
        yield link


@contextlib.contextmanager
def weights_on_disk(kind: str):
    """Keras 3 reads a .keras archive's weights file into memory whole when it judges there is room,
    then copies each weight out of it: a 494 MB model peaked 2.1 GiB over its imports. Told there is no
    room, it extracts the file beside the archive (the link's temp folder) and reads it from there:
    1.6 GiB, the variables plus one weight in transit."""
    if kind != "zip":
        yield
        return
    from keras.src.saving import saving_lib
    saved = saving_lib.is_memory_sufficient
    saving_lib.is_memory_sufficient = lambda model: False
    try:
        yield
    finally:
        saving_lib.is_memory_sufficient = saved


def _check_h5_sizes(path: Path, custom_objects: dict | None, trust_code: bool, param: str) -> None:
    """Compare the .h5's declared dataset sizes with the architecture in its model_config, before
    load_model reads a value. The architecture is built as Keras' legacy .h5 loader builds it (the
    same calls and scopes; building reads no weights); a file it cannot build fails here as it would there.
    """
    import h5py
    from keras.src.legacy.saving import json_utils, saving_options, saving_utils
    from keras.src.saving import object_registration, serialization_lib

    from kfreeze import h5check

    with h5py.File(path, "r") as f:
        config = f.attrs.get("model_config")
    if config is None:
        return  # load_model refuses it ("No model config found") before reading any weights
    try:
        config = json_utils.decode(config.decode("utf8") if isinstance(config, bytes) else config)
        custom_objects = {**(custom_objects or {}), **object_registration.GLOBAL_CUSTOM_OBJECTS}
        with saving_options.keras_option_scope(use_legacy_config=True), \
                serialization_lib.SafeModeScope(not trust_code), _bounded(path):
            model = saving_utils.model_from_config(config, custom_objects=custom_objects)
    except OUT_OF_MEMORY:
        raise _too_big(path) from None
    except Exception as e:  # Keras raises many types; all mean "cannot load this file"
        raise _load_error(path, e, param) from None
    h5check.check_weights(path, {layer.name: [tuple(w.shape) for w in layer.weights] for layer in model.layers})


def as_functional(model: keras.Model, where) -> keras.Model:
    """A subclassed model as a Functional model that calls it, so it has inputs and outputs.

    Keras records the shapes a subclassed model was first called with
    (``get_build_config``); that is all a trace needs. The inputs are float32,
    named after ``call``'s first argument.

    ``call(self, x, y)`` called as ``model(x, y)``: Keras records the shape of the first argument only
    (``Model.build`` takes one), or, when a ``build`` takes them all, a ``shapes_dict`` keyed
    ``<argument>_shape``. Each argument becomes an input named after it; one whose shape Keras did not
    record is guessed to be the first's. Keras could not build such a model while loading and left its
    weights out; ``load_model`` reads them again once it is built, and every variable must fit, so a
    wrong guess that reaches a weight is refused, not frozen with other weights.
    """
    import inspect

    config = (model.get_build_config() or {}) if model.built else {}
    shape = config.get("input_shape")
    shapes_dict = config.get("shapes_dict")
    if shape is None and not shapes_dict:
        raise KfreezeError(where, f"subclassed model '{model.name}' ({type(model).__name__}) was saved before it "
                           "was called, so its input shape is unknown",
                           "call the model once on a batch of data before model.save()")
    params = [p for p in inspect.signature(model.call).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    base = params[0].name if params else "input"

    def is_shape(s):
        return isinstance(s, (list, tuple)) and all(d is None or isinstance(d, int) for d in s)

    def batch_free(s):  # the first call's batch size is no property of the model
        return (None, *s[1:]) if s else tuple(s)

    required = [p for p in params if p.default is p.empty and p.name not in ("training", "mask")]
    if shapes_dict or (len(required) > 1 and is_shape(shape)):
        recorded = {k[:-len("_shape")] if k.endswith("_shape") else k: v for k, v in (shapes_dict or {}).items()}
        if shape is not None:
            recorded.setdefault(required[0].name, shape)
        first = next((recorded[p.name] for p in required if is_shape(recorded.get(p.name))), None)
        if first is None or any(p.name in recorded and not is_shape(recorded[p.name]) for p in required):
            raise KfreezeError(where, f"subclassed model '{model.name}' has input shapes kfreeze cannot read "
                               f"({config!r})", "wrap it in a Functional model: keras.Model(inputs, "
                               "model(inputs)), and save that")
        inputs = [keras.Input(batch_shape=batch_free(recorded[p.name] if p.name in recorded else first),
                              name=p.name) for p in required]
        call, shape = (lambda: model(*inputs)), {p.name: recorded.get(p.name) for p in required}
    elif isinstance(shape, dict):
        inputs = {k: keras.Input(batch_shape=batch_free(v), name=k) for k, v in sorted(shape.items())}
        call = lambda: model(inputs)  # noqa: E731
    elif is_shape(shape):
        inputs = keras.Input(batch_shape=batch_free(shape), name=base)
        call = lambda: model(inputs)  # noqa: E731
    elif isinstance(shape, (list, tuple)) and all(is_shape(s) for s in shape):
        inputs = [keras.Input(batch_shape=batch_free(s), name=f"{base}_{i}") for i, s in enumerate(shape)]
        call = lambda: model(inputs)  # noqa: E731
    else:
        raise KfreezeError(where, f"subclassed model '{model.name}' has input shapes kfreeze cannot read ({shape!r})",
                           "wrap it in a Functional model: keras.Model(inputs, model(inputs)), and save that")
    try:
        outputs = call()
    except Exception as e:  # the user's call(): any error means it cannot be traced
        reason = " ".join(str(e).split("Arguments received")[0].split())[:200]
        raise KfreezeError(where, f"subclassed model '{model.name}' ({type(model).__name__}) cannot be called on "
                           f"symbolic inputs of shape {shape} ({type(e).__name__}: {reason})",
                           "write call() with keras.ops or TensorFlow ops only (no .numpy(), no Python "
                           "branches on values), or save a Functional model") from None
    return keras.Model(inputs, outputs, name=model.name)


def _check_archive(path: Path) -> None:
    """Every member's CRC, before h5py reads the weights inside: damaged bytes are caught here."""
    if not zipfile.is_zipfile(path):
        raise KfreezeError(path, "not a .keras archive (not a zip file)", "re-save the model with model.save()")
    try:
        with zipfile.ZipFile(path) as archive:
            _check_sizes(path, archive)
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as e:
        raise KfreezeError(path, f"damaged .keras archive ({e})", "re-save the model with model.save()") from None
    if bad is not None:
        raise KfreezeError(path, f"damaged .keras archive ('{bad}' fails its checksum)",
                           "re-save the model with model.save()")


ARCHIVE_RATIO = 200            # uncompressed / file size: weights barely compress, a bomb compresses ~1000x
ARCHIVE_SLACK = 64 * 2**20
# config.json and metadata.json are text that json.loads reads whole: a big model's config is a
# few MB. Without their own bound, incompressible padding elsewhere in the file raised the ratio's
# allowance, and a 3.5 GiB config.json passed.
TEXT_MEMBER_LIMIT = 64 * 2**20


def _check_sizes(path: Path, archive: zipfile.ZipFile) -> None:
    """Refuse a zip bomb from the sizes the archive declares, before anything is extracted.

    zipfile never extracts more than a member's declared size, so the declared
    total bounds what loading can allocate.
    """
    for info in archive.infolist():
        if info.filename.endswith(".json") and info.file_size > TEXT_MEMBER_LIMIT:
            raise KfreezeError(path, f"'{info.filename}' unpacks to {info.file_size / 2**20:.0f} MiB, over the "
                               f"{TEXT_MEMBER_LIMIT / 2**20:.0f} MiB a model's description takes (a zip bomb?)",
                               "re-save the model with model.save() from a copy you trust")
    declared = sum(info.file_size for info in archive.infolist())
    size = path.stat().st_size
    from kfreeze.resources import available_memory
    limit = min(ARCHIVE_RATIO * size + ARCHIVE_SLACK, available_memory() // 2)
    if declared > limit:
        raise KfreezeError(path, f"the archive unpacks to {declared / 2**20:.0f} MiB from {size / 2**20:.1f} MiB, "
                           f"over the {limit / 2**20:.0f} MiB kfreeze allows (a zip bomb?)",
                           "re-save the model with model.save() from a copy you trust")


def _setting(param, key: str, value: str) -> str:
    """The fix that sets ``key`` (``param``: a ``params.Origin``; None: say it plainly)."""
    return param.setting(key, value) if param is not None else f"set {key}: {value} for this model"


def _load_error(path: Path, error: Exception, param) -> KfreezeError:
    import re

    chain, inner = [], error
    while inner is not None and all(inner is not c for c in chain):  # Keras wraps the cause, often twice
        if isinstance(inner, KfreezeError):  # kfreeze's own refusal inside Keras' wrapping
            return inner
        chain.append(inner)
        inner = inner.__cause__ or inner.__context__
    text = " ".join(" ".join(str(e).split()) for e in chain)
    if "safe_mode" in text or "unsafe" in text.lower():
        kind = next((k for k in ("TFSMLayer", "Lambda") if k in text), "code-carrying")
        what = "loads and runs a SavedModel" if kind == "TFSMLayer" else "carries Python code"
        return KfreezeError(path, f"refused for safety: the model has a {kind} layer, which {what} that "
                            "Keras' safe mode does not run",
                            f"if you trust this file, {_setting(param, 'trust_code', 'true')}")
    if "scipy" in text.lower() and ("No module" in text or "install" in text.lower()):
        return KfreezeError(path, f"a layer of the model needs scipy, which is not installed ({text[:160]})",
                            "pip install scipy in kfreeze's environment")
    missing = re.search(r"Could not locate (?:class|function) '([^']+)'|Unknown (?:layer|object): '?([\w.>]+)", text)
    if missing:
        name = missing.group(1) or missing.group(2)
        return KfreezeError(path, f"the model uses '{name}', a custom class that is not registered",
                            _setting(param, "custom_objects", f"[your.module:{name.split('>')[-1]}]"))
    # The layer: the innermost one Keras names ("Error when deserializing class 'RandomShear' using
    # config={'name': 'random_shear', ..."), and the cause: the innermost exception, not Keras' wrapping.
    found = re.findall(r"deserializing class '(\w+)' using config=\{'name': '([^']+)'", text)
    if found:
        named = f" (layer '{found[-1][1]}', {found[-1][0]})"
    else:
        layer = re.search(r"layer '([^']+)'|<(\w+) name=([^,>]+)|class '([^']+)'", text)
        named = f" (at {next(g for g in layer.groups() if g)})" if layer else ""
    cause = chain[-1]
    reason = " ".join(str(cause).split("Exception encountered")[0].split())
    return KfreezeError(path, f"Keras cannot load this model{named}: {type(cause).__name__}: "
                        f"{reason[:300] or 'no message'}", "the reason above is Keras' own; if the file is complete, "
                        "that layer may need custom_objects or the Keras version that saved it")


def input_structure(model):
    """The model's inputs as its call expects them: one tensor, a list or a dict.

    A Sequential model reloaded from a file has ``inputs`` but no ``input``
    ("has never been called"), so fall back to the flat list.
    """
    try:
        return model.input
    except (AttributeError, ValueError):
        inputs = list(model.inputs)
        return inputs[0] if len(inputs) == 1 else inputs


def output_structure(model):
    """The model's outputs: ``output``, or the flat ``outputs`` of a Sequential model (see input_structure)."""
    try:
        return model.output
    except (AttributeError, ValueError):
        outputs = list(model.outputs)
        return outputs[0] if len(outputs) == 1 else outputs


def canonical_bytes(model: keras.Model) -> bytes:
    """A ``.keras`` archive whose bytes depend only on the model.

    Keras stamps ``metadata.json`` with the save date and the weights entry with
    the current time; both are reset here so an unchanged model gives unchanged
    bytes and DVC skips everything downstream.
    """
    out = io.BytesIO()
    _write_canonical(model, out)
    return out.getvalue()


def _write_canonical(model: keras.Model, file) -> None:
    """``canonical_bytes`` into ``file``, the weights streamed entry by entry (VGG16: 553 MB
    that were held three times over as bytes)."""
    import shutil

    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "model.keras")
        with zipfile.ZipFile(Path(tmp) / "model.keras") as src, zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED) as dst:
            for name in sorted(src.namelist()):
                info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                if name not in ("metadata.json", "config.json"):
                    info.file_size = src.getinfo(name).file_size  # as writestr sets it: the same zip64 choice
                    with src.open(name) as r, dst.open(info, "w") as w:
                        shutil.copyfileobj(r, w, 1 << 20)
                    continue
                data = src.read(name)
                if name == "metadata.json":
                    meta = json.loads(data)
                    meta.pop("date_saved", None)
                    data = json.dumps(meta, sort_keys=True).encode()
                else:
                    data = _renumber_shared_objects(data)
                dst.writestr(info, data)


def config_dicts(item):
    """Every mapping in a nested Keras config (mappings and lists), each before the ones inside it."""
    if isinstance(item, dict):
        yield item
        for value in item.values():
            yield from config_dicts(value)
    elif isinstance(item, list):
        for value in item:
            yield from config_dicts(value)


def _renumber_shared_objects(data: bytes) -> bytes:
    """Keras writes ``shared_object_id`` as Python ``id()`` of an object that several layers
    share (Bidirectional's initializers): a memory address, new in every process. Numbered
    in order of appearance they match the same objects and repeat exactly."""
    config = json.loads(data)
    numbers: dict = {}
    for node in config_dicts(config):
        if "shared_object_id" in node:
            node["shared_object_id"] = numbers.setdefault(node["shared_object_id"], len(numbers) + 1)
    if not numbers:
        return data
    return json.dumps(config).encode()


def save_canonical(model: keras.Model, path: str | Path) -> None:
    with atomic.writing(path) as f:
        _write_canonical(model, f)
