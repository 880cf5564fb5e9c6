"""``opencv: true``: 4-D model inputs concatenated directly get an op that states their layout.

OpenCV's importer decides whether a ``ConcatV2`` axis is an NHWC one (and maps it to NCHW)
from the layouts of the ops around it (``predictOutputDataLayout``): an op with a
``data_format`` attribute, a conv, a pooling. Two model inputs joined before any such op have
no layout, so ``Concatenate()`` (axis -1) joins them on OpenCV's last axis, the width, and the
numbers are wrong with no error. A ``BiasAdd`` of zeros with ``data_format: NHWC`` on each
input is the identity in TF and tells OpenCV the inputs are NHWC (its blobs NCHW): the concat
axis is then mapped to the channels.
"""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import copy, make_const, shape_of, static_shapes, unique_name
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2


def _feed(by_name, inp):
    """The Placeholder ``inp`` reads (directly, or through opencv_input_feed's ``Mul`` by one), or None."""
    src = by_name.get(split_tensor(inp)[0])
    if src is not None and src.op == "Mul" and src.name.endswith("/opencv_feed"):
        src = by_name.get(split_tensor(src.input[0])[0])
    return src if src is not None and src.op == "Placeholder" else None


def opencv_concat_layout(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Each float32 ``ConcatV2`` whose data inputs are all 4-D model inputs with a static channel count
    reads ``BiasAdd(input, zeros[C], data_format=NHWC)`` instead of each input."""
    by_name = {n.name: n for n in graph.node}
    shapes = None
    todo = []
    for node in graph.node:
        if node.op != "ConcatV2" or node.attr["T"].type != tf.float32.as_datatype_enum:
            continue
        data = node.input[:-1]
        if not data or any(i.startswith("^") for i in data) or any(_feed(by_name, i) is None for i in data):
            continue
        if shapes is None:
            shapes = static_shapes(graph)
        dims = [shape_of(shapes, i) for i in data]
        if any(d is None or len(d) != 4 or d[-1] is None for d in dims):
            continue
        todo.append((node.name, [int(d[-1]) for d in dims]))
    if not todo:
        return graph
    out = copy(graph)
    names = {n.name for n in out.node}
    nodes = {n.name: n for n in out.node}
    for name, channels in todo:
        node = nodes[name]
        for k, c in enumerate(channels):
            zeros = make_const(unique_name(names, f"{name}/opencv_layout_zeros_{k}"), np.zeros([c], np.float32))
            zeros.attr["value"].tensor.ClearField("float_val")
            zeros.attr["value"].tensor.tensor_content = np.zeros([c], np.float32).tobytes()
            bias = node_def_pb2.NodeDef(name=unique_name(names, f"{name}/opencv_layout_{k}"), op="BiasAdd",
                                        input=[node.input[k], zeros.name])
            bias.attr["T"].type = tf.float32.as_datatype_enum
            bias.attr["data_format"].s = b"NHWC"
            node.input[k] = bias.name
            out.node.extend([zeros, bias])
    return out
