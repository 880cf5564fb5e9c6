"""Graph helpers the passes share: copies, constants, consumers, rewiring, names, shapes.

One place for each, so two passes cannot disagree on what "the consumers of a
node" or "an NHWC node" means.
"""

from __future__ import annotations

import numpy as np

from kfreeze.errors import KfreezeError
from kfreeze.nodes import split_tensor
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2
from tensorflow.python.util import _pywrap_transform_graph

# Constants at least this large are replaced by placeholders of the same shape when
# a pass only needs static shapes: importing 100 MB of weights to infer shapes is slow.
LIGHT_CONST_ELEMENTS = 1024


def copy(graph: graph_pb2.GraphDef) -> graph_pb2.GraphDef:
    """A deep copy: passes never change the GraphDef they are given."""
    out = graph_pb2.GraphDef()
    out.CopyFrom(graph)
    return out


def prune(graph: graph_pb2.GraphDef, ctx) -> graph_pb2.GraphDef:
    """Only the nodes the outputs depend on."""
    return tf.compat.v1.graph_util.extract_sub_graph(graph, ctx.output_nodes)


# -- importing -----------------------------------------------------------------

def import_graph(graph: graph_pb2.GraphDef) -> tf.Graph:
    g = tf.Graph()
    with g.as_default():
        try:
            tf.graph_util.import_graph_def(graph, name="")
        except (ValueError, tf.errors.OpError) as e:
            raise KfreezeError("graph", f"TensorFlow cannot import it ({str(e).splitlines()[0][:200]})",
                               "check that it was written by a compatible TensorFlow") from None
    return g


def num_elements(tensor) -> int:
    """Elements of a TensorProto, from its shape."""
    n = 1
    for d in tensor.tensor_shape.dim:
        n *= d.size
    return n


def light_graph(graph: graph_pb2.GraphDef) -> graph_pb2.GraphDef:
    """The graph with every large constant replaced by a placeholder of its dtype and shape:
    the same static shapes for TF's shape inference, without copying the weights."""
    light = graph_pb2.GraphDef()
    light.versions.CopyFrom(graph.versions)
    for node in graph.node:
        new = light.node.add()
        if node.op == "Const" and num_elements(node.attr["value"].tensor) >= LIGHT_CONST_ELEMENTS:
            new.name, new.op = node.name, "Placeholder"
            new.attr["dtype"].type = node.attr["dtype"].type
            new.attr["shape"].shape.CopyFrom(node.attr["value"].tensor.tensor_shape)
        else:
            new.CopyFrom(node)
            new.ClearField("device")
    return light


def import_light(graph: graph_pb2.GraphDef) -> tf.Graph:
    """``import_graph`` for passes that need only dtypes and static shapes: large constants come
    in as placeholders of their shape, so no weights are copied (ResNet50: 0.05 s, not 0.5 s)."""
    return import_graph(light_graph(graph))


def static_shapes(graph: graph_pb2.GraphDef) -> dict[str, list | None]:
    """Static output shapes by tensor name ('node:k'), from TF's shape inference.

    Imports ``light_graph(graph)``: milliseconds even with hundreds of MB of weights.
    """
    light = light_graph(graph)
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(light, name="")
    shapes = {}
    for op in g.get_operations():
        for t in op.outputs:
            shapes[t.name] = None if t.shape.rank is None else t.shape.as_list()
    return shapes


def shape_of(shapes: dict, tensor: str):
    """``tensor``'s entry in ``static_shapes``: 'node' and 'node:0' alike."""
    node, port = split_tensor(tensor)
    return shapes.get(f"{node}:{port}")


# -- constants -------------------------------------------------------------------

def const_values(graph: graph_pb2.GraphDef):
    """Const name -> ndarray, decoded on first use (weights are only decoded when a rewrite needs them)."""
    nodes = {n.name: n for n in graph.node if n.op == "Const"}

    class Lazy(dict):
        def __contains__(self, name):
            return name in nodes or dict.__contains__(self, name)

        def __missing__(self, name):
            value = tf.make_ndarray(nodes[name].attr["value"].tensor)
            self[name] = value
            return value

        def get(self, name, default=None):
            return self[name] if name in nodes else default

    return Lazy()


def make_const(name: str, value, dtype=None) -> node_def_pb2.NodeDef:
    node = node_def_pb2.NodeDef(name=name, op="Const")
    proto = tf.make_tensor_proto(np.asarray(value), dtype=dtype)
    node.attr["dtype"].type = proto.dtype
    node.attr["value"].tensor.CopyFrom(proto)
    return node


# -- consumers and rewiring ----------------------------------------------------------

def consumers(graph: graph_pb2.GraphDef) -> dict[str, list[tuple[node_def_pb2.NodeDef, int]]]:
    """node name -> [(consumer, input index)]: its consumers, data and control inputs alike."""
    found: dict[str, list] = {}
    for n in graph.node:
        for i, inp in enumerate(n.input):
            found.setdefault(split_tensor(inp)[0], []).append((n, i))
    return found


def subgraph_region(by_name: dict, end, ops) -> tuple[list, set, set] | None:
    """The nodes ``end`` is computed from through ops in ``ops`` (``end`` included), the constants they
    read, and the other tensors at the region's edge ('node:k'); None when a control edge or a missing
    node is in the way. The opencv passes that replace a subgraph recognised by running it use this."""
    nodes, consts, edge, todo, seen = [], set(), set(), [end], set()
    while todo:
        node = todo.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        nodes.append(node)
        for inp in node.input:
            if inp.startswith("^"):
                return None
            src = by_name.get(split_tensor(inp)[0])
            if src is None:
                return None
            if src.op == "Const":
                consts.add(src.name)
            elif src.op in ops:
                todo.append(src)
            else:
                edge.add(f"{src.name}:{split_tensor(inp)[1]}")
    return nodes, consts, edge


def region_runner(graph: graph_pb2.GraphDef, nodes, consts, x_tensor: str, end: str):
    """A session over a region of ``graph`` (``nodes`` and the constants named in ``consts``, as
    ``subgraph_region`` finds them) with tensor ``x_tensor`` fed by a float placeholder: ``(run,
    sess)`` where ``run(x)`` is ``end``'s value. Passes probe a region this way to learn what it
    computes. The region passes the op policy first: it is still a graph from a file."""
    from kfreeze import policy
    g = graph_pb2.GraphDef()
    p = g.node.add(name="opencv_probe", op="Placeholder")
    p.attr["dtype"].type = tf.float32.as_datatype_enum
    by_name = {n.name: n for n in graph.node}
    for c in consts:
        g.node.add().CopyFrom(by_name[c])
    for n in nodes:
        m = g.node.add()
        m.CopyFrom(n)
        m.input[:] = ["opencv_probe" if "%s:%d" % split_tensor(i) == x_tensor else i for i in n.input]
    policy.check(g, [end], ["opencv_probe"])
    tg = tf.Graph()
    with tg.as_default():
        tf.graph_util.import_graph_def(g, name="")
    sess = tf.compat.v1.Session(graph=tg)
    return lambda x: sess.run(end + ":0", {"opencv_probe:0": x}), sess


def single_data_user(users: dict, name: str, keep: set[str]):
    """The only consumer of node ``name`` (reading its port 0 as data), or None."""
    found = users.get(name, [])
    if name in keep or len(found) != 1:
        return None
    consumer, i = found[0]
    inp = consumer.input[i]
    if inp.startswith("^") or split_tensor(inp)[1] != 0:
        return None
    return consumer, i


def rewire(graph: graph_pb2.GraphDef, old: str, new: str, users_: dict | None = None, skip: str = "") -> None:
    """Every data input reading tensor ``old`` ('node' is 'node:0') now reads ``new``, in place.

    With ``users_`` (from ``consumers``) only the listed consumers of ``old``'s node are
    looked at: a pass that rewires many nodes of a large graph stays linear."""
    target = split_tensor(old)
    candidates = users_.get(target[0], []) if users_ is not None else \
        ((n, i) for n in graph.node for i in range(len(n.input)))
    for consumer, i in candidates:
        inp = consumer.input[i]
        if consumer.name != skip and not inp.startswith("^") and split_tensor(inp) == target:
            consumer.input[i] = new


def bypass(graph: graph_pb2.GraphDef, targets: dict[str, str], ctx) -> graph_pb2.GraphDef:
    """A copy where each node in ``targets`` gives way to the tensor it maps to: its readers (of
    port 0, as data) read that tensor instead, and one that is an output becomes an Identity of it,
    so the output keeps its name. What no one reads any more is pruned."""
    out = copy(graph)
    keep = set(ctx.output_nodes)
    for node in out.node:
        if node.name in targets and node.name in keep:
            t = node.attr["T"].type
            node.op = "Identity"
            node.ClearField("attr")
            node.attr["T"].type = t
            node.input[:] = [targets[node.name]]
            continue
        for i, inp in enumerate(node.input):
            src, port = split_tensor(inp)
            if not inp.startswith("^") and port == 0 and src in targets and src not in keep:
                node.input[i] = targets[src]
    return prune(out, ctx)


def rename_inputs(graph: graph_pb2.GraphDef, mapping: dict[str, str]) -> None:
    """Inputs that read a node in ``mapping`` read the node it maps to (same port, control edges too)."""
    for node in graph.node:
        for i, inp in enumerate(node.input):
            src, port = split_tensor(inp)
            if src in mapping:
                node.input[i] = ("^" if inp.startswith("^") else "") + mapping[src] + inp.lstrip("^")[len(src):]


def unique_name(names: set[str], base: str) -> str:
    """``base``, or ``base_1``, ``base_2``...: the first not in ``names``, which it joins."""
    name, k = base, 1
    while name in names:
        name, k = f"{base}_{k}", k + 1
    names.add(name)
    return name


# -- layouts and node shapes ----------------------------------------------------------

def nhwc(node: node_def_pb2.NodeDef) -> bool:
    """Channels last (NHWC, the default), the only layout the folding passes rewrite."""
    return node.attr["data_format"].s in (b"", b"NHWC")


def channel_vector(value, channels: int):
    """A per-output-channel vector from a scalar, [C] or [1, .., 1, C] constant; else None."""
    value = np.asarray(value)
    if value.size == 1:
        return np.full([channels], value.reshape(()), dtype=value.dtype)
    if value.shape[-1] == channels and value.size == channels:
        return value.reshape([channels])
    return None


def out_channels(node: node_def_pb2.NodeDef, weights) -> int | None:
    """Output channels of a conv/matmul ``node`` with ``weights``; None for a layout the folds skip."""
    if node.op == "MatMul":
        if node.attr["transpose_a"].b:
            return None
        return weights.shape[0] if node.attr["transpose_b"].b else weights.shape[1]
    if not nhwc(node) and node.attr["data_format"].s != b"NDHWC":  # Conv3D's channels-last
        return None
    if node.op == "DepthwiseConv2dNative":
        return weights.shape[2] * weights.shape[3]
    return weights.shape[-1]


def to_bias_add(node: node_def_pb2.NodeDef, value: str, bias: str, dtype) -> None:
    """Turn ``node`` into ``BiasAdd(value, bias)``, in place, keeping its name."""
    name = node.name
    node.Clear()
    node.name, node.op = name, "BiasAdd"
    node.input.extend([value, bias])
    node.attr["T"].type = tf.as_dtype(dtype).as_datatype_enum
    node.attr["data_format"].s = b"NHWC"


def transform(graph: graph_pb2.GraphDef, inputs: list[str], outputs: list[str], transforms: str) -> graph_pb2.GraphDef:
    """TensorFlow's TransformGraph (the graph_transforms tool) with the given recipe."""
    data = _pywrap_transform_graph.TransformGraphWithStringInputs(
        graph.SerializeToString(deterministic=True), ",".join(inputs).encode(),
        ",".join(outputs).encode(), transforms.encode())
    out = graph_pb2.GraphDef()
    out.ParseFromString(data)
    return out
