"""``opencv: true``: an input that an ExpandDims or a two-tensor Mul reads directly gets a ``Mul(x, 1)``.

OpenCV's TF importer asks the network for the shape of a tensor it parses
``ExpandDims`` and a ``Mul``/``RealDiv`` of two tensors on
(``dstNet.getLayerShapes`` in ``parseExpandDims`` / ``parseMul``). For the network's
input layer that query fails (``layer_internals.hpp: inputs.size() == requiredOutputs``):
Keras' Conv1D, pooling 1D, UpSampling1D and a Multiply of two inputs all start this way.
One layer in between (a ``Power`` layer, scale 1) answers it. TF's tools have no reason
to add an op that does nothing, and Grappler's arithmetic pass removes exactly this one:
so the pass runs after Grappler.
"""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import consumers, copy, const_values, make_const, unique_name
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2

SHAPE_QUERIES = ("ExpandDims",)
TWO_TENSOR = ("Mul", "RealDiv")


def _queries_shape(node, consts) -> bool:
    if node.op in SHAPE_QUERIES:
        return True
    return node.op in TWO_TENSOR and not any(split_tensor(i)[0] in consts for i in node.input)


def opencv_input_feed(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Every float Placeholder read (port 0) by an ExpandDims, or a Mul/RealDiv with no constant
    operand, is read there through a new ``Mul(placeholder, 1.0)``. Same numbers in TF."""
    consts = const_values(graph)
    users = consumers(graph)
    todo = []
    for node in graph.node:
        if node.op != "Placeholder" or node.attr["dtype"].type != tf.float32.as_datatype_enum:
            continue
        readers = [(u, i) for u, i in users.get(node.name, [])
                   if not u.input[i].startswith("^") and split_tensor(u.input[i])[1] == 0 and _queries_shape(u, consts)]
        if readers:
            todo.append(node.name)
    if not todo:
        return graph
    out = copy(graph)
    names = {n.name for n in out.node}
    users = consumers(out)
    consts = const_values(out)
    for name in todo:
        one = make_const(unique_name(names, f"{name}/opencv_feed/one"), np.float32(1.0))
        feed = out.node.add(op="Mul", name=unique_name(names, f"{name}/opencv_feed"), input=[name, one.name])
        feed.attr["T"].type = tf.float32.as_datatype_enum
        out.node.append(one)
        for user, i in users.get(name, []):
            if not user.input[i].startswith("^") and split_tensor(user.input[i])[1] == 0 and _queries_shape(user, consts):
                user.input[i] = feed.name
    return out
