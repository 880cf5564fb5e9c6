"""Keras model -> TF1-style inference graph + checkpoint, as the seed's tools expect.

Keras 3 traces to resource variables inside a tf.function, which TensorFlow's
``freeze_graph`` cannot restore from a checkpoint. So the traced graph goes through
``convert_variables_to_constants_v2``'s rewrite (without the weights: ``_WeightlessConversion``)
and each variable becomes a classic ``VariableV2`` named by its Keras path
(``conv1/kernel``), with a ``save/`` Saver and a V2 checkpoint keyed by the
same names. The result is what TF1 users have always fed to ``freeze_graph``.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kfreeze import layout
from kfreeze import atomic, graphio
from kfreeze.errors import KfreezeError
from kfreeze.keras_io import input_structure, keras, output_structure
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2
from tensorflow.python.framework import convert_to_constants

CKPT_NAME = "model.ckpt"
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.\-/]")
_COUNTER = re.compile(r"^(.+)_(\d+)$")


@dataclass
class Exported:
    graph: graph_pb2.GraphDef          # VariableV2 graph with a save/ Saver
    values: dict                       # variable name -> its tf.Variable (np.asarray reads it)
    signature: dict                    # inputs/outputs: name, dtype, shape


def tf_name(name: str) -> str:
    name = _BAD_CHARS.sub("_", name)
    return name if name[:1].isalnum() or name[:1] == "." else f"x{name}"


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        k = seen.get(name, 0)
        seen[name] = k + 1
        out.append(name if k == 0 else f"{name}_{k}")
    return out


def _layer_names(model) -> set[str]:
    names = {model.name}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        names.add(layer.name)
    return names


def output_layer_names(model) -> list[str]:
    names = []
    for tensor in tf.nest.flatten(output_structure(model)):
        history = getattr(tensor, "_keras_history", None)
        names.append(history.operation.name if history else tensor.name)
    return _unique([tf_name(n) for n in names])


def input_names(model) -> list[str]:
    return _unique([tf_name(t.name) for t in tf.nest.flatten(input_structure(model))])


def trace(model):
    """A concrete inference function with placeholders named after the Keras inputs.

    The batch is left free, as Keras' own export does: a Sequential built by calling it on a
    (3, 10) tensor records batch 3, which is that call's, not the model's. A model that needs its
    batch (a stateful RNN) or fails to trace without it keeps the recorded one."""
    names = input_names(model)
    structure = input_structure(model)
    tensors = tf.nest.flatten(structure)

    def call(*args):
        inputs = tf.nest.pack_sequence_as(structure, list(args))
        return tf.nest.flatten(model(inputs, training=False))

    recorded = [tf.TensorSpec(t.shape, t.dtype, name=n) for t, n in zip(tensors, names)]
    free = [tf.TensorSpec([None, *t.shape[1:]] if len(t.shape) else t.shape, t.dtype, name=n)
            for t, n in zip(tensors, names)]
    stateful = any(getattr(layer, "stateful", False) is True
                   for layer in model._flatten_layers(include_self=True, recursive=True))
    with inference_only(model), portable_grouped_convolutions():
        if free != recorded and not stateful:
            try:
                return tf.function(call).get_concrete_function(*free)
            except (ValueError, TypeError, tf.errors.OpError):
                pass
        return tf.function(call).get_concrete_function(*recorded)


@contextlib.contextmanager
def portable_grouped_convolutions():
    """Trace grouped convolutions (``Conv2D(groups=...)``, ConvNeXt's depthwise 7x7) with ops TF's CPU
    kernels and OpenCV run.

    Keras' TensorFlow backend computes a grouped convolution inside a ``tf.function(jit_compile=True)``
    (TF has no grouped Conv2D kernel on CPU): the traced graph calls an XLA function that no frozen
    GraphDef holds ("Failed to find function __inference__conv_xla"). Here one input channel per group
    becomes a DepthwiseConv2dNative with the kernel reshaped (output channel g * m + j is group g's
    filter j, which is depthwise's order), and any other grouping one convolution per group,
    concatenated. The same sums, in another order: float32 rounding apart, the same outputs.
    Keras' function is swapped for the trace only.
    """
    from keras.src import backend
    from keras.src.backend.tensorflow import nn as tf_nn

    original = tf_nn.conv

    def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        fmt = backend.standardize_data_format(data_format)
        rank = len(inputs.shape) - 2
        channels = inputs.shape[-1] if fmt == "channels_last" else None
        group_in = kernel.shape[-2]
        if channels is None or channels == group_in or not group_in or channels % group_in:
            return original(inputs, kernel, strides, padding, data_format, dilation_rate)
        groups = channels // group_in
        strides = (strides,) * rank if isinstance(strides, int) else tuple(strides)
        dilation = (dilation_rate,) * rank if isinstance(dilation_rate, int) else tuple(dilation_rate)
        if rank == 2 and group_in == 1 and (set(strides) == {1} or set(dilation) == {1}) \
                and len(set(strides)) == 1:
            depthwise = tf.reshape(kernel, (*kernel.shape[:2], groups, kernel.shape[-1] // groups))
            return tf.nn.depthwise_conv2d(inputs, depthwise, (1, *strides, 1), padding.upper(),
                                          dilations=dilation)
        parts = zip(tf.split(inputs, groups, axis=-1), tf.split(kernel, groups, axis=-1))
        return tf.concat([tf.nn.convolution(x, k, strides, padding.upper(), dilations=dilation) for x, k in parts],
                         axis=-1)

    tf_nn.conv = conv
    try:
        yield
    finally:
        tf_nn.conv = original


@contextlib.contextmanager
def inference_only(model):
    """Trace recurrent layers as inference needs them: stateless and without dropout masks.

    A stateful layer reads its state variables and assigns the new state after
    the call; a frozen graph has no variables to assign, and TensorFlow's
    converter refuses the assign. Traced stateless, the layer starts from zero
    states, which is what the stateful model computes after ``reset_states()``:
    every run of the frozen graph starts from zeros and carries nothing over.

    The augmentation layers of ``SEED_ONLY_AT_INFERENCE`` are traced as the identity they compute at
    inference, without the seed update they make there.

    Recurrent cells with ``dropout``/``recurrent_dropout`` draw their dropout masks
    on every call, at inference too, and advance a seed variable to do so; the
    masks are used only in training. Traced with rates 0 they draw nothing,
    which changes no inference output.
    """
    every = list(model._flatten_layers(include_self=True, recursive=True))
    saved = []
    identities = [layer for layer in every if is_seed_only_at_inference(layer)]
    for layer in identities:
        object.__setattr__(layer, "call", _identity)
    for layer in every:
        if getattr(layer, "stateful", False) is True:
            saved.append((layer, "stateful", True))
        if hasattr(layer, "get_recurrent_dropout_mask"):  # Keras' DropoutRNNCell, a private class
            saved += [(layer, key, getattr(layer, key)) for key in ("dropout", "recurrent_dropout")
                      if getattr(layer, key, 0)]
    for layer, key, _ in saved:
        setattr(layer, key, 0.0 if key != "stateful" else False)
    try:
        yield
    finally:
        for layer, key, value in saved:
            setattr(layer, key, value)
        for layer in identities:
            object.__delattr__(layer, "call")


# Keras 3 augmentation layers that return their input unchanged at inference (training=False) but still
# advance their SeedGenerator there, an AssignVariableOp no frozen graph can hold (issue #22; checked
# per class in tests/test_export.py, on Keras' own output). Traced as the identity they are at inference.
# Only these exact classes: a subclass may compute something else.
SEED_ONLY_AT_INFERENCE = ("MixUp", "RandomHue", "RandomSaturation", "RandomGrayscale", "RandomSharpness",
                          "RandomPosterization", "RandomColorDegeneration")


def is_seed_only_at_inference(layer) -> bool:
    return any(type(layer) is getattr(keras.layers, name, None) for name in SEED_ONLY_AT_INFERENCE)


def _identity(inputs, *args, **kwargs):
    return inputs


def rename_nodes(graph: graph_pb2.GraphDef, mapping: dict[str, str]) -> graph_pb2.GraphDef:
    """Rename nodes and every reference to them (data and control inputs, and the
    ``frame_name`` of a v1 while loop's Enter nodes, which names the loop's scope)."""
    out = graph_pb2.GraphDef()
    out.CopyFrom(graph)
    _rename_in_place(out, mapping)
    return out


def _rename_in_place(out: graph_pb2.GraphDef, mapping: dict[str, str]) -> None:
    """``rename_nodes`` without the copy, for export's graph of every weight (VGG16: 553 MB)."""
    frames = _frame_mapping(out, mapping)
    for node in out.node:
        node.name = mapping.get(node.name, node.name)
        if node.op in ("Enter", "RefEnter"):
            frame = node.attr["frame_name"].s.decode()
            node.attr["frame_name"].s = frames.get(frame, frame).encode()
        for i, inp in enumerate(node.input):
            ctrl = inp.startswith("^")
            base, sep, port = inp.lstrip("^").partition(":")
            node.input[i] = ("^" if ctrl else "") + mapping.get(base, base) + sep + port


def _frame_mapping(graph: graph_pb2.GraphDef, mapping: dict[str, str]) -> dict[str, str]:
    """Each loop frame renamed as the nodes inside its scope are: 'rnn_1/while' -> 'rnn/while'.

    A renaming that keeps the number of scope parts (strip_name_counters) tells
    the frame's new name; without one the frame keeps its name, which is valid too.
    """
    frames = {n.attr["frame_name"].s.decode() for n in graph.node if n.op in ("Enter", "RefEnter")}
    out = {}
    for frame in frames:
        depth = frame.count("/") + 1
        for old, new in mapping.items():
            if old.startswith(frame + "/") and old.count("/") == new.count("/"):
                out[frame] = "/".join(new.split("/")[:depth])
                break
    return out


def strip_name_counters(graph: graph_pb2.GraphDef, scopes: set[str]) -> dict[str, str]:
    """Map 'digits_1/conv1_1/Conv2D' to 'digits/conv1/Conv2D'.

    Keras uniquifies name scopes with process-global counters, so the same model
    traced in two processes can get different node names. Dropping a counter
    suffix from a scope that names a layer gives stable, readable names; if that
    would make two names collide (a shared layer called twice), nothing is renamed.
    """
    def clean(part: str) -> str:
        m = _COUNTER.match(part)
        return m.group(1) if m and m.group(1) in scopes and part not in scopes else part

    mapping = {n.name: "/".join(clean(p) for p in n.name.split("/")) for n in graph.node}
    if len(set(mapping.values())) != len(mapping):
        return {}
    return {k: v for k, v in mapping.items() if k != v}


class _WeightlessConversion(convert_to_constants._FunctionConverterDataInEager):
    """TensorFlow's ``convert_variables_to_constants_v2`` data, with each model variable's value
    replaced by a scalar of its dtype.

    Why not the function itself: it copies every weight into the GraphDef, then into a new
    function graph, and export turns those constants back into VariableV2 nodes anyway; VGG16's
    export peaked near 11 copies of its weights. Here the Const nodes hold one number, the
    VariableV2 nodes take their shapes from the variables, and the checkpoint reads the variables
    themselves. Everything else (function inlining, control-flow lowering, the rewrite of resource
    reads) is TensorFlow's own code. The While rewrite is the one place that reads a value's shape;
    loops are lowered first, so none is left to read it."""

    def __init__(self, func, weightless: set[int]):
        self._weightless = weightless
        super().__init__(func=func, lower_control_flow=True, aggressive_inlining=False)

    def _eval(self, tensor):
        if id(getattr(tensor, "handle", None)) in self._weightless:
            return np.zeros((), tensor.dtype.as_numpy_dtype)
        return super()._eval(tensor)


def export_model(model) -> Exported:
    concrete = trace(model)
    by_handle = {id(v.value.handle): v for v in model.variables}
    placeholder_to_var = {}
    for external, internal in concrete.graph.captures:
        if id(external) in by_handle:
            placeholder_to_var[internal.op.name] = by_handle[id(external)]
    data = _WeightlessConversion(concrete, set(by_handle))
    graph, converted = convert_to_constants._replace_variables_by_constants(converter_data=data)
    out_ops = [t.op.name for t in concrete.outputs]
    model_inputs = {t.op.name for i, t in enumerate(concrete.inputs) if i not in converted}
    del data, concrete
    # What the outputs need, and every input (TF's path pruned so when it re-imported the function).
    needed = tf.compat.v1.graph_util.extract_sub_graph(graph, out_ops)
    kept = {n.name for n in needed.node}
    needed.node.extend(n for n in graph.node if n.name in model_inputs and n.name not in kept)
    graph = needed

    in_names = input_names(model)
    out_names = output_layer_names(model)

    # Edited in place, not copied: the graph holds every weight (VGG16: 553 MB).
    # Drop the function's NoOp and the control edges that pin variable reads to it.
    # Inside a while loop control edges are the loop: they put constants in its frame.
    in_loops = graphio.loop_nodes(graph)
    # The While lowering leaves 'unused_control_flow_input_N' placeholders that nothing reads,
    # numbered differently in every process; they are no inputs of the model.
    read = {i.lstrip("^").split(":")[0] for n in graph.node for i in n.input}
    for index in reversed(range(len(graph.node))):
        node = graph.node[index]
        if (node.op == "NoOp" and node.name not in in_loops
                or node.op == "Placeholder" and node.name not in read and node.name not in model_inputs):
            del graph.node[index]
            continue
        inputs = [i for i in node.input if not i.startswith("^") or node.name in in_loops and i[1:] in in_loops]
        if len(inputs) != len(node.input):
            del node.input[:]
            node.input.extend(inputs)
        node.ClearField("device")
        # A tracing hint that the While lowering sets on arbitrary nodes (not the same ones in
        # every process); TensorFlow does not read it from a GraphDef.
        if "_has_manual_control_dependencies" in node.attr:
            del node.attr["_has_manual_control_dependencies"]
        # Colocation hints name nodes by their traced names, which the renaming below changes
        # (TF's own path dropped them, and the debug info, when it re-imported the function).
        for hint in ("_class", "_user_specified_name"):
            if hint in node.attr:
                del node.attr[hint]
        node.ClearField("experimental_debug_info")  # traced names with process-wide counters
    _check_no_function_calls(graph, model)
    for field in ("library", "version", "debug_info"):  # nodes and versions only, as the graph was written before
        graph.ClearField(field)
    graph.versions.ClearField("min_consumer")  # as TF's re-import wrote it: the artifacts keep their bytes

    mapping = strip_name_counters(graph, _layer_names(model))
    var_names = dict(zip(sorted(placeholder_to_var),
                         _unique([tf_name(placeholder_to_var[k].path) for k in sorted(placeholder_to_var)])))
    mapping.update(var_names)
    mapping.update(dict(zip(out_ops, out_names)))
    taken = set(var_names.values()) | set(out_names) | set(in_names)
    for old, new in list(mapping.items()):  # an internal node may not steal a public name
        if new in taken and old not in var_names and old not in out_ops and new not in in_names:
            mapping[old] = new + "_internal"
    _rename_in_place(graph, mapping)

    values = {}
    by_name = {n.name: n for n in graph.node}
    for placeholder, var in var_names.items():
        node = by_name[var]
        values[var] = placeholder_to_var[placeholder].value  # the tf.Variable: no copy until SaveV2 reads it
        dtype = node.attr["dtype"].type
        node.Clear()
        node.name, node.op = var, "VariableV2"
        node.attr["dtype"].type = dtype
        node.attr["shape"].shape.CopyFrom(tf.TensorShape(values[var].shape).as_proto())
        node.attr["container"].s = b""
        node.attr["shared_name"].s = b""

    graph, values = _add_saver(graph, values)
    graph = graphio.canonical_order(graph)
    signature = _signature(graph, in_names, out_names, model)
    return Exported(graph, values, signature)


def _check_no_function_calls(graph: graph_pb2.GraphDef, model) -> None:
    """The graph is written without its function library: a node that still calls a function (an XLA
    ``jit_compile`` function TensorFlow does not inline) would fail later, in freeze, with a message
    about the checkpoint. Refused here, naming the layer."""
    functions = {f.signature.name for f in graph.library.function}
    for node in graph.node:
        if node.op in functions or node.op in ("PartitionedCall", "StatefulPartitionedCall"):
            layer = _layer_of(model, node.name)
            who = f"layer '{layer.name}' ({type(layer).__name__})" if layer is not None else f"op '{node.name}'"
            raise KfreezeError(who, "calls a compiled TensorFlow function (tf.function with jit_compile), which "
                               "a frozen GraphDef cannot hold", "write the layer without jit_compile, or report "
                               "the layer if it is a Keras one")


def _add_saver(graph: graph_pb2.GraphDef, values: dict[str, np.ndarray]):
    if not values:  # a model without weights needs no saver (and TF's Saver refuses one)
        return graph, values
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph, name="")
        var_list = {k: g.get_tensor_by_name(k + ":0") for k in sorted(values)}
        tf.compat.v1.train.Saver(var_list=var_list, write_version=tf.compat.v1.train.SaverDef.V2)
    return g.as_graph_def(), values


def _signature(graph, in_names, out_names, model) -> dict:
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph, name="")

    def describe(name):
        t = g.get_tensor_by_name(name + ":0")
        shape = None if t.shape.rank is None else [d if d is not None else None for d in t.shape.as_list()]
        return {"name": name, "dtype": t.dtype.base_dtype.name, "shape": shape}

    return {
        "model": model.name,
        "inputs": [describe(n) for n in in_names],
        "outputs": [describe(n) for n in out_names],
        "variables": len([n for n in graph.node if n.op == "VariableV2"]),
    }


def write_checkpoint(exported: Exported, ckpt_dir: Path) -> None:
    """A V2 checkpoint keyed by variable name, restorable by the graph's own Saver."""
    with atomic.directory(ckpt_dir) as tmp:
        if not exported.values:
            return  # an empty checkpoint directory: nothing to restore
        # The op the graph's Saver runs (save/SaveV2), run once eagerly on the values:
        # no graph of assign ops holding every weight a second time.
        names = sorted(exported.values)
        tf.raw_ops.SaveV2(prefix=str(tmp / CKPT_NAME), tensor_names=names, shape_and_slices=[""] * len(names),
                          tensors=[exported.values[k] for k in names])
        # Written by hand: TF's state file records absolute paths and timestamps.
        atomic.write_text(tmp / "checkpoint", f'model_checkpoint_path: "{CKPT_NAME}"\n'
                                              f'all_model_checkpoint_paths: "{CKPT_NAME}"\n')


def write_export(exported: Exported, out_dir: Path) -> None:
    out_dir = Path(out_dir)
    write_checkpoint(exported, out_dir / "ckpt")
    graphio.write_graph(exported.graph, out_dir / layout.GRAPH)
    atomic.write_text(out_dir / layout.OP_NAMES, "".join(n.name + "\n" for n in exported.graph.node))
    graphio.write_json(out_dir / layout.SIGNATURE, exported.signature)


def check_exportable(model, where: str) -> None:
    if any(t.shape is None or getattr(t.shape, "rank", 0) is None for t in tf.nest.flatten(input_structure(model))):
        raise KfreezeError(where, "an input has unknown rank", "build the model with keras.Input(shape=...)")


__all__ = ["export_model", "write_export", "trace", "keras"]


# Ops a traced inference graph may hold that no frozen GraphDef can run: why, and what works instead.
UNFREEZABLE = {
    **dict.fromkeys(("PyFunc", "PyFuncStateless", "EagerPyFunc"), (
        "runs Python code (tf.py_function / numpy_function), which a GraphDef cannot hold",
        "rewrite the layer with keras.ops / TensorFlow operations")),
    **dict.fromkeys(("HashTableV2", "MutableHashTableV2", "MutableDenseHashTableV2", "LookupTableFindV2"), (
        "looks values up in a hash table, which a frozen graph cannot initialize",
        "do the lookup before the model: remove the layer and feed the ids it produces")),
    **dict.fromkeys(("AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp"), (
        "changes its variables at inference, which a frozen graph (all constants) cannot do",
        "make the layer keep its variables unchanged when called with training=False")),
}


def _graph_ops(graph) -> list[tuple[str, str]]:
    """(op type, node name) of a traced graph and of every function in its library."""
    graph_def = graph.as_graph_def()
    found = [(n.op, n.name) for n in graph_def.node]
    for fn in graph_def.library.function:
        found += [(n.op, f"{fn.signature.name}/{n.name}") for n in fn.node_def]
    return found


def _layer_of(model, path: str):
    """The innermost layer whose name is a scope of ``path`` (Keras scopes ops by layer name)."""
    layers = {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        layers.setdefault(layer.name, layer)
    parts = [_COUNTER.match(p).group(1) if _COUNTER.match(p) and p not in layers else p for p in path.split("/")]
    hits = [layers[p] for p in parts if p in layers]
    return hits[-1] if hits else None


def check_convertible(model, where) -> None:
    """Trace the model once, as export will, and refuse here what cannot become a frozen graph.

    One line names the layer, its class and why, so a model that cannot work fails
    in convert rather than in export, freeze or verify.
    """
    import re as _re

    check_exportable(model, where)
    try:
        concrete = trace(model)
    except KfreezeError:
        raise
    except Exception as e:  # Keras and TF raise many types while tracing a user's layer
        text = " ".join(str(e).split())
        called = _re.search(r"calling (\w+)\.call\(\)", text)
        cls = called.group(1) if called else None
        layer = next((l for l in model._flatten_layers(include_self=False, recursive=True)
                      if cls and type(l).__name__ == cls), None)
        reason = _re.sub(r"\x1b\[[0-9;]*m", "", text.split("Arguments received")[0])[:240].strip()
        who = f"layer '{layer.name}' ({cls})" if layer is not None else "the model"
        raise KfreezeError(where, f"{who} cannot be traced for inference: {type(e).__name__}: {reason}",
                           "fix or replace that layer; kfreeze traces model(x, training=False)") from None
    for op, name in _graph_ops(concrete.graph):
        if op in UNFREEZABLE:
            why, fix = UNFREEZABLE[op]
            layer = _layer_of(model, name)
            who = f"layer '{layer.name}' ({type(layer).__name__})" if layer is not None else f"op '{name}'"
            raise KfreezeError(where, f"{who} {why} ({op})", fix)
