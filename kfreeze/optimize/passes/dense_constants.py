"""Non-scalar constants keep their values in tensor_content (OpenCV needs it)."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import copy, num_elements
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2


_REPEATED_FIELDS = ("float_val", "double_val", "int_val", "int64_val", "half_val", "bool_val",
                    "uint32_val", "uint64_val", "scomplex_val", "dcomplex_val")


def dense_constants(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Every numeric constant with more than one element keeps its values in ``tensor_content``.

    Grappler stores a constant whose elements are all equal as one repeated
    value; TF expands it on load, but OpenCV's importer asserts on it
    (``getTensorContentRef_: !field.empty()``, EfficientNet). Scalars stay as they
    are: OpenCV reads scalar axes from ``int_val`` (DenseNet's concat axis).
    Same values, same TF graph.
    """
    todo = [i for i, n in enumerate(graph.node) if n.op == "Const" and not n.attr["value"].tensor.tensor_content
            and num_elements(n.attr["value"].tensor) > 1
            and n.attr["value"].tensor.dtype not in (tf.string.as_datatype_enum, tf.resource.as_datatype_enum,
                                                       tf.variant.as_datatype_enum)]
    if not todo:
        return graph
    out = copy(graph)
    for i in todo:
        tensor = out.node[i].attr["value"].tensor
        value = np.ascontiguousarray(tf.make_ndarray(tensor))
        for f in _REPEATED_FIELDS:
            tensor.ClearField(f)
        tensor.tensor_content = value.tobytes()
    return out
