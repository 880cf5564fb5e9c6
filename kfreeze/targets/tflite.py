"""optimized.pb -> model.tflite with TensorFlow's own converter; run with the LiteRT interpreter.

Why ``tf.compat.v1.lite.TFLiteConverter`` on the GraphDef (the class behind ``from_frozen_graph``):
it is the converter entry point that takes a frozen graph with named tensors, so the file gets
optimized.pb's cut, shapes and names (``image``, ``probs``) for Keras and TF1 entries alike; it
runs the same MLIR converter as the v2 API. The Keras-model and concrete-function paths start from
the uncut model, and TF1 entries have no Keras model at all.
- float32 by default; ``precision: float16`` stores the weights as float16 (the converter's
  ``supported_types = [tf.float16]``), computed in float32 by the interpreter.
- ``precision: int8``: post-training full-integer quantization (``Optimize.DEFAULT``,
  ``TFLITE_BUILTINS_INT8``, activation ranges calibrated on verify's real inputs, ``verify.data``; an
  op with no int8 kernel stays float32 inside the file, recorded as ``float_ops``); the file's
  inputs and outputs stay float32 (quantize/dequantize inside), so it is fed the same arrays as the
  float model. optimized.pb itself stays float32: it is the reference the int8 file is checked against.
- Builtin ops only: a graph that needs TF Select (Flex) ops is refused, naming the op. The
  maintained interpreter (``ai_edge_litert``) has no Flex delegate, so such a file could not be
  run, let alone verified.
- A ``serving_default`` SignatureDef named after optimized.pb's inputs and outputs (``image`` ->
  ``probs``), as Keras' ``model.export(format="litert")`` writes one, so ``get_signature_list()`` and
  ``get_signature_runner()`` work. The GraphDef converter writes none (only the SavedModel and
  concrete-function paths do), so it is added to the converted flatbuffer with TensorFlow's own
  ``flatbuffer_utils``, the object round trip the converter itself ends with (measured: unpacking and
  repacking a converted file gives the same bytes), so the file stays deterministic.
- Run with ``ai_edge_litert.interpreter.Interpreter``; ``tf.lite.Interpreter`` is deprecated.
"""

from __future__ import annotations

import re

from kfreeze.errors import KfreezeError
from kfreeze.targets import Sibling


def _blocking_op(message: str) -> str | None:
    """'MatrixInverse (node inv)' from the converter's error text, or None."""
    node = re.search(r'loc\(fused\["(\w+):", "([^"]+)"\]\)[^\n]*op is neither', message)
    if node:
        return f"{node.group(1)} (node '{node.group(2)}')"
    select = re.search(r"TF Select ops: ([\w, ]+)", message)
    if select:
        return select.group(1).strip()
    op = re.search(r"'tf\.(\w+)' op", message)
    return op.group(1) if op else None


def _identity_after_exits(graph, outputs: list[str]):
    """An output computed by a loop's ``Exit`` node moves to an ``Identity`` of the same name.

    Hand-written because the converter turns TF1 loops into functional While ops, drops the Exit
    nodes and then cannot fetch the output ("Graph does not contain node: h", an LSTM's state).
    """
    from kfreeze.nodes import split_tensor
    from kfreeze.optimize.graph import copy, rename_inputs, unique_name

    exits = {n.name: n for n in graph.node if n.op == "Exit" and n.name in {split_tensor(o)[0] for o in outputs}}
    if not exits:
        return graph
    graph = copy(graph)
    names = {n.name for n in graph.node}
    moved = {name: unique_name(names, f"{name}/exit") for name in sorted(exits)}
    rename_inputs(graph, moved)
    for node in graph.node:
        node.name = moved.get(node.name, node.name)
    for name, new in moved.items():
        graph.node.add(name=name, op="Identity", input=[new]).attr["T"].CopyFrom(exits[name].attr["T"])
    return graph


SIGNATURE_KEY = "serving_default"


def with_signature(data: bytes, inputs: list[str], outputs: list[str], where: str) -> bytes:
    """``data`` with a ``serving_default`` SignatureDef over its main subgraph: input ``inputs[k]`` is the
    subgraph's k-th input tensor, output ``outputs[k]`` its k-th output (the converter keeps the order of
    the arrays it was given). A file that already has signatures is returned as it is."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    if model.signatureDefs:
        return data
    graph = model.subgraphs[0]
    if len(graph.inputs) != len(inputs) or len(graph.outputs) != len(outputs):  # the converter's contract broke
        raise KfreezeError(where, f"the TFLite converter wrote {len(graph.inputs)} inputs and {len(graph.outputs)} "
                           f"outputs for optimized.pb's {len(inputs)} and {len(outputs)}",
                           "leave tflite out of targets, and report it as a kfreeze bug")

    def tensor_map(name, index):
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = name, int(index)
        return entry
    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = SIGNATURE_KEY, 0
    signature.inputs = [tensor_map(n, i) for n, i in zip(inputs, graph.inputs)]
    signature.outputs = [tensor_map(n, i) for n, i in zip(outputs, graph.outputs)]
    model.signatureDefs = [signature]
    return flatbuffer_utils.convert_object_to_bytearray(model)


def _representative(calibration: dict, inputs: list[str], batch: int | None):
    """The converter's representative_dataset: verify's inputs in optimized.pb's input order, one
    sample at a time (``batch`` at a time for a fixed batch), always in the same order."""
    import numpy as np

    arrays = [np.asarray(calibration[i], dtype=np.float32) for i in inputs]
    step = batch or 1
    count = len(arrays[0]) // step

    def dataset():
        for k in range(count):
            yield [a[k * step:(k + 1) * step] for a in arrays]
    return dataset, count * step


def convert(graph, inputs: list[str], outputs: list[str], precision: str, where: str,
            calibration: dict | None = None, held_out: bool | None = None) -> Sibling:
    """``calibration``: {placeholder: rows} for int8; ``held_out``: whether verify's inputs are not among them
    (recorded in the signature)."""
    from kfreeze.tfenv import tf

    graph = _identity_after_exits(graph, outputs)
    g = tf.Graph()
    with g.as_default():  # as from_frozen_graph does, without a file: the tensors carry the shapes
        tf.graph_util.import_graph_def(graph, name="")
    tensor = lambda n: g.get_tensor_by_name(n if ":" in n else f"{n}:0")  # noqa: E731
    converter = tf.compat.v1.lite.TFLiteConverter(graph, [tensor(i) for i in inputs], [tensor(o) for o in outputs])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    extra = {}
    if precision == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        if not calibration:
            raise KfreezeError(where, "precision int8 needs calibration inputs (verify.data), and none were given",
                               "set verify.data to an .npz of real inputs in models/<name>/")
        batches = {tensor(i).shape[0] for i in inputs}
        batch = next(iter(batches)) if len(batches) == 1 else None
        dataset, used = _representative(calibration, inputs, batch if isinstance(batch, int) else None)
        if used == 0:
            raise KfreezeError(where, f"verify.data has fewer samples than the graph's fixed batch {batch}",
                               "put at least one batch of inputs in verify.data")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32  # fed the same arrays as the float model
        converter.inference_output_type = tf.float32
        extra = {"calibration_samples": used, "io": "float32 (quantized inside the file)"}
        if held_out is not None:
            extra["calibration_held_out"] = held_out  # False: verify judges it on rows it was calibrated on
    try:
        data = converter.convert()
    except Exception as e:  # ConverterError: MLIR diagnostics, many lines
        text = str(e)
        op = _blocking_op(text)
        if op is not None:
            raise KfreezeError(where, f"op {op} is not a TFLite builtin op (it would need TF Select, which the "
                               "LiteRT interpreter cannot run)", "leave tflite out of targets, or replace that layer"
                               ) from None
        lines = [ln.strip() for ln in text.splitlines() if "error" in ln.lower()] or [text.strip()]
        raise KfreezeError(where, f"the TFLite converter failed: {lines[0][:300]}",
                           "leave tflite out of targets") from None
    data = with_signature(data, inputs, outputs, where)
    if precision == "int8":
        extra["float_ops"] = float_ops(data)  # the converter leaves ops without an int8 kernel in float32
    return Sibling(data, {"converter": f"tf.compat.v1.lite.TFLiteConverter (TensorFlow {tf.__version__})",
                          "weights": precision, "layout": "NHWC (as optimized.pb)",
                          "runtime": "ai_edge_litert.interpreter.Interpreter(model_path=path)",
                          "signature_key": SIGNATURE_KEY, **extra, **io_signature(data)})


def _interpreter(data: bytes):
    from ai_edge_litert.interpreter import Interpreter
    return Interpreter(model_content=data, num_threads=1)


def io_signature(data: bytes) -> dict:
    """Inputs and outputs as the interpreter reports them (None = dynamic, from shape_signature)."""
    it = _interpreter(data)

    def entries(details):
        return [{"name": d["name"], "dtype": d["dtype"].__name__,
                 "shape": [None if s < 0 else int(s) for s in d["shape_signature"]]} for d in details]
    return {"inputs": entries(it.get_input_details()), "outputs": entries(it.get_output_details())}


def float_ops(data: bytes) -> list[str]:
    """Ops of an int8 file that still compute in float32 (besides the QUANTIZE/DEQUANTIZE at its edges):
    with TFLITE_BUILTINS_INT8 the converter keeps an op with no int8 kernel (COS, CUMSUM) in float32
    between a DEQUANTIZE and a QUANTIZE instead of refusing it."""
    import numpy as np

    it = _interpreter(data)
    dtypes = {d["index"]: d["dtype"] for d in it.get_tensor_details()}
    return sorted({op["op_name"] for op in it._get_ops_details() if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")
                   and any(dtypes.get(i) == np.float32 for i in op["inputs"] if i >= 0)})


def op_count(data: bytes) -> int:
    return len(_interpreter(data)._get_ops_details())


def run(data: bytes, feeds: dict, outputs: list[str]) -> dict:
    """The LiteRT interpreter on ``feeds``; a dynamic batch is resized to the samples fed."""
    import numpy as np

    it = _interpreter(data)
    details = {d["name"]: d for d in it.get_input_details()}
    for name, value in feeds.items():
        if list(details[name]["shape"]) != list(value.shape):
            it.resize_tensor_input(details[name]["index"], list(value.shape))
    from kfreeze.quiet import captured_stderr
    with captured_stderr():  # LiteRT's 'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.'
        it.allocate_tensors()
    for name, value in feeds.items():
        it.set_tensor(details[name]["index"], np.ascontiguousarray(value, dtype=details[name]["dtype"]))
    it.invoke()
    by_name = {d["name"]: d for d in it.get_output_details()}
    order = it.get_output_details()
    return {o: np.array(it.get_tensor((by_name.get(o) or order[i])["index"])) for i, o in enumerate(outputs)}


# The registry's interface (kfreeze/targets/registry.py).

def build(graph, inputs: list[str], outputs: list[str], where: str, precision: str = "float32",
          calibration: tuple[dict, bool] | None = None) -> Sibling:
    """``calibration``: (rows, held out from verify's) from kfreeze.targets.calibration_rows, for int8."""
    rows, held_out = calibration if calibration is not None else (None, None)
    return convert(graph, inputs, outputs, precision, where, rows, held_out)


def run_folder(folder, feeds: dict, outputs: list[str], signature: dict) -> dict:
    from pathlib import Path
    return run((Path(folder) / "model.tflite").read_bytes(), feeds, outputs)


def note(metrics: dict) -> str:
    """verify's line for an int8 file: the tolerances and top-1 floor it was held to, and its calibration."""
    if metrics.get("weights") != "int8" or metrics.get("atol_used") is None:
        return ""
    top1 = ", ".join(f"{v:.3g}" for v in (metrics.get("top1_agree") or {}).values() if v is not None)
    rows = "held-out" if metrics.get("calibration_held_out") else "verify's own"
    left = metrics.get("float_ops")
    rows += f"; in float32: {', '.join(left)}" if left else ""
    return (f" (int8: atol {metrics['atol_used']:g}, rtol {metrics['rtol_used']:g}"
            + (f", top-1 agreement {top1} >= {metrics.get('top1_required'):g}" if top1 else "")
            + f"; calibrated on {metrics.get('calibration_samples')} {rows} rows)")


def usage(path, sig: dict, got: dict) -> list[str]:
    fed = ", ".join(f"'{i['name']}' {i['dtype']} {_shape(i['shape'])}" for i in sig["inputs"])
    fetched = [o["name"] for o in sig["outputs"]]
    lines = [f"TFLite (ai_edge_litert.interpreter.Interpreter(model_path='{path}'); weights {sig['weights']}, "
             "inputs NHWC):",
             f"  get_input_details(): {fed}; get_output_details(): " + ", ".join(repr(o) for o in fetched)]
    if sig.get("signature_key"):  # files built before the SignatureDef have none
        args = ", ".join(f"{i['name']}=..." for i in sig["inputs"])
        lines.append(f"  or get_signature_runner('{sig['signature_key']}')({args}) -> dict with keys "
                     + ", ".join(repr(o) for o in fetched))
    return lines


def _shape(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
