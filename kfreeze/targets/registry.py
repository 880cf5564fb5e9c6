"""The targets table: one entry per runtime a model can be built for besides TensorFlow.

Adding a target is one module in kfreeze/targets/ and one line in ``REGISTRY``; params' ``targets``
values, the target stages' settings (``params.Key.stages``), the stage commands, verify's runs,
``kfreeze run``'s usage lines and ``kfreeze diff`` all read this table, and so does the stage table
(kfreeze/layout.py) that dvc.yaml is generated from.

A target module provides:

- ``build(graph, inputs, outputs, where, **options) -> Sibling``: optimized.pb (a GraphDef with
  placeholders ``inputs`` and fetches ``outputs``) converted; ``options`` are the model keys named in
  the entry's ``reads`` (e.g. ``precision``). A KfreezeError says what blocks the conversion.
- ``run_folder(folder, feeds, outputs, signature) -> {output: array}``: the built folder run in the
  target's runtime on NHWC ``feeds`` (verify's inputs), outputs in optimized.pb's layout.
- ``op_count(data) -> int``: the number of operations, from the bytes of the entry's ``file``.
- ``usage(path, signature) -> [lines]``: how to load and call it (``kfreeze run`` prints them).
- optionally ``extra_check(path, feeds, reference, probability, batch, signature) -> dict`` (metrics
  recorded beside the verdict, which do not decide it) and ``note(metrics) -> str`` (appended to
  verify's line for the target).

This module imports nothing heavy: params.py reads it to validate ``targets``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str  # the value in params 'targets', the stage name, the folder build/<name>/<target>/
    module: str  # the module providing build, run_folder, op_count, usage
    file: str  # the file in the folder that verify names and 'kfreeze diff' counts ops in
    runtime: str  # what verify runs it in, for its progress and failure lines
    reads: tuple[str, ...] = ()  # model keys the target's stage reads besides 'targets'
    keras_model: bool = False  # its Keras stage also reads build/<name>/model (recurrent models, unrolled)

    def load(self):
        return importlib.import_module(self.module)


REGISTRY: tuple[Target, ...] = (
    Target("onnx", "kfreeze.targets.onnx", "model.onnx", "ONNX Runtime", ("onnx_layout",), keras_model=True),
    Target("tflite", "kfreeze.targets.tflite", "model.tflite", "the LiteRT interpreter", ("precision",),
           keras_model=True),
    Target("openvino", "kfreeze.targets.openvino", "model.xml", "OpenVINO's CPU plugin", ("precision",)),
    Target("saved_model", "kfreeze.targets.saved_model", "saved_model.pb", "TensorFlow (tf.saved_model.load)"),
)

BY_NAME = {t.name: t for t in REGISTRY}
EXTRA = tuple(BY_NAME)  # in canonical order: the order params writes 'targets' in


def get(name: str) -> Target:
    return BY_NAME[name]


def stages_reading(key: str, suffix: str = "") -> tuple[str, ...]:
    """The target stages (``onnx``, ``tflite_tf1``...) that read model key ``key`` (params.Key.stages)."""
    return tuple(t.name + suffix for t in REGISTRY if key == "targets" or key in t.reads)


def is_target_stage(stage: str) -> bool:
    return stage.removesuffix("_tf1") in BY_NAME
