"""The ONNX and TFLite siblings of a Keras model with recurrent layers: its loops unrolled.

A recurrent layer freezes to a TensorFlow while loop (``Enter``/``Exit``/``NextIteration`` frames
reading and writing ``TensorListReserve`` lists). tf2onnx 1.17 and the TFLite converter cannot convert
that loop in optimized.pb (measured: tf2onnx fails in its loop rewriter, TFLite on ``TensorListReserve``).
Both convert the same model traced with ``unroll=True`` on every recurrent layer (``RNN`` and its
subclasses: SimpleRNN, LSTM, GRU, ConvLSTM1D/2D/3D, the cells inside RNN, and the copies
Bidirectional makes): one copy of the cell per time step, no loop, the same weights and arithmetic.

So for a Keras entry whose optimized.pb holds a loop, the onnx and tflite stages re-trace the
canonical model ``build/<name>/model/model.keras`` that way, with optimized.pb's input names, dtypes
and shapes (a time dimension left free by the model is fixed by optimized.pb's), frozen, its outputs
renamed to names.json's outputs; that graph is what the converter reads. Verify checks the sibling
against the same reference as every other one. A graph with no Keras model (``graphs:`` entries) goes
to the converter as it is (targets.build), whose refusal then names the op and the targets that convert
the loop. Refused in one line (KfreezeError), naming the loop op and what works instead: inputs or outputs cut away
from the model's (``inputs``/``outputs`` params), a time dimension that is not fixed, a loop that is not
a recurrent layer's, and a model that needs ``custom_objects`` or ``trust_code`` to load (the target
stages do not read those keys).
"""

from __future__ import annotations

from pathlib import Path

from kfreeze.errors import KfreezeError

# The ops a frozen tf.while_loop leaves in a GraphDef (lowered or functional).
LOOP_OPS = ("Enter", "Exit", "NextIteration", "LoopCond", "While", "StatelessWhile")


def loop_op(graph) -> str | None:
    """'TensorListReserve' (or the first loop op) if ``graph`` holds a while loop, else None."""
    ops = {n.op for n in graph.node}
    if not ops & set(LOOP_OPS):
        return None
    return "TensorListReserve" if "TensorListReserve" in ops else sorted(ops & set(LOOP_OPS))[0]


def _refuse(where: str, target: str, op: str, why: str) -> KfreezeError:
    return KfreezeError(where, f"op {op} (a while loop) in optimized.pb: {target}'s converter cannot convert it, "
                        f"and the unrolled model cannot be traced: {why}",
                        "leave it out of targets; the openvino and saved_model targets convert the loop")


def unrolled_graph(out: Path, graph, inputs: list[str], outputs: list[str], target: str, where: str):
    """optimized.pb's model (BUILD/<name>/model/model.keras) traced with every RNN layer unrolled and
    frozen: a GraphDef with placeholders ``inputs`` and nodes ``outputs``, or a KfreezeError."""
    op = loop_op(graph)
    keras_file = Path(out) / "model" / "model.keras"
    if not keras_file.is_file():
        raise _refuse(where, target, op, f"{keras_file} does not exist (a 'graphs:' entry has no Keras model)")
    from kfreeze import keras_io
    from kfreeze import export as export_lib
    from kfreeze.nodes import split_tensor
    from kfreeze.tfenv import tf

    try:
        model = keras_io.load_model(keras_file)
    except KfreezeError as e:
        raise _refuse(where, target, op, f"loading {keras_file} without custom_objects/trust_code failed "
                      f"({e.problem[:160]})") from None
    rnns = [layer for layer in model._flatten_layers(include_self=True, recursive=True) if hasattr(layer, "unroll")]
    if not rnns:
        raise _refuse(where, target, op, "the model has no Keras recurrent layer")
    names = export_lib.input_names(model)
    if sorted(names) != sorted(inputs):
        raise _refuse(where, target, op, f"optimized.pb's inputs {inputs} are not the model's {names}")
    out_names = export_lib.output_layer_names(model)
    if any(":" in o or split_tensor(o)[0] != o for o in outputs) or sorted(out_names) != sorted(outputs):
        raise _refuse(where, target, op, f"optimized.pb's outputs {outputs} are not the model's {out_names}")
    placeholders = {n.name: n for n in graph.node if n.op == "Placeholder"}
    specs = [tf.TensorSpec(tf.TensorShape(placeholders[n].attr["shape"].shape),
                           tf.as_dtype(placeholders[n].attr["dtype"].type), name=n) for n in names]
    # (batch, time, ...): unrolling needs the number of time steps
    if any(s.shape.rank is None or s.shape.rank > 2 and s.shape[1] is None for s in specs):
        raise _refuse(where, target, op, "a time dimension is not fixed (set the input shape in params)")
    saved = [(layer, layer.unroll) for layer in rnns]
    structure = keras_io.input_structure(model)

    def call(*args):
        return tf.nest.flatten(model(tf.nest.pack_sequence_as(structure, list(args)), training=False))

    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    try:
        for layer in rnns:
            layer.unroll = True
        with export_lib.inference_only(model):
            concrete = tf.function(call).get_concrete_function(*specs)
        created = {o.name: i for i, o in enumerate(concrete.graph.get_operations())}
        frozen = convert_variables_to_constants_v2(concrete)
    except (ValueError, TypeError, tf.errors.OpError) as e:
        raise _refuse(where, target, op, " ".join(str(e).split())[:200]) from None
    finally:
        for layer, value in saved:
            layer.unroll = value
    unrolled = frozen.graph.as_graph_def()
    out_ops = [t.op.name for t in frozen.outputs]
    del frozen, concrete
    still = loop_op(unrolled)
    if still is not None:
        raise _refuse(where, target, still, "the unrolled trace still has a loop (not a Keras RNN layer's)")
    unrolled.ClearField("library")
    for node in unrolled.node:
        node.ClearField("device")
    graph = stable_names(unrolled, dict(zip(out_ops, out_names)), set(inputs), created)
    return merge_duplicates(graph, set(out_names) | set(inputs))


def merge_duplicates(graph, keep: set[str]):
    """Nodes that compute the same thing (same op, attributes and inputs) merged into the first one.

    An unrolled LSTM starts from two identical zero states (``zeros``, ``zeros_1``); tf2onnx merges such
    twins itself, keeping either name depending on set order, so the file's bytes varied between two
    conversions of one GraphDef. Merged here, in the graph's (deterministic) order, tf2onnx has none
    left. ``keep`` (inputs, outputs) are never merged away."""
    from tensorflow.core.framework import graph_pb2

    seen: dict[bytes, str] = {}
    replace: dict[str, str] = {}
    out = graph_pb2.GraphDef()
    out.CopyFrom(graph)
    del out.node[:]
    for node in graph.node:
        new = type(node)()
        new.CopyFrom(node)
        for i, inp in enumerate(new.input):
            ctrl = inp.startswith("^")
            src, sep, port = inp.lstrip("^").partition(":")
            new.input[i] = ("^" if ctrl else "") + replace.get(src, src) + sep + port
        probe = type(node)()
        probe.CopyFrom(new)
        probe.name = ""
        signature = probe.SerializeToString(deterministic=True)
        if node.op != "Placeholder" and node.name not in keep and signature in seen:
            replace[node.name] = seen[signature]
            continue
        seen.setdefault(signature, node.name)
        out.node.append(new)
    return out


def stable_names(graph, public: dict[str, str], inputs: set[str], created: dict[str, int]):
    """``graph`` with ``public`` ({node: output name}) renamed and every other node named and ordered
    without the traced names' counters: the converters keep node names in their files.

    The traced names carry counters (``functional_1``, ``lstm_cell_7``: Keras' and TensorFlow's name
    scopes) that depend on what the process traced before; unrolling makes one cell scope per time step.
    Nodes go in the order the trace created them (``created``, node -> index: the same Python code
    makes them in the same order, and an op is created after its inputs), each name loses its ``_N``
    suffixes, and repeated names get ``_1``, ``_2``... in that order.
    """
    import re

    from tensorflow.core.framework import graph_pb2

    strip = lambda name: "/".join(re.sub(r"_\d+$", "", part) for part in name.split("/"))  # noqa: E731
    order = sorted((n.name for n in graph.node), key=lambda n: (created.get(n, -1), strip(n), n))
    taken = set(public.values()) | inputs
    mapping, seen = dict(public), {}
    for name in order:
        if name in public or name in inputs:
            continue
        base = strip(name)
        new = base if base not in taken else None
        while new is None or new in taken:
            seen[base] = seen.get(base, 0) + 1
            new = f"{base}_{seen[base]}"
        taken.add(new)
        mapping[name] = new
    from kfreeze import export as export_lib
    renamed = export_lib.rename_nodes(graph, mapping)
    by_name = {n.name: n for n in renamed.node}
    out = graph_pb2.GraphDef()
    out.CopyFrom(renamed)
    del out.node[:]
    out.node.extend(by_name[mapping.get(n, n)] for n in order)
    return out
