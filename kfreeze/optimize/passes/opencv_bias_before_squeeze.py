"""``opencv: true``: ``BiasAdd(Squeeze(conv))`` becomes ``Squeeze(BiasAdd(conv))``.

Keras' Conv1D (and its depthwise, separable and transposed kinds) is a Conv2D over a unit
axis: ``ExpandDims -> Conv2D -> Squeeze -> BiasAdd``. OpenCV's importer folds a bias into
a convolution only when the ``BiasAdd`` reads the conv itself (``parseConvolution`` looks
for a BiasAdd consumer); after the Squeeze it is a separate layer on a 3-D blob, which
OpenCV's NCHW bookkeeping gets wrong (``shape_utils.hpp: end <= dims``). Adding the bias
over the last axis before or after dropping a unit axis that is not the last is the same
sum; TF's tools keep the order Keras wrote.
"""

from __future__ import annotations

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import consumers, copy, static_shapes, shape_of
from tensorflow.core.framework import graph_pb2

CONVS = ("Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput")


def opencv_bias_before_squeeze(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``BiasAdd(Squeeze(c, dims), b)``, with ``c`` a conv that only the Squeeze reads and no squeezed
    dim the last one, becomes ``Squeeze(BiasAdd(c, b), dims)``; each node keeps its name (so an
    output keeps its name), only the ops swap places."""
    by_name = {n.name: n for n in graph.node}
    users = consumers(graph)
    pairs = []
    shapes = None
    for node in graph.node:
        if node.op != "BiasAdd" or node.attr["data_format"].s not in (b"", b"NHWC"):
            continue
        sq_name, port = split_tensor(node.input[0])
        squeeze = by_name.get(sq_name)
        if squeeze is None or squeeze.op != "Squeeze" or port or len(users.get(sq_name, [])) != 1:
            continue
        conv_name, conv_port = split_tensor(squeeze.input[0])
        conv = by_name.get(conv_name)
        if conv is None or conv.op not in CONVS or conv_port or len(users.get(conv_name, [])) != 1:
            continue
        if shapes is None:
            shapes = static_shapes(graph)
        shape = shape_of(shapes, squeeze.input[0])
        dims = [int(d) for d in squeeze.attr["squeeze_dims"].list.i]
        if shape is None or not dims or any(d % len(shape) == len(shape) - 1 for d in dims):
            continue
        pairs.append((squeeze.name, node.name))
    if not pairs:
        return graph
    out = copy(graph)
    by_name = {n.name: n for n in out.node}
    for sq_name, bias_name in pairs:
        squeeze, bias = by_name[sq_name], by_name[bias_name]
        conv_input, bias_vector = squeeze.input[0], bias.input[1]
        old_squeeze, old_bias = type(squeeze)(), type(bias)()
        old_squeeze.CopyFrom(squeeze)
        old_bias.CopyFrom(bias)
        squeeze.CopyFrom(old_bias)            # the node named like the Squeeze adds the bias to the conv
        squeeze.name = sq_name
        squeeze.input[:] = [conv_input, bias_vector]
        bias.CopyFrom(old_squeeze)            # the node named like the BiasAdd (maybe an output) squeezes
        bias.name = bias_name
        bias.input[:] = [sq_name]
    return out
