"""Structural passes that run after Grappler: what it leaves on Keras 3 and TF1 graphs.

Each pass is a pure ``(GraphDef, Context) -> GraphDef`` function that emits only
standard TensorFlow ops. Every rewrite is exact in real arithmetic; the ones that
fold constants into weights change float rounding only (well below 1e-5).

- ``fold_input_scale``: a per-channel ``Mul`` by a constant *before* a conv or
  matmul (DenseNet's pre-activation batch norm: Concat -> Mul -> Relu -> Conv),
  moved through Relu/pooling/Mean and folded into the weights' input channels.
- ``fold_pad_into_conv``: an explicit zero ``Pad`` (Keras ZeroPadding2D) becomes
  the following conv's own padding: ``SAME`` when that is the same padding, else
  ``EXPLICIT``.
- ``keepdims_mean``: ``Mean(keep_dims=False) -> Reshape [N, 1, 1, C]`` (Keras'
  squeeze-excite) becomes one ``Mean(keep_dims=True)``.
- ``remove_noops``: Identity, Reshape/Squeeze/ExpandDims chains, and Reshape,
  Transpose, Cast and Pad that change nothing.
- ``dedupe_constants``: identical constants become one.
- ``name_outputs``: the output ``Identity`` goes; the op that computes the output
  takes its name, so ``probs:0`` is still the output.
- ``dense_constants``: every non-scalar constant stores its values in ``tensor_content``
  (Grappler writes splat constants as one repeated value, which OpenCV rejects).
"""

from __future__ import annotations

import hashlib

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2

# Constants at least this large are replaced by placeholders of the same shape when
# a pass only needs static shapes: importing 100 MB of weights to infer shapes is slow.
_LIGHT_CONST_ELEMENTS = 1024


def _copy(graph: graph_pb2.GraphDef) -> graph_pb2.GraphDef:
    out = graph_pb2.GraphDef()
    out.CopyFrom(graph)
    return out


def _num_elements(tensor) -> int:
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
        if node.op == "Const" and _num_elements(node.attr["value"].tensor) >= _LIGHT_CONST_ELEMENTS:
            new.name, new.op = node.name, "Placeholder"
            new.attr["dtype"].type = node.attr["dtype"].type
            new.attr["shape"].shape.CopyFrom(node.attr["value"].tensor.tensor_shape)
        else:
            new.CopyFrom(node)
            new.ClearField("device")
    return light


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


def _shape(shapes: dict, tensor: str):
    node, port = split_tensor(tensor)
    return shapes.get(f"{node}:{port}")


def _const_values(graph: graph_pb2.GraphDef):
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


def _users(graph: graph_pb2.GraphDef) -> dict[str, list[tuple[node_def_pb2.NodeDef, int]]]:
    """node name -> [(consumer, input index)], data and control inputs alike."""
    users: dict[str, list] = {}
    for n in graph.node:
        for i, inp in enumerate(n.input):
            users.setdefault(split_tensor(inp.lstrip("^"))[0], []).append((n, i))
    return users


def _make_const(name: str, value, dtype=None) -> node_def_pb2.NodeDef:
    node = node_def_pb2.NodeDef(name=name, op="Const")
    proto = tf.make_tensor_proto(np.asarray(value), dtype=dtype)
    node.attr["dtype"].type = proto.dtype
    node.attr["value"].tensor.CopyFrom(proto)
    return node


def _unique_name(names: set[str], base: str) -> str:
    name, k = base, 1
    while name in names:
        name, k = f"{base}_{k}", k + 1
    names.add(name)
    return name


def _prune(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    return tf.compat.v1.graph_util.extract_sub_graph(graph, ctx.output_nodes)


def _rewire(users, old: str, new: str) -> None:
    """Every data input reading ``old`` (a node's port 0 or 'node:0') now reads ``new``."""
    for consumer, i in users.get(split_tensor(old)[0], []):
        inp = consumer.input[i]
        if not inp.startswith("^") and split_tensor(inp) == split_tensor(old):
            consumer.input[i] = new


def _single_data_user(users, name: str, keep: set[str]):
    """The only consumer of node ``name`` (reading its port 0 as data), or None."""
    found = users.get(name, [])
    if name in keep or len(found) != 1:
        return None
    consumer, i = found[0]
    inp = consumer.input[i]
    if inp.startswith("^") or split_tensor(inp)[1] != 0:
        return None
    return consumer, i


def _nhwc(node) -> bool:
    return node.attr["data_format"].s in (b"", b"NHWC")


# -- fold_input_scale ------------------------------------------------------------

def fold_input_scale(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Fold a per-channel ``Mul`` by a constant into the input channels of the conv or
    matmul it feeds, possibly through channel-wise ops that commute with a scale.

        Mul(x, s) -> [Relu | MaxPool (s > 0)] [AvgPool | Mean over H, W]* -> Conv2D/Depthwise/MatMul(W)
        ==> x -> ... -> Conv2D(W * s over the input-channel axis)

    Relu and MaxPool commute with a positive scale only; average pooling and a
    spatial Mean with any scale. Zero padding stays zero under scaling, so every
    conv padding is exact. Each node on the way must have that one consumer.

    Off in opencv mode: OpenCV 4.14 cannot propagate its layout through
    ``ConcatV2 -> Relu`` once the Mul between them is gone (DenseNet121).
    """
    if ctx.opencv:
        return graph
    out = _copy(graph)
    keep = set(ctx.output_nodes)
    consts = _const_values(out)
    users = _users(out)
    shapes = None
    names = {n.name for n in out.node}
    new_consts = []
    changed = False
    for node in list(out.node):
        if node.op != "Mul" or len(node.input) != 2 or any(i.startswith("^") for i in node.input):
            continue
        a, b = node.input
        if split_tensor(b)[0] not in consts and split_tensor(a)[0] in consts:
            a, b = b, a
        if split_tensor(b)[0] not in consts or split_tensor(a)[0] in consts:
            continue
        scale = np.asarray(consts[split_tensor(b)[0]])
        if not np.issubdtype(scale.dtype, np.floating) or (scale.ndim > 1 and any(d != 1 for d in scale.shape[:-1])):
            continue
        # walk to the linear op
        cur, positive = node, bool(np.all(scale > 0))
        target = None
        while True:
            found = _single_data_user(users, cur.name, keep)
            if found is None:
                break
            nxt, idx = found
            if nxt.op in ("Relu", "MaxPool") and positive and _nhwc(nxt):
                cur = nxt
                continue
            if nxt.op == "AvgPool" and _nhwc(nxt):
                cur = nxt
                continue
            if nxt.op == "Mean" and idx == 0 and split_tensor(nxt.input[1])[0] in consts:
                if shapes is None:
                    shapes = static_shapes(out)
                rank = len(_shape(shapes, nxt.input[0]) or []) or None
                axes = np.asarray(consts[split_tensor(nxt.input[1])[0]]).reshape(-1)
                if rank and all(0 < (int(x) % rank) < rank - 1 for x in axes):
                    cur = nxt
                    continue
                break
            if nxt.op in ("Conv2D", "DepthwiseConv2dNative", "MatMul") and idx == 0 \
                    and split_tensor(nxt.input[1])[0] in consts:
                target = nxt
            break
        if target is None:
            continue
        weights = np.asarray(consts[split_tensor(target.input[1])[0]])
        if weights.dtype != scale.dtype:
            continue
        if target.op == "MatMul":
            if target.attr["transpose_a"].b:
                continue
            in_axis = 1 if target.attr["transpose_b"].b else 0
        else:
            if not _nhwc(target):
                continue
            in_axis = 2
        channels = weights.shape[in_axis]
        vec = scale.reshape(-1)
        if vec.size == 1:
            vec = np.full([channels], vec[0], dtype=vec.dtype)
        if vec.size != channels:
            continue
        # The Mul must not broadcast x up to more channels or a bigger shape.
        if shapes is None:
            shapes = static_shapes(out)
        x_shape, y_shape = _shape(shapes, a), _shape(shapes, node.name)
        if x_shape is None or x_shape != y_shape or None in x_shape[1:]:
            continue
        bshape = [1] * weights.ndim
        bshape[in_axis] = channels
        wname = _unique_name(names, f"{target.name}/input_scaled_weights")
        new_consts.append(_make_const(wname, (weights * vec.reshape(bshape)).astype(weights.dtype)))
        consts[wname] = np.asarray(weights * vec.reshape(bshape))  # a Const for later candidates
        target.input[1] = wname
        _rewire(users, node.name, a)
        users[split_tensor(a)[0]] = users.get(split_tensor(a)[0], []) + users.pop(node.name, [])
        changed = True
    if not changed:
        return graph
    out.node.extend(new_consts)
    return _prune(out, ctx)


# -- fold_pad_into_conv -----------------------------------------------------------

def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def fold_pad_into_conv(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``Pad(x, zeros around H and W) -> Conv2D/DepthwiseConv2dNative(VALID|EXPLICIT)`` becomes
    one conv: ``SAME`` when TF's SAME padding of x is exactly those pads (MobileNet's and
    EfficientNet's ``correct_pad``), else ``EXPLICIT`` with the summed pads (ResNet's 3-pixel pad)."""
    out = _copy(graph)
    keep = set(ctx.output_nodes)
    consts = _const_values(out)
    users = _users(out)
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
        found = _single_data_user(users, pad.name, keep)
        if found is None:
            continue
        conv, idx = found
        if conv.op not in ("Conv2D", "DepthwiseConv2dNative") or idx != 0 or not _nhwc(conv):
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
        x_shape = _shape(shapes, pad.input[0])
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
    return _prune(out, ctx) if changed else graph


# -- keepdims_mean ---------------------------------------------------------------

def keepdims_mean(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``Reshape(Mean(x, axes, keep_dims=False), s)`` whose result is exactly the
    ``keep_dims=True`` shape becomes ``Mean(x, axes, keep_dims=True)``, under the Reshape's name."""
    out = _copy(graph)
    keep = set(ctx.output_nodes)
    consts = _const_values(out)
    users = _users(out)
    by_name = {n.name: n for n in out.node}
    shapes = None
    changed = False
    for node in out.node:
        if node.op != "Reshape" or node.input[0].startswith("^"):
            continue
        mean = by_name.get(split_tensor(node.input[0])[0])
        if mean is None or mean.op != "Mean" or mean.attr["keep_dims"].b or split_tensor(node.input[0])[1]:
            continue
        if _single_data_user(users, mean.name, keep) is None or split_tensor(mean.input[1])[0] not in consts:
            continue
        if shapes is None:
            shapes = static_shapes(out)
        x_shape, y_shape = _shape(shapes, mean.input[0]), _shape(shapes, node.name)
        if x_shape is None or y_shape is None or None in x_shape[1:] or None in y_shape[1:]:
            continue
        axes = {int(a) % len(x_shape) for a in np.asarray(consts[split_tensor(mean.input[1])[0]]).reshape(-1)}
        kept = [1 if k in axes else d for k, d in enumerate(x_shape)]
        if 0 in axes or kept[1:] != y_shape[1:] or x_shape[0] != y_shape[0] and y_shape[0] is not None:
            continue
        name = node.name
        node.CopyFrom(mean)
        node.name = name
        node.attr["keep_dims"].b = True
        changed = True
    return _prune(out, ctx) if changed else graph


# -- remove_noops ------------------------------------------------------------------

_SHAPE_OPS = ("Reshape", "Squeeze", "ExpandDims")


def remove_noops(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Drop ops that change nothing and merge reshape chains.

    - Identity (not an output), Cast to its own type, Transpose by the identity
      permutation, Pad by zeros, and Reshape/Squeeze/ExpandDims whose static
      output shape is its input's: consumers read the input instead.
    - A chain of Reshape/Squeeze/ExpandDims: the last one becomes a single
      Reshape of the chain's input to its static shape (batch left as -1).
    """
    out = _copy(graph)
    keep = set(ctx.output_nodes)
    consts = _const_values(out)
    by_name = {n.name: n for n in out.node}
    shapes = static_shapes(out)
    names = set(by_name)
    users = _users(out)
    new_consts = []
    changed = False

    def same_shape(a, b):
        sa, sb = _shape(shapes, a), _shape(shapes, b)
        return sa is not None and sa == sb and None not in sa[1:]

    for node in out.node:
        if node.name in keep or not node.input or node.input[0].startswith("^") \
                or any(i.startswith("^") for i in node.input):
            continue
        src = node.input[0]
        noop = False
        if node.op == "Identity":
            noop = True
        elif node.op == "Cast":
            noop = node.attr["SrcT"].type == node.attr["DstT"].type
        elif node.op == "Transpose" and split_tensor(node.input[1])[0] in consts:
            perm = np.asarray(consts[split_tensor(node.input[1])[0]]).reshape(-1)
            noop = bool((perm == np.arange(perm.size)).all())
        elif node.op in ("Pad", "PadV2", "MirrorPad") and split_tensor(node.input[1])[0] in consts:
            noop = not np.asarray(consts[split_tensor(node.input[1])[0]]).any()
        elif node.op in _SHAPE_OPS:
            noop = same_shape(src, node.name)
        if noop:
            _rewire(users, node.name, src)
            users.setdefault(split_tensor(src)[0], []).extend(users.pop(node.name, []))
            changed = True
            continue
        if node.op in _SHAPE_OPS:
            inner = by_name.get(split_tensor(src)[0])
            if inner is None or inner.op not in _SHAPE_OPS or split_tensor(src)[1] \
                    or _single_data_user(users, inner.name, keep) is None:
                continue
            target = _shape(shapes, node.name)
            if target is None or None in target[1:]:
                continue
            dims = [-1 if d is None else d for d in target]
            sname = _unique_name(names, f"{node.name}/merged_shape")
            new_consts.append(_make_const(sname, np.asarray(dims, np.int32)))
            consts[sname] = np.asarray(dims, np.int32)
            dtype = node.attr["T"].type
            name = node.name
            node.Clear()
            node.name, node.op = name, "Reshape"
            node.input.extend([inner.input[0], sname])
            node.attr["T"].type = dtype
            node.attr["Tshape"].type = tf.int32.as_datatype_enum
            changed = True
    if not changed:
        return graph
    out.node.extend(new_consts)
    return _prune(out, ctx)


# -- dedupe_constants -------------------------------------------------------------

def dedupe_constants(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Constants with the same dtype, shape and values become one, the first by name."""
    keep = set(ctx.output_nodes)
    groups: dict[tuple, list[node_def_pb2.NodeDef]] = {}
    for node in graph.node:
        if node.op != "Const" or node.name in keep or node.input:
            continue
        t = node.attr["value"].tensor
        key = (t.dtype, tuple(d.size for d in t.tensor_shape.dim))
        groups.setdefault(key, []).append(node)
    mapping = {}
    for nodes in groups.values():
        if len(nodes) < 2:
            continue
        by_value: dict[bytes, str] = {}
        for node in sorted(nodes, key=lambda n: n.name):
            t = node.attr["value"].tensor
            # after dense_constants every numeric constant is tensor_content: equal bytes, equal values
            data = t.tensor_content or t.SerializeToString(deterministic=True)
            key = hashlib.sha256(data).digest()
            if key in by_value:
                mapping[node.name] = by_value[key]
            else:
                by_value[key] = node.name
    if not mapping:
        return graph
    out = _copy(graph)
    for node in out.node:
        for i, inp in enumerate(node.input):
            ctrl = inp.startswith("^")
            base, sep, port = inp.lstrip("^").partition(":")
            if base in mapping:
                node.input[i] = ("^" if ctrl else "") + mapping[base] + sep + port
    return _prune(out, ctx)


# -- name_outputs ------------------------------------------------------------------

def name_outputs(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``out = Identity(y)``: ``y`` takes the name ``out`` and the Identity goes.

    Only when ``y`` is an op's port 0, read by nothing else, not an input or
    another output, and not a Const (a constant output keeps its Identity).
    """
    keep = set(ctx.output_nodes)
    inputs = set(ctx.input_nodes)
    by_name = {n.name: n for n in graph.node}
    users = _users(graph)
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
        mapping[src] = name
    if not mapping:
        return graph
    out = graph_pb2.GraphDef()
    out.CopyFrom(graph)
    drop = set(mapping.values())
    kept = [n for n in out.node if n.name not in drop]
    del out.node[:]
    for node in kept:
        node.name = mapping.get(node.name, node.name)
        for i, inp in enumerate(node.input):
            ctrl = inp.startswith("^")
            base, sep, port = inp.lstrip("^").partition(":")
            if base in mapping:
                node.input[i] = ("^" if ctrl else "") + mapping[base] + sep + port
        out.node.append(node)
    return out


# -- dense_constants -----------------------------------------------------------------

_REPEATED_FIELDS = ("float_val", "double_val", "int_val", "int64_val", "half_val", "bool_val",
                    "uint32_val", "uint64_val", "scomplex_val", "dcomplex_val")


def dense_constants(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Every numeric constant with more than one element keeps its values in ``tensor_content``.

    Grappler stores a constant whose elements are all equal as one repeated
    value; TF expands it on load, but OpenCV's importer asserts on it
    (``getTensorContentRef_: !field.empty()``, EfficientNet). Scalars stay as they
    are: OpenCV reads scalar axes from ``int_val`` (DenseNet's concat axis).
    Same values, same TF graph.
    """
    todo = [i for i, n in enumerate(graph.node) if n.op == "Const" and not n.attr["value"].tensor.tensor_content
            and _num_elements(n.attr["value"].tensor) > 1
            and n.attr["value"].tensor.dtype not in (tf.string.as_datatype_enum, tf.resource.as_datatype_enum,
                                                       tf.variant.as_datatype_enum)]
    if not todo:
        return graph
    out = _copy(graph)
    for i in todo:
        tensor = out.node[i].attr["value"].tensor
        value = np.ascontiguousarray(tf.make_ndarray(tensor))
        for f in _REPEATED_FIELDS:
            tensor.ClearField(f)
        tensor.tensor_content = value.tobytes()
    return out
