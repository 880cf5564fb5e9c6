"""Channels-first convs, pools, bias adds and batch norms become channels-last, between Transposes."""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import copy, make_const, static_shapes, unique_name
from tensorflow.core.framework import graph_pb2, node_def_pb2

# Ops whose CPU kernels take only NHWC (NDHWC): channels-first form -> (to last, from last) perms.
_FORMATS = {b"NCHW": ([0, 2, 3, 1], [0, 3, 1, 2]), b"NCDHW": ([0, 2, 3, 4, 1], [0, 4, 1, 2, 3])}
_OPS = {"Conv2D", "DepthwiseConv2dNative", "MaxPool", "AvgPool", "BiasAdd", "FusedBatchNorm", "FusedBatchNormV2",
        "FusedBatchNormV3", "Conv3D", "MaxPool3D", "AvgPool3D"}
_LAST = {b"NCHW": b"NHWC", b"NCDHW": b"NDHWC"}
_PER_DIM = ("strides", "ksize", "dilations")  # one entry per input dimension, in the node's layout


def channels_last(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``to_channels_last`` on the cut graph: before the folds, which only match channels-last."""
    return to_channels_last(graph)


def to_channels_last(graph: graph_pb2.GraphDef) -> graph_pb2.GraphDef:
    """``y = Op_NCHW(x)`` becomes ``y = Transpose(Op_NHWC(Transpose(x)))``.

    TensorFlow's CPU kernels of Conv2D, DepthwiseConv2dNative, the pools and Conv3D run only
    channels-last (GPU graphs are often written NCHW), and kfreeze's folds match only channels-last.
    The filter layout (HWIO) does not depend on data_format, so only the activations move; the
    Transposes between two rewritten ops are inverse pairs, which Grappler and cancel_transposes
    remove. ``y`` keeps its name (the Transpose back), so outputs and consumers stay as they are;
    a batch norm's other outputs (statistics, per channel) are read from the rewritten op.
    A BiasAdd is rewritten only when its input is known to be rank 4 (NCHW also means any rank).
    Needs no weights or session: verify also runs it on the source graph, which CPU TF cannot run.
    """
    todo = [n for n in graph.node if n.op in _OPS and n.attr["data_format"].s in _FORMATS]
    if not todo:
        return graph
    shapes = static_shapes(graph) if any(n.op == "BiasAdd" for n in todo) else {}
    out = copy(graph)
    names = {n.name for n in out.node}
    renamed: dict[str, str] = {}
    added = []
    for node in out.node:
        if node.op not in _OPS:  # first: reading attr["data_format"] would add it to any node
            continue
        fmt = node.attr["data_format"].s
        if fmt not in _FORMATS:
            continue
        to_last, from_last = _FORMATS[fmt]
        if node.op == "BiasAdd":
            shape = shapes.get(f"{split_tensor(node.input[0])[0]}:{split_tensor(node.input[0])[1]}")
            if shape is None or len(shape) != len(to_last):
                continue
        name = node.name
        inner = unique_name(names, f"{name}/{_LAST[fmt].decode().lower()}")
        perm_in = make_const(unique_name(names, f"{name}/to_{_LAST[fmt].decode().lower()}/perm"), np.int32(to_last))
        perm_out = make_const(unique_name(names, f"{name}/perm"), np.int32(from_last))
        t_in = _transpose(unique_name(names, f"{name}/to_{_LAST[fmt].decode().lower()}"), node.input[0],
                          perm_in.name, node.attr["T"].type)
        node.input[0] = t_in.name
        node.name = inner
        node.attr["data_format"].s = _LAST[fmt]
        for key in _PER_DIM:
            if key in node.attr and len(node.attr[key].list.i) == len(to_last):
                values = list(node.attr[key].list.i)
                node.attr[key].list.ClearField("i")
                node.attr[key].list.i.extend(values[p] for p in to_last)
        if "explicit_paddings" in node.attr and len(node.attr["explicit_paddings"].list.i) == 2 * len(to_last):
            pads = list(node.attr["explicit_paddings"].list.i)
            node.attr["explicit_paddings"].list.ClearField("i")
            for p in to_last:
                node.attr["explicit_paddings"].list.i.extend(pads[2 * p:2 * p + 2])
        t_out = _transpose(name, f"{inner}:0", perm_out.name, node.attr["T"].type)
        renamed[name] = inner
        added += [perm_in, t_in, perm_out, t_out]
    if not renamed:
        return graph
    # Port 0 stays with the Transpose back (it has the old name); other ports and control edges
    # (a batch norm's statistics) read the rewritten op.
    for node in out.node:
        for i, inp in enumerate(node.input):
            src, port = split_tensor(inp)
            if src in renamed and (port or inp.startswith("^")):
                node.input[i] = ("^" if inp.startswith("^") else "") + renamed[src] + (f":{port}" if port else "")
    out.node.extend(added)
    return out


def _transpose(name: str, value: str, perm: str, dtype) -> node_def_pb2.NodeDef:
    node = node_def_pb2.NodeDef(name=name, op="Transpose", input=[value, perm])
    node.attr["T"].type = dtype
    node.attr["Tperm"].type = 3  # DT_INT32
    return node
