"""TF1 graphs + checkpoints as training code leaves them, built in the test (graph mode, ref variables)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kfreeze.tfenv import tf

REST = "    opencv: false\n    precision: float32\n    trust_code: false\n"


def _var(name, value):
    return tf.compat.v1.get_variable(name, initializer=tf.constant(value), use_resource=False)


def _save(g, out: Path, init_values=None, step=10):
    out.mkdir(parents=True, exist_ok=True)
    tf.io.write_graph(g.as_graph_def(add_shapes=True), str(out), "graph.pbtxt", as_text=True)
    with g.as_default():
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(out / f"model.ckpt-{step}"), write_meta_graph=False, write_state=False)


def dropout_graph(out: Path, nan: bool = False):
    """tf.data input, conv + dense, dropout whose keep_prob is placeholder_with_default(0.5):
    the training value. Trained-looking weights: random, outputs depend on the input."""
    rng = np.random.default_rng(3)
    with tf.Graph().as_default() as g:
        ds = tf.data.Dataset.from_tensor_slices(np.zeros([8, 6, 6, 1], np.float32)).batch(4)
        image = tf.compat.v1.data.make_one_shot_iterator(ds).get_next()
        keep_prob = tf.compat.v1.placeholder_with_default(0.5, [], name="keep_prob")
        w = rng.normal(0, 0.5, [3, 3, 1, 4]).astype(np.float32)
        if nan:
            w[0, 0, 0, 0] = np.nan
        x = tf.nn.relu(tf.nn.conv2d(image, _var("conv/kernel", w), 1, "SAME") + _var("conv/bias", rng.normal(0, .3, 4).astype(np.float32)))
        x = tf.nn.dropout(x, rate=1.0 - keep_prob)
        x = tf.reshape(x, [-1, 144])
        logits = tf.nn.bias_add(tf.matmul(x, _var("dense/kernel", rng.normal(0, .3, [144, 5]).astype(np.float32))),
                                _var("dense/bias", rng.normal(0, .3, 5).astype(np.float32)), name="logits")
        tf.nn.softmax(logits, name="softmax_tensor")
    _save(g, out)


def estimator_graph(out: Path):
    """TF 1.5 Estimator with numpy_input_fn: a FIFO queue dequeues [index int64, features float]
    100 at a time; the model_fn reshapes the features to [100, 8, 8, 1]; conv, dense, softmax."""
    rng = np.random.default_rng(4)
    with tf.Graph().as_default() as g:
        queue = tf.queue.FIFOQueue(1000, [tf.int64, tf.float32], shapes=[[], [64]], name="enqueue_input/fifo_queue")
        index, feats = queue.dequeue_many(100, name="fifo_queue_DequeueMany")
        del index
        img = tf.reshape(feats, [100, 8, 8, 1], name="input_layer")
        x = tf.nn.conv2d(img, _var("conv2d/kernel", rng.normal(0, .5, [3, 3, 1, 4]).astype(np.float32)), 1, "SAME")
        x = tf.nn.relu(tf.nn.bias_add(x, _var("conv2d/bias", rng.normal(0, .3, 4).astype(np.float32))))
        x = tf.nn.max_pool2d(x, 2, 2, "VALID")
        x = tf.reshape(x, [-1, 64])
        logits = tf.matmul(x, _var("dense/kernel", rng.normal(0, .3, [64, 10]).astype(np.float32)), name="logits")
        tf.nn.softmax(logits, name="softmax_tensor")
    _save(g, out)


def params_text(name: str, inputs: str, input_shape: str, verify: str = "verify: {samples: 16, seed: 0}\n") -> str:
    return (f"models: {{}}\ngraphs:\n  {name}:\n    graph: models/{name}/graph.pbtxt\n"
            f"    checkpoint: models/{name}/model.ckpt-10\n    inputs: {inputs}\n    outputs: [softmax_tensor]\n"
            f"    input_shape: {input_shape}\n    input_dtype: null\n" + REST + verify)
