"""optimized.pb -> model.onnx with tf2onnx's GraphDef path (``tf2onnx.convert.from_graph_def``).

Choices, each measured (README-additions.md has the numbers):
- ``OPSET`` 17: ONNX Runtime 1.31 and OpenCV 4.14's ``readNetFromONNX`` load the examples at the
  opsets tf2onnx 1.17 writes (13, 15, 17, 18 measured, same parity); 17 is the newest before opset 18
  turned the Reduce* axes and Split sizes into inputs, a form older consumers handle less well.
- Layout ``NCHW`` by default (params ``onnx_layout``): tf2onnx's ``inputs_as_nchw``/``outputs_as_nchw``
  on every 4-D input and output, what ``cv2.dnn.blobFromImage`` and most C++ code feed; the
  Transposes fold into the convolutions. ``NHWC`` keeps the TensorFlow layout.
- Names: the ONNX inputs are optimized.pb's placeholders and the outputs names.json's outputs,
  without TensorFlow's ``:0`` (``tensors_to_rename``), so ``sess.run(['probs'], {'image': x})``.
Same graph, same bytes: tf2onnx writes no timestamp; the file carries its producer version only.
"""

from __future__ import annotations

import re

from kfreeze.errors import KfreezeError
from kfreeze.targets import Sibling

OPSET = 17


def _tensor(name: str) -> str:
    return name if ":" in name else f"{name}:0"


def graph_tensors(graph, tensors: list[str]) -> dict:
    """{name: tf.Tensor} of ``graph`` imported as it is (for rank and dtype)."""
    from kfreeze.tfenv import tf

    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph, name="")
    return {t: g.get_tensor_by_name(_tensor(t)) for t in tensors}


def separate_outputs(graph, outputs: dict):
    """An ``Identity`` after each of ``outputs`` ({tensor name: tf.Tensor}) that other nodes also read,
    to fetch instead: (graph, {output: the Identity's name}).

    Hand-written because of a tf2onnx 1.17 bug: ``outputs_as_nchw`` on a tensor that the graph
    also consumes feeds those consumers the NCHW tensor as if it were NHWC (a feature map that is
    both an output and the next layer's input); measured in tests/targets/test_onnx.py. OpenVINO's
    frontend needs it too (kfreeze/targets/openvino.py): it takes only sink nodes as outputs.
    """
    from kfreeze.nodes import split_tensor

    read = {split_tensor(i)[0] for n in graph.node for i in n.input}
    fetch = {o: f"{split_tensor(o)[0]}__output" for o in outputs if split_tensor(o)[0] in read}
    if not fetch:
        return graph, {}
    copy = type(graph)()
    copy.CopyFrom(graph)
    for output, name in fetch.items():
        node = copy.node.add(name=name, op="Identity", input=[output])
        node.attr["T"].type = outputs[output].dtype.as_datatype_enum
    return copy, fetch


_GENERATED = re.compile(r"^(.*)__(\d+)(:\d+)?$")


def _number_generated_names(model) -> None:
    """Names tf2onnx made up (``base__N``) numbered 1, 2... in the order the graph first uses them.

    tf2onnx numbers them from a global counter whose course depends on set iteration order, so
    the same graph came out as ``new_shape__17`` or ``new_shape__18`` with another PYTHONHASHSEED
    (measured: tests/compare/test_sharing.py's forced rerun). Initializers are then sorted by name.
    """
    graph = model.graph
    numbers: dict[tuple[str, str], str] = {}

    def rename(name: str) -> str:
        match = _GENERATED.match(name)
        if not match:
            return name
        key = (match.group(1), match.group(2))
        number = numbers.setdefault(key, str(len(numbers) + 1))
        return f"{match.group(1)}__{number}{match.group(3) or ''}"

    for node in graph.node:
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
        node.name = rename(node.name)
    for value in [*graph.initializer, *graph.input, *graph.output, *graph.value_info]:
        value.name = rename(value.name)
    graph.initializer.sort(key=lambda t: t.name)
    graph.value_info.sort(key=lambda v: v.name)


def stable_order(data: bytes) -> bytes:
    """model.onnx with its nodes in a deterministic topological order and tf2onnx's generated names
    renumbered in that order.

    For an unrolled recurrent model (kfreeze/targets/recurrent.py) tf2onnx 1.17 emitted the nodes in
    an order that changed between two conversions of the same GraphDef in one process, and merged
    equal constants under either name (``const_axes__2`` or ``const_starts__2``, both [0]); measured in
    tests/targets/test_recurrent.py); likewise two equal weights of two layers (two ConvLSTMs' biases,
    kept under either layer's name in processes with another PYTHONHASHSEED). Ties go by the outputs'
    names without their generated numbers, then op type and inputs (a constant by its value); every
    constant is then called ``constant__N`` in order of first use.
    """
    import hashlib
    import heapq

    import onnx

    model = onnx.load_from_string(data)
    graph = model.graph
    generated = {}  # every constant: tf2onnx keeps one of two equal constants under either's name
    inputs = {i.name for i in graph.input}
    for init in graph.initializer:
        if init.name not in inputs:
            probe = type(init)()
            probe.CopyFrom(init)
            probe.name = ""
            generated[init.name] = "const:" + hashlib.sha1(probe.SerializeToString(deterministic=True)).hexdigest()
    def base(name: str) -> str:
        return generated.get(name) or _GENERATED.sub(lambda m: m.group(1) + (m.group(3) or ""), name)
    nodes = list(graph.node)
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    deps = [{producer[x] for x in n.input if x in producer} for n in nodes]
    users: list[list[int]] = [[] for _ in nodes]
    for i, ds in enumerate(deps):
        for d in ds:
            users[d].append(i)
    rank = [(tuple(base(o) for o in n.output), n.op_type, tuple(base(x) for x in n.input),
             n.SerializeToString(deterministic=True) if not n.output else b"") for n in nodes]
    ready = [(rank[i], i) for i, ds in enumerate(deps) if not ds]
    heapq.heapify(ready)
    order = []
    while ready:
        _, i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            deps[u].discard(i)
            if not deps[u]:
                heapq.heappush(ready, (rank[u], u))
    order += [i for i in range(len(nodes)) if i not in set(order)]
    rename: dict[str, str] = {}
    for i in order:
        for x in nodes[i].input:
            if x in generated and x not in rename:
                rename[x] = f"constant__{len(rename) + 1}"
    copies = [type(n)() for n in nodes]
    for copy, node in zip(copies, nodes):
        copy.CopyFrom(node)
        copy.input[:] = [rename.get(x, x) for x in copy.input]
    del graph.node[:]
    graph.node.extend(copies[i] for i in order)
    for init in graph.initializer:
        init.name = rename.get(init.name, init.name)
    _number_generated_names(model)
    _number_dynamic_dims(model.graph)
    return model.SerializeToString(deterministic=True)


def _number_dynamic_dims(graph) -> None:
    """Dynamic dimensions named ``unk__1``, ``unk__2``... in order of appearance (same name, same number).

    tf2onnx numbers them from its global counter, which a process's first conversion advances
    further than later ones even after the reset: the bytes would depend on the process's history.
    """
    names: dict[str, str] = {}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                dim.dim_param = names.setdefault(dim.dim_param, f"unk__{len(names) + 1}")


def _erfc_as_erf(graph):
    """``Erfc(x)`` -> ``1 - Erf(x)``: exact GELU (``activation="gelu"``, in every transformer block)
    freezes to Erfc, which tf2onnx 1.17 cannot convert, while ONNX has Erf. In float32 the two differ only where
    erfc(x) is below 6e-8 (x > 3.9): there GELU (x * erfc(-x / sqrt(2)) / 2, for x < -5.5) is
    below 1e-6 and becomes 0. Only the ONNX sibling's copy of the graph changes."""
    if not any(n.op == "Erfc" for n in graph.node):
        return graph
    from tensorflow.core.framework import graph_pb2

    out = graph_pb2.GraphDef()
    out.CopyFrom(graph)
    names = {n.name for n in out.node}
    extra = []
    for node in out.node:
        if node.op != "Erfc":
            continue
        dtype = node.attr["T"].type
        erf, one = f"{node.name}/erf", f"{node.name}/one"
        assert erf not in names and one not in names
        extra.append(_node("Erf", erf, [node.input[0]], dtype))
        const = _node("Const", one, [], None)
        const.attr["dtype"].type = dtype
        const.attr["value"].tensor.dtype = dtype
        const.attr["value"].tensor.float_val.append(1.0)  # float types only: Erfc takes no others
        extra.append(const)
        node.op = "Sub"
        del node.input[:]
        node.input.extend([one, erf])
    out.node.extend(extra)
    return out


def _node(op: str, name: str, inputs: list[str], dtype):
    from tensorflow.core.framework import node_def_pb2

    node = node_def_pb2.NodeDef(name=name, op=op, input=inputs)
    if dtype is not None:
        node.attr["T"].type = dtype
    return node


def convert(graph, inputs: list[str], outputs: list[str], layout: str, where: str, opset: int = OPSET) -> Sibling:
    """``graph`` (optimized.pb) with placeholders ``inputs`` and fetches ``outputs`` as an ONNX model.

    An op tf2onnx cannot convert stays in its output as an op no ONNX runtime knows; it is
    refused here, naming the node and its TensorFlow op.
    """
    import onnx
    import tf2onnx

    graph = _erfc_as_erf(graph)
    tensors = graph_tensors(graph, inputs + outputs)
    nchw = layout == "NCHW"
    nchw_outputs = {o: tensors[o] for o in outputs if nchw and tensors[o].shape.rank == 4}
    graph, fetch = separate_outputs(graph, nchw_outputs)
    rename = {_tensor(i): i for i in inputs if ":" not in i}
    rename.update({_tensor(fetch.get(o, o)): o for o in outputs if ":" not in o or o in fetch})
    # tf2onnx names the nodes it inserts from a module-global counter: without the reset, the bytes
    # would depend on what this process converted before (kfreeze run, tests), not on the graph alone.
    tf2onnx.utils.INTERNAL_NAME = 1
    try:
        model, _ = tf2onnx.convert.from_graph_def(
            graph, input_names=[_tensor(i) for i in inputs], output_names=[_tensor(fetch.get(o, o)) for o in outputs],
            opset=opset, inputs_as_nchw=[_tensor(i) for i in inputs if nchw and tensors[i].shape.rank == 4] or None,
            outputs_as_nchw=[_tensor(fetch.get(o, o)) for o in nchw_outputs] or None,
            tensors_to_rename=rename)
    except Exception as e:  # tf2onnx raises plain exceptions; its message names the node
        raise KfreezeError(where, f"tf2onnx {tf2onnx.__version__} cannot convert the graph: "
                           f"{' '.join(str(e).split())[:300]}", "leave onnx out of targets") from None
    blocked = [n for n in model.graph.node if not onnx.defs.has(n.op_type, n.domain)]
    if blocked:
        node = blocked[0]
        raise KfreezeError(where, f"op {node.op_type} (node '{node.name}') has no ONNX conversion in tf2onnx "
                           f"{tf2onnx.__version__} at opset {opset}" +
                           (f" ({len(blocked) - 1} more blocked)" if len(blocked) > 1 else ""),
                           "leave onnx out of targets, or replace that layer")
    _number_generated_names(model)
    _number_dynamic_dims(model.graph)
    data = model.SerializeToString(deterministic=True)
    # tf2onnx folds precision: float16's Cast(float16 weight) back into float32 constants: say what the file holds.
    half = any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    return Sibling(data, {"converter": f"tf2onnx {tf2onnx.__version__} from_graph_def", "opset": opset,
                          "layout": layout, "layout_applies_to": "4-D inputs and outputs",
                          "weights": "float16" if half else "float32",
                          "runtime": "onnxruntime.InferenceSession(path); cv2.dnn.readNetFromONNX(path)",
                          **io_signature(model)})


def io_signature(model) -> dict:
    """Inputs and outputs with the dtype and shape the ONNX file declares (None = dynamic)."""
    import onnx

    def entries(values):
        return [{"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
                 "shape": [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]}
                for v in values]
    return {"inputs": entries(model.graph.input), "outputs": entries(model.graph.output)}


def op_count(data: bytes) -> int:
    import onnx
    return len(onnx.load_from_string(data).graph.node)


def run(data: bytes, feeds: dict, outputs: list[str], layout: str) -> dict:
    """ONNX Runtime on NHWC ``feeds`` (transposed here for an NCHW file); 4-D results back to NHWC."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    nchw = layout == "NCHW"
    feed = {k: np.ascontiguousarray(v.transpose(0, 3, 1, 2)) if nchw and v.ndim == 4 else v for k, v in feeds.items()}
    values = session.run(outputs, feed)
    return {o: v.transpose(0, 2, 3, 1) if nchw and v.ndim == 4 else v for o, v in zip(outputs, values)}


# The registry's interface (kfreeze/targets/registry.py).

EXTRA_RUNTIME = "OpenCV dnn"  # extra_check's runtime, named in verify's progress line

def build(graph, inputs: list[str], outputs: list[str], where: str, onnx_layout: str = "NCHW") -> Sibling:
    return convert(graph, inputs, outputs, onnx_layout, where)


def run_folder(folder, feeds: dict, outputs: list[str], signature: dict) -> dict:
    from pathlib import Path
    return run((Path(folder) / "model.onnx").read_bytes(), feeds, outputs, signature["layout"])


def note(got: dict) -> str:
    """Verify's line for model.onnx adds OpenCV's result."""
    return (f" (OpenCV max_abs_diff {got['opencv_max_abs_diff']:.3g})" if got.get("opencv_error") is None
            and got.get("opencv_max_abs_diff") is not None else " (OpenCV failed)")


def usage(path, sig: dict, got: dict) -> list[str]:
    fed = ", ".join(f"'{i['name']}': {i['dtype']} {_shape(i['shape'])}" for i in sig["inputs"])
    fetched = [o["name"] for o in sig["outputs"]]
    return [f"ONNX (onnxruntime.InferenceSession('{path}'); opset {sig['opset']}, 4-D inputs {sig['layout']}):",
            f"  session.run({fetched!r}, {{{fed}}})"]


def checked(got: dict) -> str:
    """What usage's 'checked' line adds: OpenCV's readNetFromONNX result."""
    return "; OpenCV readNetFromONNX: " + (f"max_abs_diff {got['opencv_max_abs_diff']:.3g}"
                                           if got.get("opencv_error") is None and got.get("opencv_max_abs_diff")
                                           is not None else f"fails ({str(got.get('opencv_error'))[:120]})")


def _shape(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def extra_check(path, feeds: dict, reference: dict, probability: dict, batch, signature: dict) -> dict:
    """OpenCV dnn's ``readNetFromONNX`` on model.onnx, in a child process: recorded, does not decide."""
    from kfreeze.targets.check import summary
    from kfreeze.verify import compare, run_opencv

    result = run_opencv(path, feeds, list(reference), batch, layout=signature["layout"])
    error = result.error
    if result.outputs is not None:
        cmp = compare(reference, result.outputs, probability)
        bad = {k: v.get("error") or "NaN or Inf in the output" for k, v in cmp.items()
               if v.get("error") or v.get("nonfinite")}
        if not bad:
            return {"opencv_max_abs_diff": summary(cmp)["max_abs_diff"], "opencv_error": None}
        error = "; ".join(f"{k}: {v}" for k, v in bad.items())
    return {"opencv_max_abs_diff": None, "opencv_error": error}
