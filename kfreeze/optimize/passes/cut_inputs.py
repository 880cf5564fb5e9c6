"""The cut: configured input tensors become placeholders of the configured dtype and shape."""

from __future__ import annotations

import re

from kfreeze.errors import KfreezeError
from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context, placeholder_name
from kfreeze.optimize.graph import copy, import_light, light_graph, rewire
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2


def cut_inputs(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Each configured input tensor becomes a Placeholder of the configured dtype and shape.

    For a tf.data or queue input (``IteratorGetNext``) the producing node is
    replaced; its upstream pipeline then feeds nothing and ``strip_unused``
    drops it. A dtype other than the tensor's own gets a Cast after the placeholder.
    A fixed batch may be cut to another one (an Estimator's [100, 28, 28, 1] to
    [1, 28, 28, 1]), as TransformGraph's strip_unused_nodes(shape=...) does; the
    other dimensions must fit.
    """
    g = import_light(graph)
    out = copy(graph)
    rebatched = []
    for spec in ctx.inputs:
        node, port = split_tensor(spec.name)
        tensor = g.get_tensor_by_name(f"{node}:{port}")
        graph_dtype = tensor.dtype.base_dtype
        dtype = tf.as_dtype(spec.dtype) if spec.dtype else graph_dtype
        shape = tf.TensorShape(None if spec.shape is None else [None if d in (None, -1) else d for d in spec.shape]) \
            if spec.shape is not None else tensor.shape
        if spec.shape is not None and tensor.shape.rank is not None and not _fits(tensor.shape, shape):
            raise KfreezeError(f"input '{spec.name}'", f"shape {list(spec.shape)} does not fit the graph's "
                               f"shape {tensor.shape.as_list()}",
                               f"give a shape of rank {tensor.shape.rank} that matches the known dimensions")
        name = placeholder_name(spec.name)
        if name != node and any(n.name == name for n in out.node):
            raise KfreezeError(f"input '{spec.name}'", f"its placeholder would be named '{name}', "
                               "which another node of the graph already has",
                               f"cut at a tensor of another node, or at '{node}' itself")
        placeholder = node_def_pb2.NodeDef(name=name, op="Placeholder")
        placeholder.attr["dtype"].type = dtype.as_datatype_enum
        placeholder.attr["shape"].shape.CopyFrom(shape.as_proto())
        feeds = name
        extra = []
        if dtype != graph_dtype:
            cast = node_def_pb2.NodeDef(name=f"{name}/cast", op="Cast", input=[name])
            cast.attr["SrcT"].type = dtype.as_datatype_enum
            cast.attr["DstT"].type = graph_dtype.as_datatype_enum
            cast.attr["Truncate"].b = False
            extra.append(cast)
            feeds = cast.name
        replaced = False
        for i, n in enumerate(out.node):
            if n.name == name:  # the cut node keeps its place and name
                out.node[i].CopyFrom(placeholder)
                replaced = True
        if not replaced:
            out.node.insert(0, placeholder)
        for n in extra:
            out.node.append(n)
        rewire(out, f"{node}:{port}", feeds, skip=feeds)
        if spec.shape is not None and tensor.shape.rank and shape.rank and tensor.shape[0] is not None \
                and shape[0] != tensor.shape[0]:
            rebatched.append((spec, tensor.shape))
    if rebatched:  # shapes recorded at save time (add_shapes=True) still say the old batch
        for n in out.node:
            if "_output_shapes" in n.attr:
                del n.attr["_output_shapes"]
    if rebatched:
        _check_rebatch(out, rebatched)
    return out


def _fits(graph_shape, shape) -> bool:
    """``shape`` fits the tensor's static shape, the batch (first) dimension aside."""
    if shape.rank is None or graph_shape.rank != shape.rank:
        return graph_shape.is_compatible_with(shape)
    return graph_shape[1:].is_compatible_with(shape[1:])


def _importable(graph: graph_pb2.GraphDef):
    """None when TF imports ``graph`` (shape inference included), else the error."""
    try:
        with tf.Graph().as_default():
            tf.graph_util.import_graph_def(light_graph(graph), name="")
    except (ValueError, tf.errors.OpError) as e:
        return e
    return None


def _check_rebatch(graph: graph_pb2.GraphDef, rebatched) -> None:
    """A cut to another batch must not meet a node that fixes the old one (a Reshape to [100, ...]).
    Failures that the old batch has too are left to the passes that explain them."""
    e = _importable(graph)
    if e is None:
        return
    original = copy(graph)
    by_name = {n.name: n for n in original.node}
    for spec, graph_shape in rebatched:
        by_name[placeholder_name(spec.name)].attr["shape"].shape.CopyFrom(graph_shape.as_proto())
    if _importable(original) is not None:
        return
    for spec, graph_shape in rebatched[:1]:
        found = re.search(r"\{\{node ([^}]+)\}\}", str(e))
        where = f"node '{found.group(1)}'" if found else "a node downstream"
        raise KfreezeError(f"input '{spec.name}'", f"input_shape {list(spec.shape)} changes the graph's fixed batch "
                           f"{graph_shape[0]}, but {where} needs that batch ({str(e).splitlines()[0][:120]})",
                           f"cut after {where} (its output becomes the input, at any batch), or keep the batch: "
                           f"input_shape {graph_shape.as_list()}") from None
