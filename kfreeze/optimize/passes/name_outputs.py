"""The op computing an output takes the output's name, in TF and in OpenCV dnn; its Identity goes."""

from __future__ import annotations

from kfreeze import opencv_names
from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import consumers, copy, make_const, rename_inputs, unique_name
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2

FLOATS = {tf.float32.as_datatype_enum, tf.float16.as_datatype_enum, tf.float64.as_datatype_enum,
          tf.bfloat16.as_datatype_enum}


def name_outputs(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``out = Identity(y)``: ``y`` takes the name ``out`` and the Identity goes.

    Only when ``y`` is an op's port 0, read by nothing else, not an input or
    another output, and not a Const (a constant output keeps its Identity), and
    when OpenCV keeps ``y`` as a layer of its own (``kfreeze.opencv_names``).

    Then every float output OpenCV would still not name after itself (an Identity
    it drops, a bias add it folds into the MatMul or conv before it) becomes
    ``out = Mul(y, 1)``: exact in TF (``y * 1`` is ``y`` bit for bit), and a layer
    named ``out`` in OpenCV, so ``net.forward('out')`` works. Not for a Reshape to
    rank 4: OpenCV permutes its result into ``out/nchw``, the name to fetch (a Mul
    would read the NHWC-ordered values). Hand-written: no TF tool knows OpenCV's names.
    """
    return _opencv_layers(_rename(graph, ctx), ctx)


def _rename(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    keep = set(ctx.output_nodes)
    inputs = set(ctx.input_nodes)
    by_name = {n.name: n for n in graph.node}
    users = consumers(graph)
    mapping = {}
    for name in ctx.output_nodes:
        node = by_name.get(name)
        if node is None or node.op != "Identity" or len(node.input) != 1 or node.input[0].startswith("^"):
            continue
        src, port = split_tensor(node.input[0])
        producer = by_name.get(src)
        if producer is None or port or src in keep or src in inputs or src in mapping \
                or producer.op in ("Const", "Placeholder", "PlaceholderWithDefault") or len(users.get(src, [])) != 1:
            continue
        if producer.attr["T"].type and node.attr["T"].type != producer.attr["T"].type:
            continue
        if opencv_names.folded(graph, producer, by_name):
            continue  # renamed, it would still not be OpenCV's layer name: the Identity becomes a Mul below
        mapping[src] = name
    if not mapping:
        return graph
    out = copy(graph)
    drop = set(mapping.values())
    kept = [n for n in out.node if n.name not in drop]
    del out.node[:]
    for node in kept:
        node.name = mapping.get(node.name, node.name)
        out.node.append(node)
    rename_inputs(out, mapping)
    return out


def _opencv_layers(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Each float output without an OpenCV layer of its name becomes (or gets) ``Mul(y, 1)``."""
    inputs = set(ctx.input_nodes)
    todo = []
    for output in ctx.outputs:
        name, port = split_tensor(output)
        node = next((n for n in graph.node if n.name == name), None)
        if node is None or port or name in inputs or opencv_names.layer_name(graph, name) == name:
            continue
        if node.op == "Identity":
            by_name = {n.name: n for n in graph.node}
            src = by_name.get(split_tensor(node.input[0])[0]) if node.input else None
            if src is None or src.op == "Const" or opencv_names.reshape_permutes(graph, src, by_name):
                continue  # no layer for a constant; a Mul after a rank-4 Reshape would be NHWC in OpenCV
        elif not opencv_names.folded(graph, node) or node.op in opencv_names.DROPPED:
            continue
        if node.attr["T"].type not in FLOATS:
            continue
        todo.append(name)
    if not todo:
        return graph
    out = copy(graph)
    names = {n.name for n in out.node}
    for name in todo:
        node = next(n for n in out.node if n.name == name)
        dtype = node.attr["T"].type
        one = make_const(unique_name(names, f"{name}/one"), 1, tf.as_dtype(dtype))
        if node.op == "Identity":
            data, control = node.input[0], [i for i in node.input[1:] if i.startswith("^")]
        else:  # the op itself is the output (a TF1 graph): it moves aside, and the Mul reads it
            moved = unique_name(names, f"{name}/{node.op}")
            rename_inputs(out, {name: moved})
            node.name = moved
            node = out.node.add()
            data, control = moved, []
        node.op = "Mul"
        node.name = name
        node.ClearField("attr")
        node.attr["T"].type = dtype
        del node.input[:]
        node.input.extend([data, one.name] + control)
        out.node.append(one)
    return out
