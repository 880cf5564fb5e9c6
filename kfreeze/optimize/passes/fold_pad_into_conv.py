"""An explicit zero Pad becomes the following conv's own padding."""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import const_values, copy, nhwc, prune, shape_of, single_data_user, static_shapes, consumers
from tensorflow.core.framework import graph_pb2


def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def fold_pad_into_conv(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``Pad(x, zeros around H and W) -> Conv2D/DepthwiseConv2dNative(VALID|EXPLICIT)`` becomes
    one conv: ``SAME`` when TF's SAME padding of x is exactly those pads (MobileNet's and
    EfficientNet's ``correct_pad``), else ``EXPLICIT`` with the summed pads (ResNet's 3-pixel pad)."""
    out = copy(graph)
    keep = set(ctx.output_nodes)
    consts = const_values(out)
    users = consumers(out)
    shapes = None
    changed = False
    for pad in list(out.node):
        if pad.op not in ("Pad", "PadV2") or pad.name in keep or any(i.startswith("^") for i in pad.input):
            continue
        if split_tensor(pad.input[1])[0] not in consts:
            continue
        if pad.op == "PadV2":
            fill = consts.get(split_tensor(pad.input[2])[0])
            if fill is None or np.asarray(fill).size != 1 or float(np.asarray(fill).reshape(())) != 0.0:
                continue
        pads = np.asarray(consts[split_tensor(pad.input[1])[0]])
        if pads.shape != (4, 2) or pads[0].any() or pads[3].any() or (pads < 0).any():
            continue
        found = single_data_user(users, pad.name, keep)
        if found is None:
            continue
        conv, idx = found
        if conv.op not in ("Conv2D", "DepthwiseConv2dNative") or idx != 0 or not nhwc(conv):
            continue
        padding = conv.attr["padding"].s
        if padding == b"VALID":
            current = np.zeros([4, 2], np.int64)
        elif padding == b"EXPLICIT":
            current = np.asarray(conv.attr["explicit_paddings"].list.i, np.int64).reshape(4, 2)
        else:
            continue
        total = current + pads
        if split_tensor(conv.input[1])[0] not in consts:
            continue
        if shapes is None:
            shapes = static_shapes(out)
        x_shape = shape_of(shapes, pad.input[0])
        kernel = consts[split_tensor(conv.input[1])[0]].shape
        strides = list(conv.attr["strides"].list.i) or [1, 1, 1, 1]
        dilations = list(conv.attr["dilations"].list.i) or [1, 1, 1, 1]
        same = x_shape is not None and len(x_shape) == 4 and None not in x_shape[1:3] and all(
            tuple(total[1 + k]) == _same_pads(x_shape[1 + k], kernel[k], strides[1 + k], dilations[1 + k])
            for k in range(2))
        del conv.attr["explicit_paddings"]
        if not total.any():
            conv.attr["padding"].s = b"VALID"
        elif same:
            conv.attr["padding"].s = b"SAME"
        else:
            conv.attr["padding"].s = b"EXPLICIT"
            conv.attr["explicit_paddings"].list.i.extend(int(v) for v in total.reshape(-1))
        conv.input[0] = pad.input[0]
        changed = True
    return prune(out, ctx) if changed else graph
