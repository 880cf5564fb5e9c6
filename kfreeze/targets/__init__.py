"""Siblings of ``optimized.pb`` for other runtimes, one module each, listed in ``registry.REGISTRY``:
ONNX (``onnx.py``), TFLite (``tflite.py``), OpenVINO IR (``openvino.py``) and a TF SavedModel
(``saved_model.py``). docs/targets.md says how to load each and what was measured.

A model's ``targets`` (a params key, default ``[tf]``) say which are built. Each extra target is
its own DVC stage (``onnx@<name>``, ``tflite@<name>``...; ``*_tf1`` for 'graphs:' entries) that
writes the folder ``build/<name>/<target>/``:

- requested: the target's file(s) (``model.onnx``, ``model.tflite``...) and ``signature.json`` (the
  names, dtypes and shapes in the file's own layout, and the choices made: opset, layout, precision);
- not requested: only ``signature.json`` saying ``requested: false`` (a few bytes, no TensorFlow
  import). DVC's foreach cannot filter a mapping, so the stage exists for every model; its
  settings file holds only its own target (``params.Key.per_stage``), so adding ``tflite`` to a
  model reruns its tflite stage and verify, and not its onnx stage.

The converters read ``optimized.pb`` itself, so every sibling has the same cut inputs, fixed
shapes and names as the graph verify already checked. One exception: tf2onnx and the TFLite converter
cannot convert a recurrent layer's frozen while loop, so for a Keras model whose optimized.pb holds one
they read the model traced with its recurrent layers unrolled, under optimized.pb's input and output
names and shapes (``recurrent.py``; ``converted_from`` in signature.json says so). ``kfreeze.targets.check``
runs a sibling on verify's inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kfreeze import layout
from kfreeze.errors import KfreezeError
from kfreeze.quiet import quiet_stderr
from kfreeze.targets.registry import EXTRA, REGISTRY, get  # noqa: F401 (EXTRA, REGISTRY: the table)

FILES = {t.name: t.file for t in REGISTRY}
# The targets whose converters cannot convert a frozen while loop: for a Keras model with recurrent
# layers they convert the model traced unrolled (kfreeze/targets/recurrent.py).
UNROLLED = ("onnx", "tflite")
SIGNATURE = layout.SIGNATURE


@dataclass
class Sibling:
    """A converted model: its bytes and what ``signature.json`` says about them.

    ``data`` is the bytes of the target's ``file``; ``others`` the other files of a target that
    writes several ({path inside the folder: bytes}, e.g. OpenVINO's model.bin)."""
    data: bytes
    signature: dict
    others: dict = field(default_factory=dict)


def folder(out: Path, target: str) -> Path:
    """BUILD/<name>/<target>/: the target stage's one output."""
    return Path(out) / target


def model_file(out: Path, target: str) -> Path:
    return folder(out, target) / FILES[target]


def options(target: str, spec) -> dict:
    """The model keys ``target``'s conversion reads (registry ``reads``), from a model spec."""
    return {key: getattr(spec, key) for key in get(target).reads}


@quiet_stderr
def build(target: str, out: Path, where: str, calibration: tuple[Path, int] | None = None, **options) -> Sibling:
    """Convert BUILD/<name>/optimized.pb (with names.json) to ``target``; a KfreezeError names what blocks it.

    ``options``: model keys the target reads (``precision``, ``onnx_layout``...); left out, their defaults.
    ``calibration``: (verify.data's file, samples) for ``precision: int8``, read as verify reads it.
    The converters' own stderr (MLIR diagnostics, tf2onnx's log) is captured (kfreeze.quiet): one line."""
    from kfreeze import graphio
    from kfreeze.optimize.context import placeholder_name

    names = graphio.read_json(Path(out) / layout.NAMES)
    inputs = [placeholder_name(i) for i in names["inputs"]]
    graph = graphio.read_graph(Path(out) / layout.OPTIMIZED)
    from kfreeze import policy  # the converters (tf2onnx, TFLite, OpenVINO) evaluate parts of the graph
    policy.check(graph, names["outputs"], inputs, str(Path(out) / layout.OPTIMIZED))
    if calibration is not None:
        options["calibration"] = calibration_rows(graph, inputs, names["inputs"], *calibration)
    sibling_of = None
    if target in UNROLLED:  # a recurrent layer's loop: the converter reads the model unrolled (recurrent.py)
        from kfreeze.targets import recurrent
        loop = recurrent.loop_op(graph)
        if loop is not None and (Path(out) / "model" / "model.keras").is_file():
            graph = recurrent.unrolled_graph(Path(out), graph, inputs, names["outputs"], target, where)
            sibling_of = "model/model.keras traced with unroll=True (optimized.pb has a while loop)"
        elif loop is not None:  # no Keras model (a graphs: entry): the converter may still take the loop
            try:
                return get(target).load().build(graph, inputs, names["outputs"], where, **options)
            except KfreezeError as e:
                raise KfreezeError(e.where, e.problem, f"leave {target} out of targets: the openvino and "
                                   "saved_model targets convert the while loop") from None
    sibling = get(target).load().build(graph, inputs, names["outputs"], where, **options)
    if sibling_of:
        sibling.signature["converted_from"] = sibling_of
        if target == "onnx":
            from kfreeze.targets.onnx import stable_order
            sibling.data = stable_order(sibling.data)
    return sibling


def build_with_options(target: str, out: Path, where: str, calibration, options: dict) -> Sibling:
    """``build`` with the options as one dict: what ``kfreeze.child.call`` sends a child."""
    return build(target, out, where, calibration, **options)


CALIBRATION_MAX = 500  # rows of verify.data the int8 converter runs the float model on


def calibration_rows(graph, feed_names: list[str], names: list[str], path: Path, samples: int) -> dict:
    """verify.data's rows for int8 calibration, read as verify reads them: the rows after verify's first
    ``samples`` when there are any (verify then judges the file on inputs it was not calibrated on),
    else all of them; at most CALIBRATION_MAX. Measured: a regression output checked on the 16 rows it
    was calibrated on is off by 0.7% of its scale, on 1000 new rows by 41% (ranges too narrow), and
    calibrated on 1000 rows by 2.9% (docs/targets.md)."""
    from kfreeze.verify.inputs import load_data, placeholder_infos

    rows = load_data(Path(path), placeholder_infos(graph, feed_names), names, samples + CALIBRATION_MAX)
    count = len(next(iter(rows.values())))
    start = samples if count > samples else 0
    return {k: v[start:start + CALIBRATION_MAX] for k, v in rows.items()}, start > 0


def write(out: Path, target: str, sibling: Sibling | None) -> None:
    """The stage's output folder, atomically: the file and its signature, or the 'not requested' marker
    (written without kfreeze.graphio, which imports TensorFlow)."""
    import json

    from kfreeze import atomic

    signature = {"requested": False, "target": target} if sibling is None else {
        "requested": True, "target": target, "file": FILES[target], **sibling.signature}
    with atomic.directory(folder(out, target)) as tmp:
        if sibling is not None:
            (tmp / FILES[target]).write_bytes(sibling.data)
            for name, data in sorted(sibling.others.items()):
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_bytes(data)
        (tmp / SIGNATURE).write_text(json.dumps(signature, indent=2, sort_keys=True) + "\n")


def read_signature(out: Path, target: str) -> dict:
    from kfreeze import graphio
    return graphio.read_json(folder(out, target) / SIGNATURE)  # a missing file: one line naming it
