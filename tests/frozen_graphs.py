"""Frozen GraphDefs as users bring them, each built in a fresh interpreter (TF1 graph mode).

``build(kind, path)`` runs this file as a script: ``tf.compat.v1.disable_v2_behavior()`` changes the
whole process, so the test process never calls it (and never forks a process that runs TensorFlow).

- ``seed``: the seeds' step-4 input: a tf.data pipeline (IteratorGetNext) feeding a small conv net,
  frozen with ``tf.compat.v1.graph_util.convert_variables_to_constants``; output ``softmax_tensor``.
- ``keras_tf1``: a tf_keras model frozen from its TF1 session (the classic Keras-on-TF1 .pb): the
  keras_learning_phase PlaceholderWithDefault, BatchNorm and Dropout under Switch/Merge; input
  ``conv_input``, output ``probs/Softmax``.
- ``reads_file``: a frozen graph whose output depends on a ReadFile op (the op policy refuses it).
"""

import subprocess
import sys
from pathlib import Path


def build(kind: str, path: Path, text: bool = False) -> Path:
    done = subprocess.run([sys.executable, __file__, kind, str(path), "text" if text else "binary"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return Path(path)


def _seed(tf, np):
    data = np.random.RandomState(0).rand(8, 20, 20, 1).astype(np.float32)
    ds = tf.compat.v1.data.Dataset.from_tensor_slices(data).batch(4).repeat()
    x = tf.compat.v1.data.make_one_shot_iterator(ds).get_next()
    init = tf.compat.v1.glorot_uniform_initializer(seed=0)
    k = tf.compat.v1.get_variable("conv1/kernel", [3, 3, 1, 4], initializer=init)
    b = tf.compat.v1.get_variable("conv1/bias", [4], initializer=tf.compat.v1.constant_initializer(0.1))
    y = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, k, 1, "SAME"), b))
    y = tf.nn.max_pool2d(y, 2, 2, "VALID")
    y = tf.reshape(y, [-1, 10 * 10 * 4])
    w = tf.compat.v1.get_variable("dense/kernel", [400, 10], initializer=init)
    c = tf.compat.v1.get_variable("dense/bias", [10], initializer=tf.compat.v1.constant_initializer(0.01))
    tf.nn.softmax(tf.nn.bias_add(tf.matmul(y, w), c, name="logits"), name="softmax_tensor")
    return ["softmax_tensor"]


def _keras_tf1(tf, np):
    import tf_keras
    from tf_keras.src import backend

    L = tf_keras.layers
    m = tf_keras.Sequential([L.Conv2D(4, 3, input_shape=(8, 8, 2), name="conv"), L.BatchNormalization(name="bn"),
                             L.Activation("relu", name="relu"), L.Dropout(0.5, name="drop"), L.Flatten(name="flat"),
                             L.Dense(3, activation="softmax", name="probs")])
    rng = np.random.RandomState(0)
    for layer in m.layers:  # BN statistics random (variances positive), so the outputs depend on the inputs
        layer.set_weights([rng.uniform(0.5, 1.5, w.shape) if "variance" in w.name or "gamma" in w.name
                           else rng.normal(0, 0.5, w.shape) for w in layer.weights])
    return [m.outputs[0].op.name], backend.get_session()  # the session Keras holds the weights in


def _reads_file(tf, np):
    x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
    n = tf.cast(tf.strings.length(tf.io.read_file("/etc/hostname", name="read")), tf.float32)
    tf.add(x, n, name="y")
    return ["y"]


if __name__ == "__main__":
    import numpy as np
    import tensorflow as tf

    tf.compat.v1.disable_v2_behavior()
    kind, out, fmt = sys.argv[1:4]
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.set_random_seed(0)
        outputs = {"seed": _seed, "reads_file": _reads_file, "keras_tf1": _keras_tf1}[kind](tf, np)
        outputs, sess = outputs if isinstance(outputs, tuple) else (outputs, None)
        if sess is None:
            sess = tf.compat.v1.Session()
            sess.run(tf.compat.v1.global_variables_initializer())
        with sess:
            frozen = tf.compat.v1.graph_util.convert_variables_to_constants(sess, g.as_graph_def(), outputs)
    if fmt == "text":
        Path(out).write_text(str(frozen))
    else:
        Path(out).write_bytes(frozen.SerializeToString())
