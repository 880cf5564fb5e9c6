"""``opencv: true``: a graph with an op OpenCV's TF importer lacks is refused, with one line.

OpenCV dnn (4.x) reads a TF graph op by op (``tf_importer.cpp``'s dispatch table, then its
layer registry by op name); an op in neither fails at ``readNetFromTensorflow`` with
``Can't create layer ... of type ...``, or worse: a recurrent layer's while loop fails in
``removePhaseSwitches`` (4.14), and made OpenCV 4.6 allocate 18.9 GB on a Bidirectional
LSTM. TF's own tools have no notion of what OpenCV imports. This pass runs after every
``opencv_*`` rewrite: what is left of the ops below cannot be expressed for OpenCV by
kfreeze, and the stage stops with what to do instead, rather than writing a graph that
fails (or takes the machine) where it is deployed.
"""

from __future__ import annotations

import numpy as np

from kfreeze.errors import KfreezeError
from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import const_values, shape_of, static_shapes
from tensorflow.core.framework import graph_pb2

# op -> what in a Keras model makes it. Each one measured with opencv-python-headless 4.14.
LOOPS = ("While", "StatelessWhile", "Enter", "Exit", "NextIteration", "LoopCond", "Switch", "Merge",
         "TensorListReserve", "TensorListFromTensor", "TensorListStack", "TensorListGetItem", "TensorListSetItem",
         "TensorArrayV3", "TensorArrayReadV3", "TensorArrayWriteV3", "TensorArrayGatherV3", "TensorArrayScatterV3")
LACKING = {
    **{op: "a recurrent layer's while loop (LSTM, GRU, SimpleRNN, RNN, Bidirectional, ConvLSTM): convert unrolls "
           "it only over a fixed time axis, so fix that with input_shape (e.g. [1, 20, 8])" for op in LOOPS},
    "Unpack": "an unstack that is not a recurrent layer's 3-D steps (ConvLSTM unrolled)",
    "BatchMatMulV2": "a batched matmul of two tensors (attention layers, Dot)",
    "BatchMatMulV3": "a batched matmul of two tensors (attention layers, Dot)",
    "BatchMatMul": "a batched matmul of two tensors (attention layers, Dot)",
    "Einsum": "an einsum of two tensors (MultiHeadAttention's attention scores)",
    "GatherV2": "a gather (Embedding, adaptive pooling); an Embedding is rewritten when input_shape fixes its ids "
                "at batch 1 (e.g. [1, 20]), they feed nothing else, and ids x input_dim is at most 16M",
    "Gather": "a gather (Embedding)",
    "GatherNd": "a gather",
    "ResourceGather": "a gather (Embedding)",
    "Bucketize": "Discretization",
    "Conv3DBackpropInputV2": "Conv3DTranspose",
    "SelectV2": "a select (Masking, where)",
    "Select": "a select (Masking, where)",
    "Any": "a boolean reduction (Masking)",
    "All": "a boolean reduction",
    "NotEqual": "a comparison (Masking)",
    "Equal": "a comparison",
    "Bincount": "CategoryEncoding",
    "DenseBincount": "CategoryEncoding",
    "OneHot": "a one-hot encoding (CategoryEncoding)",
    "Tile": "a tile that is not a repeat kfreeze can rewrite",
    "Rsqrt": "a reciprocal square root on a tensor: a normalization opencv_norm does not recognise",
}
REDUCTIONS = ("Mean", "Sum", "Max", "Min", "Prod")
OUTER = ("Add", "AddV2", "Sub", "Mul", "RealDiv")  # element-wise ops OpenCV reads as Eltwise (one shape)
PADS_SLICES = ("Pad", "PadV2", "MirrorPad", "Slice", "StridedSlice")
# 4-D perms parseTranspose follows (from NHWC: [0,3,1,2], [0,1,2,3], [0,3,2,1]; from NCHW: [0,2,3,1]).
TRANSPOSES = ([0, 3, 1, 2], [0, 1, 2, 3], [0, 3, 2, 1], [0, 2, 3, 1])


def opencv_refuse(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """The graph unchanged, or KfreezeError naming the first op OpenCV's importer lacks (and how
    many nodes have it) and the layer it comes from, or the first op in a form its parser rejects;
    and the alternatives."""
    found: dict[str, list[str]] = {}
    for node in graph.node:
        if node.op in LACKING:
            found.setdefault(node.op, []).append(node.name)
    if found:
        op = min(found, key=lambda o: (o not in LOOPS, o))  # a loop first: that is the one that matters
        nodes = found[op]
        others = sorted(set(found) - {op})
        more = f"; also {', '.join(others)}" if others else ""
        _refuse(f"OpenCV's TensorFlow importer has no {op} op ({len(nodes)} node(s), e.g. {nodes[0]}: "
                f"{LACKING[op]}){more}")
    problem = _unreadable_forms(graph)
    if problem:
        _refuse(problem)
    return graph


def _unreadable_forms(graph: graph_pb2.GraphDef) -> str | None:
    """Ops OpenCV has, in a form its parser rejects: a reduction on a tensor that is not 4-D,
    a 4-D transpose it cannot track, a Pack on an axis other than 0, an element-wise op of two tensors
    that broadcast each other, a pad or slice of a 5-D tensor."""
    consts = const_values(graph)
    shapes = None
    for node in graph.node:
        if node.op in PADS_SLICES:
            if shapes is None:
                shapes = static_shapes(graph)
            if len(shape_of(shapes, node.input[0]) or []) == 5:
                # OpenCV keeps 5-D blobs NCDHW but applies the graph's NDHWC paddings and begins to them
                # unchanged: a wrong shape (ZeroPadding3D) or an empty blob (Cropping3D).
                return (f"OpenCV's TensorFlow importer applies a 5-D tensor's NDHWC {node.op} to its NCDHW blob, "
                        f"and {node.name} pads or slices one (ZeroPadding3D, Cropping3D)")
        if node.op in REDUCTIONS or (node.op == "Transpose" and len(node.input) > 1):
            if shapes is None:
                shapes = static_shapes(graph)
            rank = len(shape_of(shapes, node.input[0]) or [None] * 4)
            if node.op in REDUCTIONS and rank != 4:
                return (f"OpenCV's TensorFlow importer reads {node.op} only on a 4-D tensor, and {node.name} reduces "
                        f"a {rank}-D one (a 5-D reduction over other axes than the whole volume, CategoryEncoding, a normalization "
                        f"opencv_norm does not recognise)")
            perm_name = split_tensor(node.input[1])[0]
            if node.op == "Transpose" and rank == 4 and perm_name in consts and \
                    np.asarray(consts[perm_name]).reshape(-1).tolist() not in TRANSPOSES:
                return (f"OpenCV's TensorFlow importer follows only NHWC <-> NCHW transposes, and {node.name} is "
                        f"perm {np.asarray(consts[perm_name]).reshape(-1).tolist()} (Permute)")
        if node.op == "StridedSlice":
            masks = {m: node.attr[m].i for m in ("shrink_axis_mask", "new_axis_mask", "ellipsis_mask") if node.attr[m].i}
            begin = split_tensor(node.input[1])[0]
            if shapes is None:
                shapes = static_shapes(graph)
            rank = len(shape_of(shapes, node.input[0]) or [])
            spec = np.asarray(consts[begin]).size if begin in consts else rank
            if masks or (rank and spec != rank):
                return (f"OpenCV's TensorFlow importer reads StridedSlice as a plain slice over every axis, and "
                        f"{node.name} " + (f"has {', '.join(masks)}" if masks else f"gives {spec} of {rank} axes")
                        + " (TimeDistributed, x[:, i] indexing)")
        if node.op == "ConcatV2" and _concat_of_inputs(graph, node):
            return (f"OpenCV's TensorFlow importer cannot tell the layout of 4-D inputs concatenated before any "
                    f"layer that has one ({node.name} concatenates model inputs directly; it joins them on the wrong axis)")
        if node.op in OUTER and len(node.input) == 2 and not any(split_tensor(i)[0] in consts for i in node.input):
            if shapes is None:
                shapes = static_shapes(graph)
            a, b = (shape_of(shapes, i) for i in node.input)
            if a and b and len(a) == len(b) and None not in a + b and \
                    any(x == 1 < y for x, y in zip(a, b)) and any(y == 1 < x for x, y in zip(a, b)):
                return (f"OpenCV's TensorFlow importer adds and multiplies two tensors only of one shape, and "
                        f"{node.name} broadcasts {a} against {b} (an outer sum: AdditiveAttention's scores)")
        if node.op == "Softmax" and _after_conv(graph, node):
            return (f"OpenCV's TensorFlow importer takes a Softmax over a feature map along its width, not its "
                    f"channels, and {node.name} is the softmax of a convolution's 4-D output (Conv2D(activation="
                    f"'softmax'), a segmentation head)")
        if node.op == "Pack" and node.attr["axis"].i != 0:
            return f"OpenCV's TensorFlow importer reads Pack only on axis 0, and {node.name} stacks on axis {node.attr['axis'].i}"
    return None


_CONVS = ("Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput")


def _after_conv(graph: graph_pb2.GraphDef, node) -> bool:
    """The node's input comes from a 2-D convolution through elementwise ops: a 4-D NHWC feature map,
    which OpenCV holds as NCHW (measured with 4.14: a Softmax there normalises the width axis)."""
    by_name = {n.name: n for n in graph.node}
    src = by_name.get(split_tensor(node.input[0])[0])
    for _ in range(8):
        if src is None or src.op in _CONVS:
            return src is not None
        if src.op not in ("BiasAdd", "Identity", "Add", "AddV2", "Mul", "Relu", "Relu6"):
            return False
        src = by_name.get(split_tensor(src.input[0])[0])
    return False


def _concat_of_inputs(graph: graph_pb2.GraphDef, node) -> bool:
    """A ConcatV2 of 4-D model inputs (directly, or through opencv_input_feed's Mul)."""
    by_name = {n.name: n for n in graph.node}
    data = [i for i in node.input[:-1] if not i.startswith("^")]
    for inp in data:
        src = by_name.get(split_tensor(inp)[0])
        if src is not None and src.op == "Mul" and src.name.endswith("/opencv_feed"):
            src = by_name.get(split_tensor(src.input[0])[0])
        if src is None or src.op != "Placeholder" or len(src.attr["shape"].shape.dim) != 4:
            return False
    return bool(data)


def _refuse(problem: str):
    raise KfreezeError(
        "opencv: true", problem,
        "for OpenCV use the onnx target (targets: [tf, onnx]; cv2.dnn.readNetFromONNX), "
        "or set opencv: false to keep the TF graph")
