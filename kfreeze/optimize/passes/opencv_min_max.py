"""``opencv: true``: ``Maximum`` and ``Minimum`` become ``ClipByValue`` or ``Relu`` arithmetic.

OpenCV's TF importer has no parser for ``Maximum``/``Minimum`` (``Can't create layer ... of
type "Maximum"``) except inside its LeakyRelu pattern. Keras emits them for ``ReLU(max_value)``,
``UnitNormalization`` (a floor on the norm), and the ``Maximum``/``Minimum`` merge layers.
With a scalar constant operand the op is a one-sided ``ClipByValue`` (which OpenCV imports as
its Clip layer); between two tensors of one shape it is ``max(a, b) = Relu(a - b) + b`` and
``min(a, b) = a - Relu(a - b)`` (Sub, Relu and Add are all layers OpenCV has). TF's tools keep
the ops they are given: the rewrite is only for OpenCV, and rounds at most one ulp of ``b``.
"""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import const_values, copy, make_const, shape_of, static_shapes, unique_name
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2

BIG = np.float32(np.finfo(np.float32).max)


def _scalar(consts, tensor):
    name, port = split_tensor(tensor)
    if port or name not in consts:
        return None
    value = np.asarray(consts[name])
    return value.reshape(()) if value.size == 1 and value.dtype == np.float32 else None


def opencv_min_max(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """float32 ``Maximum(x, c)`` -> ``ClipByValue(x, c, FLT_MAX)``, ``Minimum(x, c)`` ->
    ``ClipByValue(x, -FLT_MAX, c)`` (``c`` a scalar, or one-element, constant); ``Maximum(a, b)``
    and ``Minimum(a, b)`` of two same-shape tensors -> Relu arithmetic. The result keeps the
    node's name. Broadcasting between two tensors is left as it is."""
    todo = [n.name for n in graph.node if n.op in ("Maximum", "Minimum")
            and n.attr["T"].type == tf.float32.as_datatype_enum]
    if not todo:
        return graph
    out = copy(graph)
    consts = const_values(out)
    names = {n.name for n in out.node}
    by_name = {n.name: n for n in out.node}
    shapes = None
    added = []
    for name in todo:
        node = by_name[name]
        is_max = node.op == "Maximum"
        a, b = node.input[0], node.input[1]
        ca, cb = _scalar(consts, a), _scalar(consts, b)
        if ca is not None or cb is not None:
            x, c = (b, ca) if ca is not None else (a, cb)
            lo = make_const(unique_name(names, f"{name}/opencv_lo"), c if is_max else -BIG)
            hi = make_const(unique_name(names, f"{name}/opencv_hi"), BIG if is_max else c)
            added += [lo, hi]
            _retype(node, "ClipByValue", [x, lo.name, hi.name])
            continue
        if is_max and _leaky_relu(by_name, consts, a, b):
            continue  # OpenCV's own LeakyRelu pattern: Maximum(Mul(alpha, x), x)
        if shapes is None:
            shapes = static_shapes(graph)
        sa, sb = shape_of(shapes, a), shape_of(shapes, b)
        if sa is None or sa != sb or None in sa:
            continue
        diff = node_def_pb2.NodeDef(name=unique_name(names, f"{name}/opencv_diff"), op="Sub", input=[a, b])
        relu = node_def_pb2.NodeDef(name=unique_name(names, f"{name}/opencv_relu"), op="Relu", input=[diff.name])
        for n in (diff, relu):
            n.attr["T"].type = tf.float32.as_datatype_enum
        added += [diff, relu]
        _retype(node, "AddV2" if is_max else "Sub", [relu.name, b] if is_max else [a, relu.name])
        if is_max:
            node.op = "Add"  # opencv_compat has already run: OpenCV before 4.5 knows only Add
    out.node.extend(added)
    return out


def _leaky_relu(by_name, consts, a: str, b: str) -> bool:
    for mul_in, x in ((a, b), (b, a)):
        mul = by_name.get(split_tensor(mul_in)[0])
        if mul is not None and mul.op == "Mul" and x in mul.input and \
                any(_scalar(consts, i) is not None for i in mul.input):
            return True
    return False


def _retype(node, op: str, inputs: list[str]) -> None:
    dtype = node.attr["T"].type
    control = [i for i in node.input if i.startswith("^")]
    node.op = op
    node.ClearField("attr")
    node.attr["T"].type = dtype
    node.input[:] = inputs + control
