"""``opencv: true``: every numeric constant spells its values out (no implicit zeros).

A TensorProto with neither ``tensor_content`` nor any ``*_val`` entry means "all zeros"; TF
and Grappler write zeros that way (a ReLU's 0.0, a StridedSlice's begin ``[0]``). OpenCV's
importer reads the value field and asserts on an empty one
(``tf_graph_simplifier.cpp getTensorContentRef_: !field.empty()``). ``dense_constants``
covers constants of more than one element; this covers the rest: a scalar gets its one
value in its ``*_val`` field (OpenCV reads scalar axes from ``int_val``), a one-element
array gets ``tensor_content``. Same tensor for TF.
"""

from __future__ import annotations

import numpy as np

from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import copy, num_elements
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2

_FIELDS = ("float_val", "double_val", "int_val", "int64_val", "half_val", "bool_val", "uint32_val", "uint64_val")
_SKIP = {tf.string.as_datatype_enum, tf.resource.as_datatype_enum, tf.variant.as_datatype_enum}


def _empty(tensor) -> bool:
    return not tensor.tensor_content and not any(len(getattr(tensor, f)) for f in _FIELDS)


def opencv_explicit_constants(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Consts of at most one element stored with no values get them written out: a scalar in
    its typed ``*_val`` field, a one-element array in ``tensor_content``."""
    todo = [i for i, n in enumerate(graph.node) if n.op == "Const" and n.attr["value"].tensor.dtype not in _SKIP
            and num_elements(n.attr["value"].tensor) == 1 and _empty(n.attr["value"].tensor)]
    if not todo:
        return graph
    out = copy(graph)
    for i in todo:
        tensor = out.node[i].attr["value"].tensor
        shape = [d.size for d in tensor.tensor_shape.dim]
        value = np.ascontiguousarray(tf.make_ndarray(tensor)).reshape(shape)
        if value.ndim == 0:
            tensor.CopyFrom(tf.make_tensor_proto(value, dtype=tf.as_dtype(tensor.dtype), shape=[]))
            if _empty(tensor):  # make_tensor_proto may keep a zero implicit too
                field = {np.dtype(np.float32): "float_val", np.dtype(np.float64): "double_val",
                         np.dtype(np.int64): "int64_val", np.dtype(np.bool_): "bool_val"}.get(value.dtype, "int_val")
                getattr(tensor, field).append(value.item())
        else:
            tensor.tensor_content = value.tobytes()
    return out
