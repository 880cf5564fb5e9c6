"""Tiny graphs and helpers shared by the optimizer tests."""

from __future__ import annotations

import numpy as np

from kfreeze import graphio
from kfreeze.optimize import Context, InputSpec
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2

RTOL = ATOL = 1e-5


def ctx(inputs=("x",), outputs=("out",), **kw) -> Context:
    return Context(tuple(i if isinstance(i, InputSpec) else InputSpec(i) for i in inputs), tuple(outputs), **kw)


def run(graph: graph_pb2.GraphDef, feeds: dict, fetch: str = "out:0"):
    """Import ``graph`` into a fresh tf.Graph and run ``fetch`` with tensor-name ``feeds``."""
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(graph, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            return sess.run(fetch, feed_dict=feeds)


def ops(graph: graph_pb2.GraphDef) -> dict[str, int]:
    return graphio.op_histogram(graph)


def by_name(graph: graph_pb2.GraphDef) -> dict[str, node_def_pb2.NodeDef]:
    return {n.name: n for n in graph.node}


def const(rng, *shape, low=None, high=None):
    if low is None:
        value = rng.normal(size=shape)
    else:
        value = rng.uniform(low, high, size=shape)
    return tf.constant(value.astype(np.float32))


def const_value(graph: graph_pb2.GraphDef, name: str) -> np.ndarray:
    node = by_name(graph)[name.split(":")[0]]
    assert node.op == "Const", f"{name} is a {node.op}, not a Const"
    return tf.make_ndarray(node.attr["value"].tensor)


def assert_topological(graph: graph_pb2.GraphDef) -> None:
    seen = set()
    for node in graph.node:
        for inp in node.input:
            assert inp.lstrip("^").split(":")[0] in seen, f"{node.name} reads {inp} before it is defined"
        seen.add(node.name)


def mid_relu_graph(rng):
    """x -> Mul -> Relu 'mid' -> MatMul -> 'out'."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        mid = tf.nn.relu(x * 3.0, name="mid")
        tf.identity(tf.matmul(mid, const(rng, 4, 3)), name="out")
    return g.as_graph_def()


def split_graph(rng):
    """x -> Split 'split' (2 outputs); the output reads only split:1."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        _, right = tf.split(x, 2, axis=1, name="split")
        tf.identity(tf.matmul(right, const(rng, 2, 3)), name="out")
    return g.as_graph_def()


def flag_graph():
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        keep = tf.compat.v1.placeholder_with_default(0.25, [], name="keep_prob")
        tf.identity(x * keep, name="out")
    return g.as_graph_def()


def flatten_graph(rng):
    """Keras-3-style Flatten: Reshape(x, Pack([StridedSlice(Shape(x)), 32]))."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4, 4, 2], name="x")
        h = tf.nn.relu(x)
        batch = tf.shape(h)[0]
        flat = tf.reshape(h, tf.stack([batch, 32]), name="flat")
        tf.identity(tf.matmul(flat, const(rng, 32, 3)), name="out")
    return g.as_graph_def()


def conv_bn_graph(rng, bn_op):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 6, 6, 2], name="x")
        conv = tf.nn.conv2d(x, const(rng, 3, 3, 2, 4), 1, "SAME", name="conv")
        y = bn_op(x=conv, scale=const(rng, 4, low=0.5, high=1.5), offset=const(rng, 4), mean=const(rng, 4),
                  variance=const(rng, 4, low=0.5, high=2.0), epsilon=1e-3, is_training=False, name="bn")[0]
        tf.nn.relu(y, name="out")
    return g.as_graph_def()


def small_net(rng):
    """uint8-fed conv + Keras-3-style batch norm (Mul/Add) + ReLU + dynamic Flatten + dense softmax,
    with an is_training flag and a side branch the outputs do not need."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 6, 6, 1], name="image")
        training = tf.compat.v1.placeholder_with_default(False, [], name="is_training")
        y = tf.nn.conv2d(x, const(rng, 3, 3, 1, 4), 1, "SAME", name="conv")
        y = tf.nn.bias_add(y, const(rng, 4), name="conv_bias")
        mean, var = const(rng, 4), const(rng, 4, low=0.5, high=2.0)
        gamma, beta = const(rng, 4, low=0.5, high=1.5), const(rng, 4)
        inv = tf.math.rsqrt(var + 1e-3) * gamma
        y = y * inv + (beta - mean * inv)
        y = tf.nn.relu(y, name="relu")
        drop = 1.0 - 0.5 * tf.cast(training, tf.float32)
        y = y * drop
        flat = tf.reshape(y, tf.stack([tf.shape(y)[0], 6 * 6 * 4]), name="flat")
        logits = tf.nn.bias_add(tf.matmul(flat, const(rng, 144, 3)), const(rng, 3), name="logits")
        tf.nn.softmax(logits, name="out")
        tf.reduce_mean(logits, name="unused")
    return g.as_graph_def()


def dropout_graph(rng, form, rate_value):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 6], name="x")
        h = tf.matmul(x, const(rng, 6, 4))
        if form == "v2":  # TF >= 1.13: SelectV2(GreaterEqual(uniform, rate), x / (1 - rate), 0)
            rate = tf.compat.v1.placeholder_with_default(rate_value, [], name="dropout_rate")
            h = tf.nn.dropout(h, rate=rate)
        else:  # TF < 1.13: x / keep_prob * floor(keep_prob + uniform)
            keep = tf.compat.v1.placeholder_with_default(1.0 - rate_value, [], name="keep_prob")
            mask = tf.floor(keep + tf.random.uniform(tf.shape(h)))
            h = h / keep * mask
        tf.nn.softmax(h, name="out")
    return g.as_graph_def()


def training_dropout_graph(rng, form):
    """Dropout as TF1 training code writes it, its keep/rate flag at a *training* value."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 6], name="x")
        h = tf.matmul(x, const(rng, 6, 4))
        if form == "rate_default_0.5":  # TF >= 1.13 tf.nn.dropout(rate=...)
            h = tf.nn.dropout(h, rate=tf.compat.v1.placeholder_with_default(0.5, [], name="dropout_rate"))
        elif form == "keep_prob_default_0.5":  # tf.nn.dropout(keep_prob=...): rate = 1 - keep_prob
            keep = tf.compat.v1.placeholder_with_default(0.5, [], name="keep_prob")
            h = tf.nn.dropout(h, rate=1.0 - keep)
        elif form == "keep_prob_placeholder":  # the MNIST tutorial: a plain placeholder fed 0.5 / 1.0
            keep = tf.compat.v1.placeholder(tf.float32, name="keep_prob")
            h = h / keep * tf.floor(keep + tf.random.uniform(tf.shape(h)))
        elif form == "cast_mask":  # TF 1.13-1.15: x * scale * cast(mask)
            rate = tf.compat.v1.placeholder_with_default(0.3, [], name="rate")
            mask = tf.cast(tf.random.uniform(tf.shape(h)) >= rate, tf.float32)
            h = h * (1.0 / (1.0 - rate)) * mask
        elif form == "constant_rate":  # hard-coded: no flag at all
            h = tf.nn.dropout(h, rate=0.25)
        elif form == "learning_phase":  # Keras 2: tf.cond on a bool learning phase, default True
            phase = tf.compat.v1.placeholder_with_default(True, [], name="keras_learning_phase")
            tf.compat.v1.disable_control_flow_v2()  # TF1 graphs hold Switch/Merge, not If
            try:
                h = tf.cond(phase, lambda: tf.nn.dropout(h, rate=0.5), lambda: tf.identity(h))
            finally:
                tf.compat.v1.enable_control_flow_v2()
        tf.nn.softmax(h, name="out")
    return g.as_graph_def()


INFERENCE_FEEDS = {"rate_default_0.5": {"dropout_rate:0": 0.0}, "keep_prob_default_0.5": {"keep_prob:0": 1.0},
                   "keep_prob_placeholder": {"keep_prob:0": 1.0}, "cast_mask": {"rate:0": 0.0},
                   "constant_rate": None, "learning_phase": {"keras_learning_phase:0": False}}


def run(graph: graph_pb2.GraphDef, feeds: dict, fetch: str = "out:0"):
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(graph, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            return sess.run(fetch, feed_dict=feeds)


def ops(graph) -> dict[str, int]:
    return graphio.op_histogram(graph)


def same_numbers(a, b, x, atol=ATOL):
    np.testing.assert_allclose(run(a, {"x:0": x}), run(b, {"x:0": x}), rtol=1e-5, atol=atol)


def scale_graph(rng, scale, tail):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 6, 6, 4], name="x")
        y = tf.multiply(x, tf.constant(scale.astype(np.float32)), name="bn_mul")
        if tail == "relu_conv":
            y = tf.nn.conv2d(tf.nn.relu(y), const(rng, 3, 3, 4, 5), 1, "SAME", name="conv")
        elif tail == "conv":
            y = tf.nn.conv2d(y, const(rng, 3, 3, 4, 5), 2, "VALID", name="conv")
        elif tail == "depthwise":
            y = tf.nn.depthwise_conv2d(y, const(rng, 3, 3, 4, 2), [1, 1, 1, 1], "SAME", name="conv")
        elif tail == "relu_mean_matmul":
            y = tf.matmul(tf.reduce_mean(tf.nn.relu(y), axis=[1, 2]), const(rng, 4, 3), name="conv")
        elif tail == "avgpool_conv":
            y = tf.nn.conv2d(tf.nn.avg_pool2d(y, 2, 2, "SAME"), const(rng, 1, 1, 4, 5), 1, "VALID", name="conv")
        tf.identity(y, name="out")
    return g.as_graph_def()


def pad_graph(rng, pads, kernel, stride, depthwise=False, size=8, fill=None):
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, size, size, 3], name="x")
        paddings = [[0, 0], pads[0], pads[1], [0, 0]]
        y = tf.pad(x, paddings, constant_values=fill) if fill is not None else tf.pad(x, paddings)
        if depthwise:
            y = tf.nn.depthwise_conv2d(y, const(rng, kernel, kernel, 3, 1), [1, stride, stride, 1], "VALID")
        else:
            y = tf.nn.conv2d(y, const(rng, kernel, kernel, 3, 4), stride, "VALID")
        tf.identity(y, name="out")
    return g.as_graph_def()


def _linear(kind, rng, x, depthwise=False):
    if kind == "matmul":
        return tf.matmul(x, const(rng, 6, 6)), 6
    if depthwise:
        return tf.nn.depthwise_conv2d(x, const(rng, 3, 3, 4, 1), [1, 1, 1, 1], "SAME"), 4
    return tf.nn.conv2d(x, const(rng, 3, 3, 4, 4), 1, "SAME"), 4


def _batch_norm(rng, y, c):
    return y * const(rng, c, low=0.5, high=1.5) + const(rng, c)


def residual_block_graph(kind, rng, bias="bn"):
    """x -> linear -> batch norm = r; r -> linear -> bias -> AddV2(r) -> Relu -> 'out', Keras 3's ops.

    The residual ``r`` is an AddV2 itself (the previous block's batch norm), as in MobileNetV2:
    then Grappler's AddOpsRewrite takes the sum apart. The second block's bias: ``bn``: a batch
    norm after a conv without bias (Mul + AddV2; MobileNetV2's projections), ``keras_bias``: the
    conv's own bias (Reshape(Const) + AddV2) then a batch norm, ``bias_add``: a TF1 BiasAdd
    then a batch norm, ``none``: no bias and no batch norm.
    """
    shape = [1, 6] if kind == "matmul" else [1, 6, 6, 4]
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, shape, name="x")
        r = _batch_norm(rng, *_linear(kind, rng, x))
        y, c = _linear(kind, rng, r, depthwise=kind == "depthwise")
        if bias == "keras_bias":
            y = y + tf.reshape(const(rng, c), [1] * (len(shape) - 1) + [c])
        elif bias == "bias_add":
            y = tf.nn.bias_add(y, const(rng, c))
        if bias != "none":
            y = _batch_norm(rng, y, c)
        tf.nn.relu(y + r, name="out")
    return g.as_graph_def()


def keras_frozen(model) -> tuple[graph_pb2.GraphDef, list[str], list[str]]:
    """``model`` exported and frozen as the pipeline does it (variables -> constants), in-process:
    the graph, the input names and the output names."""
    from kfreeze import export

    ex = export.export_model(model)
    graph = graph_pb2.GraphDef()
    graph.CopyFrom(ex.graph)
    for node in graph.node:
        if node.name in ex.values:
            value = np.asarray(ex.values[node.name])
            node.op = "Const"
            node.ClearField("attr")
            node.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    inputs = [i["name"] for i in ex.signature["inputs"]]
    outputs = [o["name"] for o in ex.signature["outputs"]]
    return tf.compat.v1.graph_util.extract_sub_graph(graph, outputs), inputs, outputs
