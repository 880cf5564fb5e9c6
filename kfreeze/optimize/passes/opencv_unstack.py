"""``opencv: true``: an unrolled recurrent layer's steps as a Split of its input, not an Unpack.

With ``unroll=True`` (what convert sets for ``opencv: true`` and a fixed time dimension) Keras'
recurrent layers read their steps as ``Unpack(Transpose(x, [1, 0, 2]))``: the time axis first, then
one ``[N, F]`` tensor per step. OpenCV's importer has no Unpack ("Can't create layer of type
Unpack"). The same tensors are ``Split(x, T, axis=1)`` (``[N, 1, F]`` each, OpenCV's Slice layer)
then a Reshape to ``[-1, F]``, which OpenCV imports on 3-D tensors; the Transpose goes. A recurrent
layer after one with ``return_sequences`` unstacks the steps the first one packed: it reads them directly.

OpenCV guesses a tensor's layout from the ops around it, and a BiasAdd's ``data_format: NHWC`` after a
step's MatMul made it take the 3-D input for NHWC (the Split on the wrong axis, a Permute before the
Reshape). A bias on a 2-D tensor has no layout: in a graph this pass rewrote, those BiasAdds lose
the attribute (NHWC is TF's default, so TF computes the same; its import_graph_def writes the default
back into the GraphDef it is given, so nothing after this pass imports the graph in place).
"""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import (const_values, consumers, copy, make_const, prune, rewire, shape_of, static_shapes,
                                    unique_name)
from tensorflow.core.framework import graph_pb2, node_def_pb2


def opencv_unstack(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``Unpack(Transpose(x, [1, 0, 2]), axis=0)`` with ``x`` of static shape ``[N, T, F]`` becomes
    ``Reshape(Split(x, T, axis=1):t, [-1, F])`` for each step ``t`` (the Split takes the Unpack's name);
    ``Unpack(Pack(x_0 .. x_T-1))`` on axis 0 (stacked recurrent layers) reads each ``x_t`` itself.

    ``PASSES`` runs it only with ``Context(opencv=True)``.
    """
    by_name = {n.name: n for n in graph.node}
    consts = const_values(graph)
    todo = []
    shapes = None
    stacked = []  # Unpack(Pack(xs)): a stacked layer reading the steps the one before it packed
    for node in graph.node:
        if node.op != "Unpack" or node.attr["axis"].i != 0 or len(node.input) != 1:
            continue
        src = by_name.get(split_tensor(node.input[0])[0])
        if src is not None and src.op == "Pack" and src.attr["axis"].i == 0 and len(src.input) == node.attr["num"].i \
                and not any(i.startswith("^") for i in src.input):
            stacked.append((node.name, list(src.input)))
            continue
        if src is None or src.op != "Transpose" or split_tensor(node.input[0])[1]:
            continue
        perm = split_tensor(src.input[1])[0]
        if perm not in consts:
            continue
        order = [int(v) for v in np.asarray(consts[perm]).reshape(-1)]
        if order != [1, 0, 2]:  # 3-D only: a ConvLSTM's 4-D/5-D steps meet OpenCV's layout guesses
            continue
        if shapes is None:
            shapes = static_shapes(graph)
        shape = shape_of(shapes, src.input[0])
        if shape is None or len(shape) != len(order) or None in shape[1:] or shape[1] != node.attr["num"].i:
            continue
        todo.append((node.name, src.input[0], int(shape[1]), [int(d) for d in shape[2:]]))
    if not todo and not stacked:
        return graph
    out = copy(graph)
    names = {n.name for n in out.node}
    nodes = {n.name: n for n in out.node}
    users = consumers(out)
    for name, steps in stacked:
        for t, step in enumerate(steps):
            rewire(out, f"{name}:{t}", step, users)
    for name, x, steps, features in todo:
        unpack = nodes[name]
        dtype = unpack.attr["T"].type
        axis = make_const(unique_name(names, f"{name}/opencv_axis"), np.int32(1))
        dims = make_const(unique_name(names, f"{name}/opencv_step_shape"), np.array([-1, *features], np.int32))
        unpack.Clear()
        unpack.name, unpack.op = name, "Split"
        unpack.input.extend([axis.name, x])
        unpack.attr["num_split"].i = steps
        unpack.attr["T"].type = dtype
        out.node.extend([axis, dims])
        step_users = users.get(name, [])
        for t in range(steps):
            reshape = node_def_pb2.NodeDef(name=unique_name(names, f"{name}/opencv_step_{t}"), op="Reshape",
                                           input=[f"{name}:{t}", dims.name])
            reshape.attr["T"].type = dtype
            reshape.attr["Tshape"].type = dims.attr["dtype"].type
            rewire(out, f"{name}:{t}", reshape.name, {name: step_users})
            out.node.append(reshape)
    for node in out.node:
        if node.op == "BiasAdd" and nodes.get(split_tensor(node.input[0])[0], node).op == "MatMul":
            node.attr.pop("data_format", None)
    return prune(out, ctx)
