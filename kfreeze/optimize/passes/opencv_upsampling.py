"""``opencv: true``: Keras' repeat chains (``ExpandDims``/``Tile``/``Reshape``) become ops OpenCV has.

Keras 3 writes UpSampling1D/2D and RepeatVector as ``ExpandDims -> Tile -> Reshape`` chains
(``ops.repeat``). OpenCV's importer reads a ``Tile`` only with its repeats as a layer
parameter it never sets (``tile_layer.cpp: repeats needs to be treated as parameter``), and
its NCHW bookkeeping cannot follow the 5-D intermediate. The same values are:

- a 4-D ``[N,H,W,C] -> [N,aH,bW,C]`` repeat: ``ResizeNearestNeighbor`` (OpenCV's Resize layer;
  TF's nearest neighbour with integer factors, no corner alignment, no half-pixel centers, is
  exactly the repeat);
- a 3-D ``[N,L,C] -> [N,aL,C]`` repeat: ``ExpandDims(1) -> ResizeNearestNeighbor -> Squeeze(1)``
  (``opencv_squeeze_expand`` then lets a Conv1D before it stay 4-D);
- a 2-D ``[N,C] -> [N,R,C]`` RepeatVector: ``ConcatV2`` of R ``ExpandDims(x, 1)``.

A chain is only replaced after TF itself ran it on a probe tensor and gave that repeat.
TF's tools never turn a Tile into a resize: the two are different ops that agree here.
"""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import consumers, copy, make_const, prune, shape_of, static_shapes, unique_name
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2

CHAIN = ("ExpandDims", "Tile", "Reshape")


def _chain(by_name, users, end, keep):
    """The ExpandDims/Tile/Reshape nodes from ``end`` back to the first tensor that is not one
    (each read only by the next), and that tensor; or None when there is no Tile in it."""
    nodes, node = [], end
    while node is not None and node.op in CHAIN:
        if node is not end and (len(users.get(node.name, [])) != 1 or node.name in keep):
            return None
        nodes.append(node)
        src, port = split_tensor(node.input[0])
        if port:
            return None
        prev = by_name.get(src)
        if prev is None or prev.op not in CHAIN:
            break
        node = prev
    if not any(n.op == "Tile" for n in nodes):
        return None
    return nodes[::-1], nodes[-1].input[0]


def _run_chain(graph_nodes, consts, source, shape):
    """What the chain computes from a probe tensor of ``shape`` (an arange)."""
    g = graph_pb2.GraphDef()
    probe = g.node.add(name="opencv_probe", op="Placeholder")
    probe.attr["dtype"].type = tf.float32.as_datatype_enum
    for name in consts:
        g.node.add().CopyFrom(consts[name])
    for node in graph_nodes:
        n = g.node.add()
        n.CopyFrom(node)
        n.input[:] = ["opencv_probe" if i == source else i for i in n.input if not i.startswith("^")]
    from kfreeze import policy  # a region of math ops, but still a graph from a file
    policy.check(g, [graph_nodes[-1].name], ["opencv_probe"])
    with tf.Graph().as_default() as tg:
        tf.graph_util.import_graph_def(g, name="")
        with tf.compat.v1.Session(graph=tg) as sess:
            x = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
            return x, sess.run(graph_nodes[-1].name + ":0", {"opencv_probe:0": x})


def _factors(x, y):
    """Per-axis repeat factors with np.repeat(x, f) == y (same rank), or None."""
    if x.ndim != y.ndim or any(b % a for a, b in zip(x.shape, y.shape)):
        return None
    f = [b // a for a, b in zip(x.shape, y.shape)]
    expected = x
    for axis, k in enumerate(f):
        expected = np.repeat(expected, k, axis)
    return f if np.array_equal(expected, y) else None


def opencv_upsampling(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Each float32 ``Reshape`` ending an ExpandDims/Tile/Reshape chain that TF shows to be a
    repeat of the chain's input over the spatial axes (4-D), the steps axis (3-D) or a new steps
    axis (2-D -> 3-D) is replaced as the module says, under the Reshape's name. Static shapes only."""
    by_name = {n.name: n for n in graph.node}
    users = consumers(graph)
    keep = set(ctx.output_nodes)
    found = []
    shapes = None
    for node in graph.node:
        if node.op != "Reshape" or node.attr["T"].type != tf.float32.as_datatype_enum:
            continue
        chain = _chain(by_name, users, node, keep)
        if chain is None:
            continue
        if shapes is None:
            shapes = static_shapes(graph)
        nodes, source = chain
        xs, ys = shape_of(shapes, source), shape_of(shapes, node.name)
        if not xs or not ys or None in xs or None in ys or np.prod(ys) > 1 << 22:
            continue
        const_inputs = {split_tensor(i)[0] for n in nodes for i in n.input[1:]}
        if not all(by_name.get(c) is not None and by_name[c].op == "Const" for c in const_inputs):
            continue
        x, y = _run_chain(nodes, {c: by_name[c] for c in const_inputs}, source, xs)
        plan = None
        if len(xs) == 4 and len(ys) == 4:
            f = _factors(x, y)
            if f and f[0] == 1 and f[3] == 1:
                plan = ("resize", ys[1:3])
        elif len(xs) == 3 and len(ys) == 3:
            f = _factors(x, y)
            if f and f[0] == 1 and f[2] == 1:
                plan = ("resize1d", [1, ys[1]])
        elif len(xs) == 2 and len(ys) == 3 and ys[0] == xs[0] and ys[2] == xs[1]:
            if np.array_equal(np.broadcast_to(x[:, None, :], ys), y):
                plan = ("concat", ys[1])
        if plan is not None:
            found.append((node.name, source, plan))
    if not found:
        return graph
    out = copy(graph)
    names = {n.name for n in out.node}
    by_name = {n.name: n for n in out.node}
    f32 = tf.float32.as_datatype_enum
    for name, source, (kind, arg) in found:
        end = by_name[name]
        added = []
        if kind == "resize":
            size = make_const(unique_name(names, f"{name}/opencv_size"), np.asarray(arg, np.int32))
            added.append(size)
            _become(end, "ResizeNearestNeighbor", [source, size.name], T=f32)
        elif kind == "resize1d":
            axis = make_const(unique_name(names, f"{name}/opencv_axis"), np.int32(1))
            size = make_const(unique_name(names, f"{name}/opencv_size"), np.asarray(arg, np.int32))
            expand = node_def_pb2.NodeDef(name=unique_name(names, f"{name}/opencv_expand"), op="ExpandDims",
                                          input=[source, axis.name])
            expand.attr["T"].type = f32
            expand.attr["Tdim"].type = tf.int32.as_datatype_enum
            resize = node_def_pb2.NodeDef(name=unique_name(names, f"{name}/opencv_resize"),
                                          op="ResizeNearestNeighbor", input=[expand.name, size.name])
            resize.attr["T"].type = f32
            added += [axis, size, expand, resize]
            _become(end, "Squeeze", [resize.name], T=f32)
            end.attr["squeeze_dims"].list.i[:] = [1]
        else:
            axis = make_const(unique_name(names, f"{name}/opencv_axis"), np.int32(1))
            expand = node_def_pb2.NodeDef(name=unique_name(names, f"{name}/opencv_expand"), op="ExpandDims",
                                          input=[source, axis.name])
            expand.attr["T"].type = f32
            expand.attr["Tdim"].type = tf.int32.as_datatype_enum
            added += [axis, expand]
            _become(end, "ConcatV2", [expand.name] * arg + [axis.name], T=f32)
            end.attr["N"].i = arg
            end.attr["Tidx"].type = tf.int32.as_datatype_enum
        if kind == "resize" or kind == "resize1d":
            target = end if kind == "resize" else added[-1]
            target.attr["align_corners"].b = False
            target.attr["half_pixel_centers"].b = False
        out.node.extend(added)
    return prune(out, ctx)


def _become(node, op: str, inputs: list[str], T) -> None:
    node.op = op
    node.ClearField("attr")
    node.attr["T"].type = T
    node.input[:] = inputs
