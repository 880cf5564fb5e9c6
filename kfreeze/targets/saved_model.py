"""optimized.pb -> a TensorFlow SavedModel (saved_model.pb + variables/) with a ``serving_default`` signature.

For TF Serving, ``tf.saved_model.load`` and ``saved_model_cli``, which take a SavedModel, not a GraphDef.
- The GraphDef is imported as it is (``tf.compat.v1.wrap_function`` + ``import_graph_def``) and pruned
  to optimized.pb's placeholders and outputs: the SavedModel computes exactly optimized.pb's graph, its
  constants included (there are no variables; ``variables/`` holds TF's empty checkpoint).
- ``serving_default`` takes keyword arguments named as optimized.pb's inputs (``image``) with their
  dtypes and shapes, and returns a dict keyed by its output names (``probs``).
- Same graph, same bytes: TF names a SavedModel's functions ``__inference_<name>_<N>`` from a
  process-wide counter (a ``kfreeze run`` traces the Keras model first, ``dvc repro`` does not), so the
  numbers are renumbered here in order of first use, and ``fingerprint.pb`` (whose ``uuid`` is random
  at every save) is rewritten from the renamed files with the uuid left empty.
"""

from __future__ import annotations

import re
from pathlib import Path

from kfreeze.errors import KfreezeError
from kfreeze.targets import Sibling

PB, FINGERPRINT = "saved_model.pb", "fingerprint.pb"
SIGNATURE_KEY = "serving_default"
_FUNCTION = re.compile(r"^(__inference_.*_)(\d+)$")


def _tensor(name: str) -> str:
    return name if ":" in name else f"{name}:0"


def _module(graph, inputs: list[str], outputs: list[str]):
    """A tf.Module whose ``serve`` runs ``graph`` from ``inputs`` to ``outputs`` (keyword in, dict out)."""
    from kfreeze.tfenv import tf

    wrapped = tf.compat.v1.wrap_function(lambda: tf.graph_util.import_graph_def(graph, name=""), [])
    tensor = wrapped.graph.get_tensor_by_name
    pruned = wrapped.prune([tensor(_tensor(i)) for i in inputs], {o: tensor(_tensor(o)) for o in outputs})
    specs = [tf.TensorSpec(tensor(_tensor(i)).shape, tensor(_tensor(i)).dtype, name=i) for i in inputs]

    def serve(*args):
        return pruned(*args)

    module = tf.Module()
    module.pruned = pruned  # tracked, so that the save keeps its function
    module.serve = tf.function(serve, input_signature=specs)
    return module


def _function_names(saved) -> dict[str, str]:
    """{TF's name: the name numbered 1, 2... in the order of the names without their numbers}.

    Sorted by (name without number, number): the functions have distinct base names (serve, pruned,
    _traced_save...), so the order, and the new numbers, do not depend on TF's counter."""
    found = {(m.group(1), int(m.group(2)), f.signature.name) for meta in saved.meta_graphs
             for f in meta.graph_def.library.function if (m := _FUNCTION.match(f.signature.name))}
    return {name: f"{base}{number}" for number, (base, _, name) in enumerate(sorted(found), 1)}


def _rename_strings(message, names: dict[str, str]) -> None:
    """Every string field and string map key of ``message`` equal to a key of ``names``, renamed (in place)."""
    from google.protobuf.descriptor import FieldDescriptor

    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                value[:] = [names.get(v, v) for v in value]
            elif value in names:
                setattr(message, field.name, names[value])
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                key_field, value_field = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
                items = list(value.items())
                if key_field.type == FieldDescriptor.TYPE_STRING and any(k in names for k, _ in items):
                    copies = []
                    for k, v in items:
                        if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                            copy = type(v)()
                            copy.CopyFrom(v)
                            copies.append((names.get(k, k), copy))
                        else:
                            copies.append((names.get(k, k), v))
                    value.clear()
                    for k, v in copies:
                        if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                            value[k].CopyFrom(v)
                        else:
                            value[k] = v
                if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    for v in value.values():
                        _rename_strings(v, names)
                elif value_field.type == FieldDescriptor.TYPE_STRING:
                    for k in list(value):
                        value[k] = names.get(value[k], value[k])
            elif field.is_repeated:
                for item in value:
                    _rename_strings(item, names)
            else:
                _rename_strings(value, names)


def _canonical(folder: Path) -> None:
    """saved_model.pb with its functions numbered from 1, and fingerprint.pb made from it without a uuid."""
    from tensorflow.core.protobuf import fingerprint_pb2, saved_model_pb2
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((folder / PB).read_bytes())
    _rename_strings(saved, _function_names(saved))
    for meta in saved.meta_graphs:  # the library in name order: the order of the renamed functions
        functions = sorted(meta.graph_def.library.function, key=lambda f: f.signature.name)
        del meta.graph_def.library.function[:]
        meta.graph_def.library.function.extend(functions)
    (folder / PB).write_bytes(saved.SerializeToString(deterministic=True))
    fingerprint = fingerprint_pb2.FingerprintDef()
    fingerprint.ParseFromString(fingerprinting.CreateFingerprintDef(str(folder)))
    fingerprint.ClearField("uuid")
    (folder / FINGERPRINT).write_bytes(fingerprint.SerializeToString(deterministic=True))


def convert(graph, inputs: list[str], outputs: list[str], where: str) -> Sibling:
    """``graph`` (optimized.pb) with placeholders ``inputs`` and fetches ``outputs`` as a SavedModel."""
    import tempfile

    from kfreeze.tfenv import tf

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "saved_model"
        try:
            module = _module(graph, inputs, outputs)
            tf.saved_model.save(module, str(folder), signatures={SIGNATURE_KEY: module.serve})
        except Exception as e:
            raise KfreezeError(where, f"TensorFlow cannot save the graph as a SavedModel: "
                               f"{' '.join(str(e).split())[:300]}", "leave saved_model out of targets") from None
        _canonical(folder)
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        signature = io_signature(folder, inputs, outputs)
    data = files.pop(PB)
    return Sibling(data, {"converter": f"tf.saved_model.save (TensorFlow {tf.__version__})",
                          "signature_key": SIGNATURE_KEY, "layout": "NHWC (as optimized.pb)",
                          "other_files": sorted(files),
                          "runtime": "tf.saved_model.load(folder).signatures['serving_default'](**inputs)",
                          **signature}, files)


def io_signature(folder: Path, inputs: list[str], outputs: list[str]) -> dict:
    """``serving_default``'s inputs and outputs as the SavedModel declares them (None = dynamic)."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import dtypes

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((Path(folder) / PB).read_bytes())
    signature = saved.meta_graphs[0].signature_def[SIGNATURE_KEY]

    def entries(tensors, order):
        return [{"name": key, "dtype": dtypes.as_dtype(tensors[key].dtype).name,
                 "shape": [None if d.size < 0 else int(d.size) for d in tensors[key].tensor_shape.dim]}
                for key in order]
    return {"inputs": entries(signature.inputs, inputs), "outputs": entries(signature.outputs, outputs)}


def op_count(data: bytes) -> int:
    """Nodes of the pruned graph (the function that computes optimized.pb), constants included."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(data)
    functions = [f for f in saved.meta_graphs[0].graph_def.library.function if "_pruned_" in f.signature.name]
    return max((len(f.node_def) for f in functions), default=0)


def run_folder(folder, feeds: dict, outputs: list[str], signature: dict) -> dict:
    """``tf.saved_model.load`` and its ``serving_default`` signature on ``feeds``."""
    import numpy as np

    from kfreeze.tfenv import tf

    serve = tf.saved_model.load(str(folder)).signatures[SIGNATURE_KEY]
    got = serve(**{name: tf.constant(value) for name, value in feeds.items()})
    return {o: np.asarray(got[o]) for o in outputs}


# The registry's interface (kfreeze/targets/registry.py).

def build(graph, inputs: list[str], outputs: list[str], where: str) -> Sibling:
    return convert(graph, inputs, outputs, where)


def usage(path, sig: dict, got: dict) -> list[str]:
    fed = ", ".join(f"{i['name']}=<{i['dtype']} {_shape(i['shape'])}>" for i in sig["inputs"])
    fetched = ", ".join(repr(o["name"]) for o in sig["outputs"])
    return [f"SavedModel (serve = tf.saved_model.load('{Path(path).parent}').signatures['serving_default']; "
            "inputs NHWC):",
            f"  serve({fed}) -> dict with keys {fetched}"]


def _shape(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
