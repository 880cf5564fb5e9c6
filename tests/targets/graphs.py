"""Tiny optimized-graph-like GraphDefs for the target tests: built with tf.compat.v1 ops in
milliseconds, with seeded weights of trained-looking scale and outputs that depend on the input."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kfreeze import graphio
from kfreeze.tfenv import tf


@dataclass
class Graph:
    graph: object
    inputs: list[str]
    outputs: list[str]

    def write(self, out: Path) -> Path:
        """BUILD/<name>/ as the target stages read it: optimized.pb and names.json."""
        out.mkdir(parents=True, exist_ok=True)
        graphio.write_graph(self.graph, out / "optimized.pb")
        graphio.write_json(out / "names.json", {"inputs": self.inputs, "outputs": self.outputs})
        return out


def _w(rng, *shape, scale=0.5):
    return tf.constant(rng.normal(0, scale, shape).astype(np.float32))


def conv_two_heads(batch=None) -> Graph:
    """Two inputs (an NHWC image, a vector), two outputs: a 4-D feature map and softmax class scores."""
    rng = np.random.default_rng(0)
    g = tf.Graph()
    with g.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [batch, 6, 6, 2], name="image")
        vec = tf.compat.v1.placeholder(tf.float32, [batch, 4], name="vec")
        x = tf.nn.bias_add(tf.nn.conv2d(image, _w(rng, 3, 3, 2, 4), 1, "SAME"), _w(rng, 4))
        fmap = tf.nn.relu(x, name="fmap")
        pooled = tf.reduce_mean(tf.nn.max_pool2d(fmap, 2, 2, "VALID"), axis=[1, 2])
        v = tf.nn.tanh(tf.matmul(vec, _w(rng, 4, 4)) + _w(rng, 4))
        logits = tf.matmul(tf.concat([pooled, v], 1), _w(rng, 8, 3)) + _w(rng, 3)
        tf.nn.softmax(logits, name="probs")
    return Graph(g.as_graph_def(), ["image", "vec"], ["fmap", "probs"])


def dense(batch=None) -> Graph:
    rng = np.random.default_rng(1)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [batch, 5], name="x")
        h = tf.nn.relu(tf.matmul(x, _w(rng, 5, 7)) + _w(rng, 7))
        tf.add(tf.matmul(h, _w(rng, 7, 2)), _w(rng, 2), name="logits")
    return Graph(g.as_graph_def(), ["x"], ["logits"])


def matrix_inverse() -> Graph:
    """An op neither tf2onnx nor the TFLite builtins convert."""
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 3, 3], name="x")
        tf.linalg.inv(x + 3.0 * tf.eye(3), name="inverse")
    return Graph(g.as_graph_def(), ["x"], ["inverse"])


def run_tf(graph: Graph, feeds: dict) -> dict:
    from kfreeze.verify import run_graph
    return run_graph(graph.graph, feeds, graph.outputs)


def feeds_for(graph: Graph, samples: int = 4, seed: int = 0) -> dict:
    from kfreeze.verify import make_inputs, placeholder_infos
    return make_inputs(placeholder_infos(graph.graph, graph.inputs), samples, seed)


def rel_err(ref: dict, got: dict) -> float:
    return max(float(np.max(np.abs(np.asarray(got[k], np.float64) - r))) / float(np.max(np.abs(r)))
               for k, r in ref.items())


def gray_conv() -> Graph:
    """A one-channel image, batch 1, conv + pool + flatten + dense: tf2onnx turns its NCHW transpose
    into a Reshape and folds constants, the nodes whose made-up names depended on the hash seed."""
    rng = np.random.default_rng(2)
    g = tf.Graph()
    with g.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 1], name="image")
        x = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(image, _w(rng, 3, 3, 1, 4), 1, "SAME"), _w(rng, 4)))
        x = tf.reshape(tf.nn.max_pool2d(x, 2, 2, "VALID"), [-1, 64])
        tf.nn.softmax(tf.matmul(x, _w(rng, 64, 3)) + _w(rng, 3), name="probs")
    return Graph(g.as_graph_def(), ["image"], ["probs"])


def conv_any_size() -> Graph:
    """An NHWC image of any batch, height and width (a fully convolutional trunk, global mean, softmax)."""
    rng = np.random.default_rng(3)
    g = tf.Graph()
    with g.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [None, None, None, 2], name="image")
        fmap = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(image, _w(rng, 3, 3, 2, 4), 1, "SAME"), _w(rng, 4)), name="fmap")
        tf.nn.softmax(tf.matmul(tf.reduce_mean(fmap, axis=[1, 2]), _w(rng, 4, 3)) + _w(rng, 3), name="probs")
    return Graph(g.as_graph_def(), ["image"], ["fmap", "probs"])
