"""optimized.pb -> OpenVINO IR (model.xml + model.bin) with ``openvino.convert_model``; run in its CPU plugin.

- The GraphDef goes to OpenVINO's TensorFlow frontend as a ``.pb`` file (written to a temporary folder)
  with the placeholders as inputs, so the IR has optimized.pb's cut, shapes (a dynamic batch stays
  dynamic: ``?``) and dtypes. A file, not the GraphDef object: given the object, ``convert_model`` fails
  on a recurrent layer's frozen while loop ("Model references undeclared parameters": the loop body's
  kernel, recurrent kernel and bias), given the same graph as a file it converts it (measured on a Keras
  LSTM's optimized.pb, fixed or dynamic time; OpenVINO 2026.4.1). Its input
  and output tensors are renamed to optimized.pb's names without ``:0`` (``image``, ``probs``).
- An output that other nodes also read (a feature map that is also the next layer's input) is not
  a model output to the frontend ("not found among model outputs"): it is fetched through an added
  ``Identity``, as for ONNX (``onnx.separate_outputs``).
- ``openvino.save_model(..., compress_to_fp16=False)``: float32 weights unless ``precision:
  float16`` (then float16 weights in model.bin, decompressed to float32 by the plugin).
- Same graph, same bytes: the frontend names the nodes it makes ``<Type>_<N>`` from a process-wide
  counter (``Constant_14`` in one process, ``Constant_2973`` after another conversion); those names
  are renumbered here in the model's topological order.
- Verified with ``{"INFERENCE_PRECISION_HINT": "f32"}``: the CPU plugin computes in bfloat16 by
  default on CPUs with avx512_bf16 (relative errors 0.06-0.16 measured), which no float32 tolerance
  accepts. A user loading model.xml should pass the same hint for float32 results.
"""

from __future__ import annotations

import re
from pathlib import Path

from kfreeze.errors import KfreezeError
from kfreeze.targets import Sibling

XML, BIN = "model.xml", "model.bin"
CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}  # verify's run: float32, one thread
_GENERATED = re.compile(r"^(.*)_(\d+)$")


def _tensor(name: str) -> str:
    return name if ":" in name else f"{name}:0"


def _number_generated_names(model, graph_names: set[str]) -> None:
    """Friendly names the frontend made up (``Type_N``, not a node of optimized.pb) numbered by position."""
    for number, op in enumerate(model.get_ordered_ops()):
        name = op.get_friendly_name()
        match = _GENERATED.match(name)
        if match and name not in graph_names:
            op.set_friendly_name(f"{match.group(1)}_{number}")


def convert(graph, inputs: list[str], outputs: list[str], precision: str, where: str) -> Sibling:
    """``graph`` (optimized.pb) with placeholders ``inputs`` and fetches ``outputs`` as OpenVINO IR."""
    import tempfile
    from importlib.metadata import version

    import openvino as ov

    from kfreeze.targets.onnx import graph_tensors, separate_outputs

    graph, fetch = separate_outputs(graph, graph_tensors(graph, outputs))
    try:
        with tempfile.TemporaryDirectory() as tmp:  # from a file: see the module docstring (while loops)
            (Path(tmp) / "graph.pb").write_bytes(graph.SerializeToString(deterministic=True))
            model = ov.convert_model(str(Path(tmp) / "graph.pb"), input=[_tensor(i) for i in inputs])
        results = [model.output(_tensor(fetch.get(o, o))).get_node() for o in outputs]
        parameters = [model.input(_tensor(i)).get_node() for i in inputs]
    except Exception as e:  # the frontend raises plain exceptions naming the op or tensor
        raise KfreezeError(where, f"OpenVINO {ov.__version__} cannot convert the graph: "
                           f"{' '.join(str(e).split())[:300]}", "leave openvino out of targets") from None
    model = ov.Model(results, parameters, "model")
    for port, name in [*zip(model.inputs, inputs), *zip(model.outputs, outputs)]:
        port.get_tensor().set_names({name})
    _number_generated_names(model, {n.name for n in graph.node})
    with tempfile.TemporaryDirectory() as tmp:
        ov.save_model(model, Path(tmp) / XML, compress_to_fp16=precision == "float16")
        xml, weights = (Path(tmp) / XML).read_bytes(), (Path(tmp) / BIN).read_bytes()
    return Sibling(xml, {"converter": f"openvino.convert_model (OpenVINO {ov.__version__})",
                         "openvino": version("openvino"), "weights": precision,
                         "inference_precision_hint": CONFIG["INFERENCE_PRECISION_HINT"],
                         "layout": "NHWC (as optimized.pb)", "other_files": [BIN],
                         "runtime": "openvino.Core().compile_model(path, 'CPU', "
                                    "{'INFERENCE_PRECISION_HINT': 'f32'})",
                         **io_signature(model)}, {BIN: weights})


def io_signature(model) -> dict:
    """Inputs and outputs as the IR declares them (None = dynamic)."""
    def entries(ports):
        return [{"name": p.get_any_name(), "dtype": p.get_element_type().to_dtype().name,
                 "shape": [d.get_length() if d.is_static else None for d in p.get_partial_shape()]}
                for p in ports]
    return {"inputs": entries(model.inputs), "outputs": entries(model.outputs)}


def op_count(data: bytes) -> int:
    """Layers in model.xml, without the Parameter, Result and Const layers (which are not computations)."""
    import xml.etree.ElementTree as ET

    layers = ET.fromstring(data).find("layers")
    return sum(1 for layer in layers if layer.get("type") not in ("Parameter", "Result", "Const"))


def run_folder(folder, feeds: dict, outputs: list[str], signature: dict) -> dict:
    """OpenVINO's CPU plugin, float32 (``CONFIG``), on ``feeds``; a dynamic batch takes the samples fed."""
    import numpy as np
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(Path(folder) / XML), "CPU", CONFIG)
    result = compiled({name: np.ascontiguousarray(value) for name, value in feeds.items()})
    return {o: np.array(result[compiled.output(o)]) for o in outputs}


# The registry's interface (kfreeze/targets/registry.py).

def build(graph, inputs: list[str], outputs: list[str], where: str, precision: str = "float32") -> Sibling:
    return convert(graph, inputs, outputs, precision, where)


def usage(path, sig: dict, got: dict) -> list[str]:
    fed = ", ".join(f"'{i['name']}': {i['dtype']} {_shape(i['shape'])}" for i in sig["inputs"])
    fetched = ", ".join(repr(o["name"]) for o in sig["outputs"])
    return [f"OpenVINO {sig['openvino']} (model = openvino.Core().compile_model('{path}', 'CPU', "
            f"{{'INFERENCE_PRECISION_HINT': 'f32'}}); weights {sig['weights']}, inputs NHWC):",
            f"  model({{{fed}}})[<output>] for outputs {fetched}"]


def _shape(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
