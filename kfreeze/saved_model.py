"""A TF2 SavedModel folder (``tf.saved_model.save``, Keras 3 ``model.export``) -> a frozen GraphDef.

One signature (``serving_default`` unless params ``signature`` names another) becomes the graph:
its variables frozen with TensorFlow's own ``convert_variables_to_constants_v2``, its inputs and
outputs named after the signature's keys (``img``, ``output_0``...). Before anything is loaded, the
op policy (``kfreeze.policy``) walks the signature's functions and the SavedModel's init op, and the
variables' size is checked against protobuf's 2 GiB limit for one GraphDef.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kfreeze import policy
from kfreeze.errors import KfreezeError
from kfreeze.graphio import PROTOBUF_LIMIT
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

DEFAULT_SIGNATURE = "serving_default"
INIT_OP = "__saved_model_init_op"


@dataclass
class Frozen:
    graph: graph_pb2.GraphDef
    inputs: list[str]   # the signature's input keys, sorted: the graph's placeholders
    outputs: list[str]  # its output keys, sorted: the nodes computing them
    converted: int      # variables turned into constants
    renamed: dict[str, str] = field(default_factory=dict)  # a node's own name -> the key it is named after


def read_meta_graph(folder: Path) -> meta_graph_pb2.MetaGraphDef:
    """The 'serve' MetaGraphDef of ``folder``/saved_model.pb(txt), read without running anything."""
    from google.protobuf import message, text_format

    folder = Path(folder)
    binary, text = folder / "saved_model.pb", folder / "saved_model.pbtxt"
    proto = saved_model_pb2.SavedModel()
    try:
        if binary.is_file():
            proto.ParseFromString(binary.read_bytes())
        else:
            text_format.Parse(text.read_text(), proto)
    except (message.DecodeError, text_format.ParseError, UnicodeDecodeError, ValueError) as e:
        raise KfreezeError(binary if binary.is_file() else text, f"not a SavedModel ({' '.join(str(e).split())[:160]})",
                           "the file is damaged; export the model again") from None
    if not proto.meta_graphs:
        raise KfreezeError(folder, "the SavedModel holds no MetaGraph", "export the model again")
    serve = [m for m in proto.meta_graphs if "serve" in m.meta_info_def.tags]
    return (serve or list(proto.meta_graphs))[0]


def signature_key(meta: meta_graph_pb2.MetaGraphDef, wanted: str | None, folder, where: str) -> str:
    key = wanted or DEFAULT_SIGNATURE
    keys = sorted(k for k in meta.signature_def if k != INIT_OP)
    if key not in meta.signature_def or key == INIT_OP:
        raise KfreezeError(where, f"{folder} has no signature '{key}' (it has {', '.join(keys) or 'none'})",
                           f"name one of them as the signature{'' if keys else ', or export the model with one'}")
    return key


def check(folder: Path, key: str, where: str, param: str, trust_code: bool,
          cut: tuple[str, ...] | list[str] = ()) -> meta_graph_pb2.MetaGraphDef:
    """The op policy on what loading and calling the signature runs, and the size limit: before any load.

    ``cut``: the inputs the graph is cut at (params ``inputs``), fed instead of computed: what is upstream
    (a TF1 signature's tf.Example parsing) is frozen but never run, as verify then feeds frozen.pb at the cut.
    """
    meta = read_meta_graph(folder)
    signature = meta.signature_def[key]
    outputs = [t.name for t in signature.outputs.values()]
    fed = [t.name for t in signature.inputs.values()] + [c if ":" in c else f"{c}:0" for c in cut]
    policy.check(meta.graph_def, outputs, fed, str(folder), param, trust_code, variables=False)
    if INIT_OP in meta.signature_def:  # run by tf.saved_model.load, whatever the cut
        init = [t.name for t in meta.signature_def[INIT_OP].outputs.values()]
        policy.check(meta.graph_def, init, (), str(folder), param, trust_code, variables=False)
    size = sum(f.stat().st_size for f in (Path(folder) / "variables").glob("variables.data-*"))
    if size > PROTOBUF_LIMIT:
        raise KfreezeError(where, f"the frozen graph would hold {size / 2**30:.2f} GiB of constants, over protobuf's "
                           "2 GiB limit for one GraphDef", "freeze a smaller model; a SavedModel has no such limit, "
                           "so serve this one as it is")
    return meta


def load_signature(folder: Path, key: str):
    """The signature's concrete function (``tf.saved_model.load``, after ``check``), and the loaded object
    (which must stay alive while the function is used)."""
    try:
        loaded = tf.saved_model.load(str(folder))
    except (tf.errors.OpError, ValueError, OSError) as e:
        from kfreeze.freeze import tf_reason
        raise KfreezeError(folder, f"TensorFlow cannot load the SavedModel ({tf_reason(e)})",
                           "the folder is damaged or incomplete (variables/ missing?); export the model again"
                           ) from None
    return loaded, loaded.signatures[key]


def freeze(folder: Path, key: str) -> Frozen:
    """The signature as a frozen GraphDef with placeholders and outputs named after its keys."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from kfreeze import graphio

    loaded, fn = load_signature(folder, key)
    inputs = sorted(fn.structured_input_signature[1])
    outputs = sorted(fn.structured_outputs)
    # A TF1 SavedModel's reference variables stay VariableV2 ops inside the function, not captured.
    variables = len(fn.graph.variables) + sum(n.op in ("VariableV2", "Variable") for n in fn.graph.as_graph_def().node)
    frozen_fn = convert_variables_to_constants_v2(fn)
    graph = frozen_fn.graph.as_graph_def()
    # convert_variables_to_constants_v2 keeps the input order of the signature (its keys, sorted)
    placeholders = [t.name.split(":")[0] for t in frozen_fn.inputs]
    out_tensors = [t.name for t in frozen_fn.outputs]  # flatten(structured_outputs): sorted keys
    # named after their keys already (the usual case), else in the keys' order
    mapping = {} if sorted(placeholders) == inputs else dict(zip(placeholders, inputs))
    producers = {}
    for key_name, tensor in zip(outputs, out_tensors):
        node, _, port = tensor.partition(":")
        if port == "0" and node not in producers and node not in placeholders:
            producers[node] = key_name
    graph = _renamed(graph, {**mapping, **producers})
    extra = [(k, t) for k, t in zip(outputs, out_tensors) if t.split(":")[0] not in producers]
    for key_name, tensor in extra:  # an output on another port, or shared: an Identity named after its key
        node = graph.node.add(name=key_name, op="Identity", input=[_renamed_tensor(tensor, {**mapping, **producers})])
        node.attr["T"].type = next(t.dtype for t in frozen_fn.outputs if t.name == tensor).as_datatype_enum
    for node in graph.node:
        node.ClearField("device")
    del loaded
    return Frozen(graphio.canonical_order(graph), inputs, outputs, variables,
                  {k: v for k, v in {**mapping, **producers}.items() if k != v})


def _renamed_tensor(tensor: str, mapping: dict[str, str]) -> str:
    node, sep, port = tensor.partition(":")
    return mapping.get(node, node) + (sep + port if port and port != "0" else "")


def _renamed(graph: graph_pb2.GraphDef, mapping: dict[str, str]) -> graph_pb2.GraphDef:
    """Nodes renamed (and every reference to them); a node already holding a wanted name gives it up."""
    taken = set(mapping.values())
    names = {n.name for n in graph.node}
    full = dict(mapping)
    for name in names:
        if name in taken and name not in mapping:
            new, k = f"{name}_internal", 1
            while new in names or new in taken:
                new, k = f"{name}_internal_{k}", k + 1
            full[name] = new
    out = graph_pb2.GraphDef()
    out.CopyFrom(graph)
    for node in out.node:
        node.name = full.get(node.name, node.name)
        for i, inp in enumerate(node.input):
            ctrl = inp.startswith("^")
            base, sep, port = inp.lstrip("^").partition(":")
            node.input[i] = ("^" if ctrl else "") + full.get(base, base) + sep + port
    return out


def run_signature(folder: Path, key: str, feeds: dict, outputs: list[str], batch: int | None = None) -> dict:
    """The signature function itself on ``feeds`` (input key -> array): verify's reference."""
    from kfreeze.verify.run import run_batched

    loaded, fn = load_signature(folder, key)
    specs = fn.structured_input_signature[1]

    def run(chunk):
        result = fn(**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in chunk.items()})
        return {o: result[o].numpy() for o in outputs}

    try:
        return run_batched(run, feeds, batch)
    finally:
        del loaded


def listing(folder: Path) -> list[str]:
    """``kfreeze nodes FOLDER``: each signature (the default first) with its input and output keys, dtypes
    and shapes, as the frozen graph will name them; read from saved_model.pb without loading anything."""
    meta = read_meta_graph(folder)
    keys = sorted((k for k in meta.signature_def if k != INIT_OP), key=lambda k: (k != DEFAULT_SIGNATURE, k))
    lines = []
    for key in keys:
        signature = meta.signature_def[key]
        lines.append(f"signature {key}{' (the default)' if key == DEFAULT_SIGNATURE else ''}:")
        for title, tensors in (("input ", signature.inputs), ("output", signature.outputs)):
            for name in sorted(tensors):
                info = tensors[name]
                shape = None if info.tensor_shape.unknown_rank else [d.size if d.size >= 0 else None
                                                                     for d in info.tensor_shape.dim]
                lines.append(f"  {title} {name:<32} {tf.as_dtype(info.dtype).name:<10} {shape}")
    return lines or ["(no signatures)"]
