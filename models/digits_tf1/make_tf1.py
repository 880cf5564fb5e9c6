"""Train the synthetic-digit task TF1 style and dump graph.pbtxt + a checkpoint.

Writes into this script's folder (models/digits_tf1/):

    graph.pbtxt                              training graph, text GraphDef with
                                             _output_shapes (as an Estimator's
                                             CheckpointSaverHook dumps it)
    model.ckpt-<step>.index / .data-00000-of-00001
    checkpoint                               state file, relative paths only
    README.md

The graph deliberately looks like real TF1 training code: a tf.data input
pipeline (IteratorGetNext), placeholder_with_default flags `is_training` and
`dropout_rate`, batch norm as tf.cond(is_training, train-form, inference-form)
in two styles (FusedBatchNormV3 in block 1; tf.nn.moments +
tf.nn.batch_normalization primitives in block 2), UPDATE_OPS control
dependencies, Adam, global_step, summaries and the Saver's save/ subgraph.

Seeded and single-threaded, so reruns reproduce the same files:

    .venv/bin/python models/digits_tf1/make_tf1.py
"""

import argparse
import importlib.util
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
# Not exported in the public API; it is what tf.layers' batch norm used.
from tensorflow.python.training.moving_averages import assign_moving_average  # noqa: E402

HERE = Path(__file__).resolve().parent
MODELS = HERE.parent

STEPS = 600
BATCH = 64
N_TRAIN = 12000
N_TEST = 1000
TRAIN_SEED = 1   # same render seeds as models/make_examples.py
TEST_SEED = 2
LEARNING_RATE = 2e-3
DROPOUT_TRAIN = 0.3
BN_DECAY = 0.9
BN_EPS = 1e-3


def load_render_digits():
    spec = importlib.util.spec_from_file_location("make_examples", MODELS / "make_examples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.render_digits


def conv_vars(in_ch, out_ch):
    kernel = tf.compat.v1.get_variable(
        "kernel", [3, 3, in_ch, out_ch], tf.float32,
        initializer=tf.compat.v1.glorot_uniform_initializer())
    bias = tf.compat.v1.get_variable(
        "bias", [out_ch], tf.float32, initializer=tf.compat.v1.zeros_initializer())
    return kernel, bias


def bn_vars(channels):
    gamma = tf.compat.v1.get_variable(
        "gamma", [channels], tf.float32, initializer=tf.compat.v1.ones_initializer())
    beta = tf.compat.v1.get_variable(
        "beta", [channels], tf.float32, initializer=tf.compat.v1.zeros_initializer())
    moving_mean = tf.compat.v1.get_variable(
        "moving_mean", [channels], tf.float32,
        initializer=tf.compat.v1.zeros_initializer(), trainable=False)
    moving_var = tf.compat.v1.get_variable(
        "moving_variance", [channels], tf.float32,
        initializer=tf.compat.v1.ones_initializer(), trainable=False)
    return gamma, beta, moving_mean, moving_var


def fused_bn(x, is_training, scope):
    """Block-1 batch norm: FusedBatchNormV3 in both forms, picked by tf.cond."""
    with tf.compat.v1.variable_scope(scope):
        gamma, beta, moving_mean, moving_var = bn_vars(x.shape[-1])

        def train_form():
            y, mean, var = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, epsilon=BN_EPS, is_training=True)
            return y, mean, var

        def infer_form():
            y, mean, var = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, mean=moving_mean, variance=moving_var,
                epsilon=BN_EPS, is_training=False)
            return y, mean, var

        y, mean, var = tf.cond(is_training, train_form, infer_form)
        # In inference the cond returns the moving stats themselves, so the
        # update is a no-op there (the same trick tf.layers' fused BN uses).
        update_mean = assign_moving_average(
            moving_mean, mean, BN_DECAY, zero_debias=False)
        update_var = assign_moving_average(
            moving_var, var, BN_DECAY, zero_debias=False)
        tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.UPDATE_OPS, update_mean)
        tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.UPDATE_OPS, update_var)
        return y


def primitive_bn(x, is_training, scope):
    """Block-2 batch norm, old style: moments / moving stats, then
    tf.nn.batch_normalization (Rsqrt, Mul, Add, Sub)."""
    with tf.compat.v1.variable_scope(scope):
        gamma, beta, moving_mean, moving_var = bn_vars(x.shape[-1])

        def train_stats():
            mean, var = tf.nn.moments(x, axes=[0, 1, 2], name="moments")
            return mean, var

        def infer_stats():
            return tf.identity(moving_mean), tf.identity(moving_var)

        mean, var = tf.cond(is_training, train_stats, infer_stats)
        # Manual moving-average update: moving -= (1 - decay) * (moving - batch).
        update_mean = tf.compat.v1.assign_sub(
            moving_mean, (1.0 - BN_DECAY) * (moving_mean - mean), name="update_moving_mean")
        update_var = tf.compat.v1.assign_sub(
            moving_var, (1.0 - BN_DECAY) * (moving_var - var), name="update_moving_variance")
        tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.UPDATE_OPS, update_mean)
        tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.UPDATE_OPS, update_var)
        return tf.nn.batch_normalization(x, mean, var, beta, gamma, BN_EPS, name="batchnorm")


def conv_block(x, filters, idx, is_training, bn):
    with tf.compat.v1.variable_scope(f"conv{idx}"):
        kernel, bias = conv_vars(x.shape[-1], filters)
        x = tf.nn.conv2d(x, kernel, strides=1, padding="SAME")
        x = tf.nn.bias_add(x, bias)
    x = bn(x, is_training, f"bn{idx}")
    x = tf.nn.relu(x, name=f"relu{idx}")
    return tf.nn.max_pool2d(x, ksize=2, strides=2, padding="VALID", name=f"pool{idx}")


def build_graph():
    """Returns a dict of the tensors/ops the driver needs."""
    tf.compat.v1.set_random_seed(0)

    # Input pipeline. The arrays are fed to placeholders at iterator init
    # time so they are not baked into graph.pbtxt as constants.
    with tf.compat.v1.name_scope("input"):
        x_data = tf.compat.v1.placeholder(tf.float32, [None, 20, 20, 1], name="x_data")
        y_data = tf.compat.v1.placeholder(tf.int64, [None], name="y_data")
        ds = (tf.data.Dataset.from_tensor_slices((x_data, y_data))
              .shuffle(buffer_size=N_TRAIN, seed=TRAIN_SEED)
              .repeat()
              .batch(BATCH))
        iterator = tf.compat.v1.data.make_initializable_iterator(ds)
    # Outside the name scope so the op is called exactly "IteratorGetNext".
    image, label = iterator.get_next()

    is_training = tf.compat.v1.placeholder_with_default(False, [], name="is_training")
    rate = tf.compat.v1.placeholder_with_default(0.0, [], name="dropout_rate")

    x = conv_block(image, 16, 1, is_training, fused_bn)
    x = conv_block(x, 32, 2, is_training, primitive_bn)
    x = tf.nn.dropout(x, rate=rate, name="dropout")
    x = tf.reshape(x, [-1, 5 * 5 * 32], name="flatten")
    with tf.compat.v1.variable_scope("dense"):
        kernel = tf.compat.v1.get_variable(
            "kernel", [5 * 5 * 32, 10], tf.float32,
            initializer=tf.compat.v1.glorot_uniform_initializer())
        bias = tf.compat.v1.get_variable(
            "bias", [10], tf.float32, initializer=tf.compat.v1.zeros_initializer())
        logits = tf.nn.bias_add(tf.matmul(x, kernel), bias, name="logits")
    probs = tf.nn.softmax(logits, name="softmax_tensor")

    loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(labels=label, logits=logits)
    tf.compat.v1.summary.scalar("loss", loss)
    with tf.compat.v1.name_scope("accuracy"):
        acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), label), tf.float32))
    tf.compat.v1.summary.scalar("accuracy", acc)

    global_step = tf.compat.v1.train.get_or_create_global_step()
    update_ops = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
    with tf.control_dependencies(update_ops):
        train_op = tf.compat.v1.train.AdamOptimizer(LEARNING_RATE).minimize(
            loss, global_step=global_step)
    summary_op = tf.compat.v1.summary.merge_all()
    init_op = tf.compat.v1.global_variables_initializer()
    saver = tf.compat.v1.train.Saver(sharded=False)

    return dict(x_data=x_data, y_data=y_data, iterator=iterator, image=image,
                is_training=is_training, rate=rate, probs=probs, loss=loss, acc=acc,
                global_step=global_step, train_op=train_op, summary_op=summary_op,
                init_op=init_op, saver=saver)


def write_readme(path, info):
    lines = [
        "# digits_tf1: a TF1-style training graph + checkpoint",
        "",
        "Generated by `models/digits_tf1/make_tf1.py` (seeded, single-threaded, "
        "no downloads). Exercises the TF1 freezing route: `graph.pbtxt` + "
        "`model.ckpt-*` -> `freeze_graph`.",
        "",
        "## How it is made",
        "",
        f"- Data: `render_digits` from `models/make_examples.py` (same OpenCV "
        f"synthetic digits as `models/digits`): {N_TRAIN} training digits "
        f"(seed {TRAIN_SEED}); held-out {N_TEST} digits (seed {TEST_SEED}).",
        "- Built with `tf.compat.v1` after `tf.compat.v1.disable_v2_behavior()` "
        "(ref variables, v1 control flow: `tf.cond` gives Switch/Merge), "
        "`tf.compat.v1.get_variable` + `tf.nn.*` (no `tf.compat.v1.layers`, which "
        "fails under Keras 3).",
        f"- Training: AdamOptimizer({LEARNING_RATE}), batch {BATCH}, {info['steps']} "
        f"steps, fed `is_training=True`, `dropout_rate={DROPOUT_TRAIN}`; "
        "graph seed 0, one intra/inter-op thread.",
        f"- Held-out accuracy: {info['acc']:.4f} ({N_TEST} digits, images fed "
        "straight into `IteratorGetNext:0`, `is_training` left at False).",
        "",
        "## Graph facts",
        "",
        "- Input: `IteratorGetNext` (tf.data pipeline `from_tensor_slices` -> "
        "`shuffle` -> `repeat` -> `batch(64)`, initializable iterator fed from "
        "placeholders `input/x_data`, `input/y_data`). Output 0 = image float32 "
        "[?,20,20,1], output 1 = label int64 [?].",
        "- Output: `softmax_tensor` (Softmax, float32 [?,10]); logits `dense/logits`.",
        "- Flags: `is_training` (PlaceholderWithDefault bool, default False), "
        "`dropout_rate` (PlaceholderWithDefault float32, default 0.0).",
        "- Layers: conv1 (3x3x1x16 + bias) - bn1 - relu1 - pool1 - conv2 "
        "(3x3x16x32 + bias) - bn2 - relu2 - pool2 - dropout - flatten (Reshape) - "
        "dense (800x10 + bias) - softmax.",
        "- BN forms: `bn1` = `tf.cond(is_training, FusedBatchNormV3 (batch stats), "
        "FusedBatchNormV3 (moving stats, is_training=False))`, moving averages via "
        "`assign_moving_average`; `bn2` = `tf.cond(is_training, tf.nn.moments, "
        "moving stats)` + `tf.nn.batch_normalization` (Rsqrt/Mul/Add/Sub), manual "
        "`assign_sub` updates. All updates are in UPDATE_OPS, a control dependency "
        "of the train op.",
        "- Dropout: `tf.nn.dropout(rate=dropout_rate)` (RandomUniform, GreaterEqual, "
        "SelectV2, Mul); the random ops stay in the graph at the default rate 0.",
        f"- {info['nodes']} nodes in `graph.pbtxt` (written with `_output_shapes`, "
        "like an Estimator's CheckpointSaverHook); includes `gradients/`, Adam "
        "slots, `save/` (restore op `save/restore_all`, filename tensor "
        "`save/Const:0`), summaries (`loss`, `accuracy`, `Merge/MergeSummary`).",
        f"- Checkpoint `model.ckpt-{info['steps']}`: {len(info['vars'])} variables "
        "(weights, BN moving stats, Adam m/v slots, beta1/2_power, global_step).",
        "- `checkpoint` state file is written by the script with relative paths and "
        "no timestamps.",
        "",
        "## Freeze",
        "",
        "```python",
        "from tensorflow.python.tools.freeze_graph import freeze_graph",
        'freeze_graph("models/digits_tf1/graph.pbtxt", "", False,',
        f'             "models/digits_tf1/model.ckpt-{info["steps"]}", "softmax_tensor",',
        '             "save/restore_all", "save/Const:0", "/tmp/frozen_tf1.pb", True, "")',
        "```",
        "",
        "The frozen graph still holds the input pipeline: `IteratorGetNext` and "
        "`input/IteratorV2` carry `_class: loc:@input/BatchDatasetV2`, and "
        "`extract_sub_graph` keeps colocated nodes, so `input/*Dataset*` and the "
        "placeholders `input/x_data`, `input/y_data` come along. Feeding "
        "`IteratorGetNext:0` works; for serving, replace `IteratorGetNext` with a "
        "placeholder.",
        "",
        "Regenerate: `.venv/bin/python models/digits_tf1/make_tf1.py`",
    ]
    path.write_text("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=HERE)
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args()
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()

    tf.compat.v1.disable_v2_behavior()
    render_digits = load_render_digits()
    x_train, y_train = render_digits(N_TRAIN, seed=TRAIN_SEED)
    x_test, y_test = render_digits(N_TEST, seed=TEST_SEED)
    print(f"rendered data in {time.time() - start:.1f}s")

    graph = tf.Graph()
    with graph.as_default():
        t = build_graph()
    graph.finalize()

    # Remove stale checkpoints from earlier runs with another step count.
    for old in out.glob("model.ckpt-*"):
        old.unlink()
    tf.io.write_graph(graph.as_graph_def(add_shapes=True), str(out), "graph.pbtxt",
                      as_text=True)

    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1,
                                      inter_op_parallelism_threads=1)
    with tf.compat.v1.Session(graph=graph, config=config) as sess:
        sess.run(t["init_op"])
        sess.run(t["iterator"].initializer,
                 {t["x_data"]: x_train, t["y_data"]: y_train})
        train_feed = {t["is_training"]: True, t["rate"]: DROPOUT_TRAIN}
        for i in range(1, args.steps + 1):
            if i % 100 == 0 or i == 1:
                # Summaries are fetched like an Estimator would, but not written
                # (event files carry timestamps).
                _, _, loss, acc = sess.run(
                    [t["train_op"], t["summary_op"], t["loss"], t["acc"]], train_feed)
                print(f"step {i:4d}  loss {loss:.4f}  batch acc {acc:.3f}")
            else:
                sess.run(t["train_op"], train_feed)
        step = int(sess.run(t["global_step"]))

        probs = sess.run(t["probs"], {t["image"]: x_test})
        test_acc = float((probs.argmax(1) == y_test).mean())
        print(f"held-out accuracy {test_acc:.4f} on {N_TEST} digits")

        prefix = t["saver"].save(sess, str(out / "model.ckpt"), global_step=step,
                                 write_meta_graph=False, write_state=False)
    name = Path(prefix).name
    (out / "checkpoint").write_text(
        f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')

    var_names = [n for n, _ in tf.train.list_variables(prefix)]
    write_readme(out / "README.md", dict(
        steps=step, acc=test_acc, nodes=len(graph.as_graph_def().node), vars=var_names))
    print(f"wrote {out} ({len(var_names)} checkpoint variables) "
          f"in {time.time() - start:.1f}s")


if __name__ == "__main__":
    main()
