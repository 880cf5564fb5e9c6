"""From a params entry to what the stages need: node names, input shapes and dtypes, the unfrozen graph.

Every error names the key as the user wrote it (``spec.where``), so the user knows what to edit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from kfreeze import layout
from kfreeze.errors import KfreezeError, warn as _warn
from kfreeze.params import ModelSpec


def graph_and_checkpoint(spec: ModelSpec, out: Path):
    """(graph, checkpoint, graph path): export's for 'models:' entries, the user's own for 'graphs:'
    (checkpoint None for a graph given frozen)."""
    from kfreeze import graphio

    if spec.is_keras:
        return graphio.read_graph(out / layout.GRAPH), out / "ckpt", out / layout.GRAPH
    checkpoint = Path(spec.checkpoint) if spec.checkpoint is not None else None  # None: a frozen graph
    return graphio.read_graph(spec.graph), checkpoint, Path(spec.graph)


def resolve_names(spec: ModelSpec, out: Path, graph,
                  warn: Callable[[str], None] = _warn) -> tuple[list[str], list[str]]:
    """The configured node names; when empty, the Keras names or the top discovered candidates."""
    from kfreeze import graphio
    from kfreeze import nodes as nodes_lib

    if spec.is_keras:
        signature = graphio.read_json(out / layout.SIGNATURE)
        return (spec.inputs or [i["name"] for i in signature["inputs"]],
                spec.outputs or [o["name"] for o in signature["outputs"]])
    inputs, outputs = list(spec.inputs), list(spec.outputs)
    if not inputs or not outputs:
        found_in, found_out = nodes_lib.discover(graph)
        for key, chosen, found in (("inputs", inputs, found_in), ("outputs", outputs, found_out)):
            if not chosen:
                if not found and key == "inputs" and not any(n.op in nodes_lib.INPUT_OPS for n in graph.node):
                    # nothing to feed: the graph computes from its constants and variables alone
                    warn(f"{spec.name}: the graph has no inputs (no placeholder); it is run with nothing fed")
                    continue
                if not found:
                    raise KfreezeError(spec.where(key), f"no likely {key} found in {spec.graph}",
                                       f"set {key} explicitly ('kfreeze nodes {spec.graph}' lists the nodes)")
                chosen.append(found[0].name)
                warn(f"{spec.name}: {key} not set; using the top candidate '{found[0].name}' "
                     f"({found[0].op}); {spec.setting(key, '[...]')} to choose another")
    return inputs, outputs


def resolve_shapes(spec: ModelSpec, inputs: list[str]) -> list[Optional[tuple]]:
    """input_shape: null, one shape for a single input ([] for a scalar), a list of shapes, or {input: shape}."""
    raw = spec.input_shape
    at = spec.where("input_shape")
    if raw is None:
        return [None] * len(inputs)
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - set(inputs))
        if unknown:
            raise KfreezeError(at, f"names {unknown} are not inputs", f"inputs are {inputs}")
        shapes = [raw.get(i) for i in inputs]
    elif raw == [] and len(inputs) == 1:
        shapes = [raw]  # one scalar (rank-0) input
    elif raw and all(isinstance(d, (int, type(None))) for d in raw):
        if len(inputs) != 1:
            raise KfreezeError(at, f"one shape given for {len(inputs)} inputs",
                               "give a list of shapes in input order, or a mapping {input: shape}")
        shapes = [raw]
    elif all(isinstance(s, list) for s in raw) and len(raw) == len(inputs):
        shapes = raw
    else:
        raise KfreezeError(at, f"cannot read {raw!r} as shapes for inputs {inputs}",
                           "e.g. [1, 20, 20, 1], or [[1, 16, 16, 3], [1, 8]] for two inputs")
    for shape in shapes:
        if shape is not None and not all(isinstance(d, int) and (d > 0 or d == -1) or d is None for d in shape):
            raise KfreezeError(at, f"{shape!r} is not a shape", "use positive integers, -1 or null for dynamic")
    return [tuple(s) if s is not None else None for s in shapes]


def resolve_dtypes(spec: ModelSpec, inputs: list[str]) -> list[Optional[str]]:
    """input_dtype: null (the tensor's own), one dtype for every input, or one per input.
    Keras entries have no input_dtype: their inputs keep the model's own."""
    from kfreeze.tfenv import tf

    raw = spec.input_dtype
    at = spec.where("input_dtype")
    dtypes = [raw] * len(inputs) if raw is None or isinstance(raw, str) else list(raw)
    if len(dtypes) != len(inputs):
        raise KfreezeError(at, f"{len(dtypes)} dtypes for {len(inputs)} inputs", "give one dtype per input")
    for dtype in dtypes:
        if dtype is None:
            continue
        try:
            tf.as_dtype(dtype)
        except TypeError:
            raise KfreezeError(at, f"'{dtype}' is not a TensorFlow dtype",
                               "use e.g. float32, float16, uint8 or int32") from None
    return dtypes
