"""Plan the channels_first -> channels_last rewrite of a model, layer by layer.

Hand-written: neither tf_keras nor Keras 3 can change a built model's data format
(Keras 2's ``convert_dense_weights_data_format`` covered only the Dense rows, and
Keras 3 has none of it). The plan follows every tensor through the graph and
knows, for each, whether the converted model holds it transposed. A layer that
meets a transposed tensor and is not in the tables below is an error: an
unmapped layer would compute on the wrong axis without any failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kfreeze.errors import KfreezeError

PLAIN, CF, FLAT = "plain", "channels_first", "flat"

# Layers with a data_format argument whose output keeps the spatial layout.
SPATIAL = {
    "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
    "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "UpSampling2D", "UpSampling3D", "ZeroPadding2D", "ZeroPadding3D", "Cropping2D", "Cropping3D",
    "SpatialDropout2D", "SpatialDropout3D",
}
GLOBAL = {"GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
          "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D"}
# Layers whose data_format is no layout of the model: Flatten's only orders its output, a global
# pooling's only picks the axis it pools (the keras.io timeseries transformer pools a channels_last
# model's time axis with GlobalAveragePooling1D(data_format="channels_first")).
NO_LAYOUT = {"Flatten", *GLOBAL}
# Same value at the same position whatever the layout (no axis, no per-position weights).
ELEMENTWISE = {"Activation", "ReLU", "LeakyReLU", "ELU", "ThresholdedReLU", "Dropout", "GaussianNoise",
               "GaussianDropout", "AlphaDropout", "ActivityRegularization",
               "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}
AXIS = {"BatchNormalization", "Concatenate", "Softmax"}
LAST_AXIS_ACTIVATIONS = ("softmax", "log_softmax")


@dataclass(frozen=True)
class Tensor:
    """How the converted model holds a source tensor: as is, transposed, or flattened from (c, *spatial)."""
    kind: str
    flat_from: tuple = ()


@dataclass
class Plan:
    converted: bool
    inputs: list[bool]               # per model input: fed channels_last instead of channels_first
    outputs: list[bool]              # per model output: comes out channels_last
    edits: dict[str, dict] = field(default_factory=dict)        # layer -> config keys to set
    dense_rows: dict[str, tuple] = field(default_factory=dict)  # Dense layer -> (c, *spatial) of its rows


def cl_axis(axis: int, rank: int) -> int:
    """Where axis ``axis`` of a rank-``rank`` channels_first tensor goes in channels_last."""
    a = axis % rank
    return a if a == 0 else rank - 1 if a == 1 else a - 1


def cl_perm(rank: int) -> list[int]:
    """``np.transpose(x_cf, cl_perm(x.ndim))`` is the channels_last tensor."""
    return [0, *range(2, rank), 1]


def cl_permute_dims(dims: list[int]) -> list[int]:
    """Permute(dims) on channels_first data, rewritten for channels_last input and output."""
    perm = [0, *dims]
    to_cl = cl_perm(len(perm))
    from_cl = list(np.argsort(to_cl))
    composed = [from_cl[perm[i]] for i in to_cl]
    return [int(d) for d in composed[1:]]


def dense_rows_to_cl(kernel: np.ndarray, flat_from: tuple) -> np.ndarray:
    """Reorder a Dense kernel's rows from (c, *spatial) flattening to (*spatial, c) flattening."""
    units = kernel.shape[-1]
    return np.moveaxis(kernel.reshape(*flat_from, units), 0, -2).reshape(-1, units)


def _flat(shape: tuple) -> Tensor:
    """A flattened channels_first tensor; plain when the reorder is the identity (c or spatial size 1)."""
    c, spatial = shape[0], int(np.prod(shape[1:]))
    return Tensor(PLAIN) if c == 1 or spatial == 1 else Tensor(FLAT, tuple(shape))


def _shapes(shape) -> list[tuple]:
    return [tuple(s) for s in shape] if isinstance(shape, list) and shape and isinstance(shape[0], (tuple, list)) \
        else [tuple(shape)]


class _Unmappable(Exception):
    pass


def decide(cls: str, cfg: dict, ins: list[Tensor], in_shapes: list[tuple], out_shape: tuple) -> tuple[Tensor, dict, tuple]:
    """(output tensor, config edits, Dense row source shape) for one call of a layer."""
    kinds = {t.kind for t in ins}
    if kinds == {PLAIN} and (cfg.get("data_format") != "channels_first" or cls in GLOBAL):
        return Tensor(PLAIN), {}, ()  # a global pooling of a plain tensor pools the axis it names, as before
    if cls == "Flatten":
        return _flatten(cfg, ins[0], in_shapes[0])
    if cls in SPATIAL or cls in GLOBAL:
        if kinds != {CF} or cfg.get("data_format") != "channels_first":
            raise _Unmappable(f"has data_format={cfg.get('data_format')} but its input is "
                              f"{'/'.join(sorted(kinds))}")
        if cfg.get("activation") in LAST_AXIS_ACTIVATIONS:
            raise _Unmappable(f"applies {cfg['activation']} over the last axis, which is spatial in channels_first")
        keeps = cls in SPATIAL or cfg.get("keepdims")
        return Tensor(CF if keeps else PLAIN), {"data_format": "channels_last"}, ()
    if len(kinds) > 1 or len({t.flat_from for t in ins}) > 1:
        raise _Unmappable(f"mixes inputs of different layouts ({', '.join(sorted(kinds))})")
    kind = ins[0].kind
    if cls in ELEMENTWISE:
        if cfg.get("activation") in LAST_AXIS_ACTIVATIONS and kind == CF:
            raise _Unmappable(f"applies {cfg['activation']} over the last axis, which is spatial in channels_first")
        return ins[0], {}, ()
    if cls == "Dense" and kind == FLAT:
        return Tensor(PLAIN), {}, ins[0].flat_from
    if kind == CF and cls in AXIS:
        return ins[0], {"axis": _map_axis(cfg["axis"], len(in_shapes[0]))}, ()
    if kind == CF and cls == "Reshape":
        return _reshape(in_shapes[0], out_shape)
    if kind == CF and cls == "Permute":
        return ins[0], {"dims": cl_permute_dims(list(cfg["dims"]))}, ()
    raise _Unmappable(f"has no known channels_last mapping for a {kind} input")


def _map_axis(axis, rank: int):
    return [cl_axis(a, rank) for a in axis] if isinstance(axis, (list, tuple)) else cl_axis(axis, rank)


def _flatten(cfg: dict, inp: Tensor, shape: tuple) -> tuple[Tensor, dict, tuple]:
    if inp.kind != CF:
        return inp, {}, ()
    if cfg.get("data_format") == "channels_first":  # tf_keras transposes before flattening already
        return Tensor(PLAIN), {"data_format": "channels_last"}, ()
    return _flat(shape[1:]), {}, ()


def _reshape(in_shape: tuple, out_shape: tuple) -> tuple[Tensor, dict, tuple]:
    """Exact only when flattening, or when the channel axis stays first and only spatial axes change."""
    src, target = in_shape[1:], out_shape[1:]
    if len(target) == 1:
        return _flat(src), {}, ()
    if target[0] == src[0]:
        return Tensor(CF), {"target_shape": [*target[1:], target[0]]}, ()
    raise _Unmappable(f"reshapes {list(src)} to {list(target)}, which moves data across the channel axis")


def _nodes(config: dict) -> list[tuple[dict, int, list[tuple]]]:
    """(layer config, node index, inbound (layer, node, tensor) refs) for every layer call."""
    layers = config["config"]["layers"]
    if config["class_name"] == "Sequential":
        return [(l, 0, [] if i == 0 else [(layers[i - 1]["config"]["name"], 0, 0)]) for i, l in enumerate(layers)]
    return [(l, n, [tuple(ref[:3]) for ref in node]) for l in layers
            for n, node in enumerate(l.get("inbound_nodes") or [[]])]


def _ends(config: dict, key: str) -> list[tuple]:
    layers = config["config"]["layers"]
    if config["class_name"] == "Sequential":
        return [(layers[0 if key == "input_layers" else -1]["config"]["name"], 0, 0)]
    refs = config["config"][key]
    return [tuple(r[:3]) for r in (refs if isinstance(refs[0], list) else [refs])]


def analyse(model, config: dict, where) -> Plan:
    """Follow each tensor of the tf_keras ``model`` (built from ``config``) and plan the rewrite."""
    inputs, outputs = _ends(config, "input_layers"), _ends(config, "output_layers")
    if not any(getattr(l, "data_format", None) == "channels_first" for l in model.layers
               if type(l).__name__ not in NO_LAYOUT):
        return Plan(False, [False] * len(inputs), [False] * len(outputs))
    plan = Plan(True, [], [])
    known: dict[tuple, Tensor] = {}
    by_name = {l["config"]["name"]: l["config"] for l in config["config"]["layers"]}
    for ref in inputs:
        shape = by_name[ref[0]]["batch_input_shape"]  # config, not model: tf_keras hides Sequential's input
        known[ref] = Tensor(CF if len(shape) >= 3 else PLAIN)
        if len(shape) >= 3:
            _record(plan.edits, ref[0], {"batch_input_shape": [shape[i] for i in cl_perm(len(shape))]}, where)
    pending = [n for n in _nodes(config) if n[0]["class_name"] != "InputLayer"]
    while pending:
        ready = [n for n in pending if all(r in known for r in n[2])]
        if not ready:
            raise KfreezeError(where, f"layer '{pending[0][0]['config']['name']}' has inputs that are never computed",
                               "check the architecture file")
        for node in ready:
            pending.remove(node)
            _visit(model, node, known, plan, where)
    for ref in outputs:
        if known[ref].kind == FLAT:
            raise KfreezeError(where, f"output '{ref[0]}' is a flattened channels_first tensor whose element order "
                               "changes with the layout", "end the model with a Dense layer, or keep channels_first")
    plan.inputs = [known[r].kind == CF for r in inputs]
    plan.outputs = [known[r].kind == CF for r in outputs]
    return plan


def _visit(model, node, known: dict, plan: Plan, where) -> None:
    layer_cfg, index, refs = node
    name, cls = layer_cfg["config"]["name"], layer_cfg["class_name"]
    layer = model.get_layer(name)
    try:
        out, edits, rows = decide(cls, layer_cfg["config"], [known[r] for r in refs],
                                  _shapes(layer.get_input_shape_at(index)), _shapes(layer.get_output_shape_at(index))[0])
    except _Unmappable as e:
        raise KfreezeError(where, f"layer '{name}' ({cls}) {e}",
                           "kfreeze cannot convert it to channels_last exactly; keep the model channels_first "
                           "or replace the layer") from None
    _record(plan.edits, name, edits, where)
    if rows:
        _record(plan.dense_rows, name, rows, where)
    for t in range(len(_shapes(layer.get_output_shape_at(index)))):
        known[(name, index, t)] = out


def _record(table: dict, name: str, value, where) -> None:
    """A shared layer must get the same rewrite at every call, or it cannot be one layer."""
    if not value:
        return
    if table.setdefault(name, value) != value:
        raise KfreezeError(where, f"layer '{name}' is shared between tensors that need different rewrites",
                           "kfreeze cannot convert it exactly")
