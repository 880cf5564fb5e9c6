"""``opencv: true``: a 4-D ``Transpose`` that swaps height and width becomes two OpenCV accepts.

OpenCV's importer keeps 4-D tensors in NCHW and parses a ``Transpose`` only as a layout
change it can track (``parseTranspose``: from NHWC, perm [0,3,1,2], [0,1,2,3] or [0,3,2,1];
from NCHW, [0,2,3,1] or [0,1,2,3]; anything else: "Only NHWC <-> NCHW permutations are
allowed"). Keras' ``Permute((2, 1, 3))`` is perm [0,2,1,3]: the same as [0,3,2,1] (NHWC ->
NCWH, which OpenCV turns into a real Permute and then calls NCHW) followed by [0,2,3,1]
(NCHW -> NHWC, a layout change for OpenCV). TF's tools merge transposes, never split one.
"""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import const_values, copy, make_const, unique_name
from tensorflow.core.framework import graph_pb2, node_def_pb2

SWAP_HW = [0, 2, 1, 3]


def opencv_transpose(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``Transpose(x, [0,2,1,3])`` -> ``Transpose(Transpose(x, [0,3,2,1]), [0,2,3,1])``, the
    last under the original name."""
    consts = const_values(graph)
    todo = [n.name for n in graph.node if n.op == "Transpose" and split_tensor(n.input[1])[0] in consts
            and np.asarray(consts[split_tensor(n.input[1])[0]]).reshape(-1).tolist() == SWAP_HW]
    if not todo:
        return graph
    out = copy(graph)
    names = {n.name for n in out.node}
    by_name = {n.name: n for n in out.node}
    for name in todo:
        node = by_name[name]
        tperm = node.attr["Tperm"].type
        first_perm = make_const(unique_name(names, f"{name}/opencv_perm_ncwh"), np.asarray([0, 3, 2, 1], np.int32))
        second_perm = make_const(unique_name(names, f"{name}/opencv_perm_nhwc"), np.asarray([0, 2, 3, 1], np.int32))
        first = node_def_pb2.NodeDef(name=unique_name(names, f"{name}/opencv_ncwh"), op="Transpose",
                                     input=[node.input[0], first_perm.name])
        first.attr["T"].CopyFrom(node.attr["T"])
        first.attr["Tperm"].type = tperm
        node.input[0], node.input[1] = first.name, second_perm.name
        out.node.extend([first_perm, second_perm, first])
    return out
