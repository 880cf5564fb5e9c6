"""``precision: float16``: weights stored as float16, cast back to float32 where they are read.

The graph computes in float32 as before; only the stored weights lose precision
(float16 has an 11-bit significand: relative error <= 2**-11 per weight), and
the file is about half the size. Small constants (shapes, axes, biases below
``MIN_ELEMENTS``) stay float32: they cost nothing and each Cast is one more op.
"""

from __future__ import annotations

import numpy as np

from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import num_elements, unique_name
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2

MIN_ELEMENTS = 1024
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def float16_weights(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``W`` (float32 Const, >= MIN_ELEMENTS) becomes ``W/float16`` (float16 Const) + ``W = Cast(W/float16)``.

    The Cast keeps the constant's name, so every consumer is unchanged. A weight
    with values beyond float16's range (65504) stays float32. ``PASSES`` runs it only with
    ``Context(precision="float16")``.
    """
    out = graph_pb2.GraphDef()
    out.versions.CopyFrom(graph.versions)
    out.library.CopyFrom(graph.library)
    names = {n.name for n in graph.node}
    f32 = tf.float32.as_datatype_enum
    for node in graph.node:
        tensor = node.attr["value"].tensor if node.op == "Const" else None
        if tensor is None or tensor.dtype != f32 or node.name in ctx.output_nodes:
            out.node.add().CopyFrom(node)
            continue
        if num_elements(tensor) < MIN_ELEMENTS:
            out.node.add().CopyFrom(node)
            continue
        value = tf.make_ndarray(tensor)
        if not np.isfinite(value).all() or np.abs(value).max() > _FLOAT16_MAX:
            out.node.add().CopyFrom(node)
            continue
        half_name = unique_name(names, f"{node.name}/float16")
        half = out.node.add()
        half.name, half.op = half_name, "Const"
        half.attr["dtype"].type = tf.float16.as_datatype_enum
        half.input.extend(i for i in node.input if i.startswith("^"))  # a weight inside a while loop stays in its frame
        half.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value.astype(np.float16)))
        cast = out.node.add()
        cast.CopyFrom(node_def_pb2.NodeDef(name=node.name, op="Cast", input=[half_name]))
        cast.attr["SrcT"].type = tf.float16.as_datatype_enum
        cast.attr["DstT"].type = f32
        cast.attr["Truncate"].b = False
    return out
