"""tensorflow/python/tools/freeze_graph_test.py, rebuilt and fed through ``kfreeze run --graph``.

The peer's graph: a variable holding 1.0, times 2 ('output_node'); frozen, it must hold no
Variable/VariableV2 op and still answer 2.0. The peer's graph has no input (a case below, run
with nothing fed); the main cases multiply by an input fed 1.0 as well, so verify has an input to vary.
"""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.tfenv import tf
from tests.peers.harness import Batch, flags, invoke, placeholder, var, write_tf1

NO_VARIABLES = {"Variable", "VariableV2", "VarHandleOp", "ReadVariableOp", "Assign", "RestoreV2", "SaveV2"}


def _variable_times_two():
    x = placeholder("x", [1])
    v = var(1.0, "variable_node")
    tf.math.multiply(v * x, 2.0, name="output_node")


def _partitioned():
    """testSinglePartitionedVariable: a variable in one partition (part_0, then two Identities)."""
    partitioner = tf.compat.v1.fixed_size_partitioner(1)
    with tf.compat.v1.variable_scope("part", partitioner=partitioner, use_resource=False):
        input1 = placeholder("input1", [1, 8, 8, 3])
        input2 = placeholder("input2", [1, 8, 8, 3])
        # Seeded values: the source graph is built twice (reference, checkpoint), and a random
        # initializer gave each its own weights.
        filter1 = tf.compat.v1.get_variable("filter", [3, 3], initializer=tf.compat.v1.constant_initializer(
            np.random.default_rng(3).normal(size=(3, 3)).astype(np.float32)))
        conv = tf.nn.conv2d(input1, tf.reshape(filter1, [1, 1, 3, 3]), [1, 1, 1, 1], "SAME")
        tf.nn.relu6(tf.math.add(conv, input2), name="test/relu6")


def _with_devices():
    """freeze_graph's clear_devices: the graph pinned to a GPU this machine does not have."""
    with tf.device("/device:GPU:0"):
        _variable_times_two()


RNG = np.random.default_rng(0)
BATCH = Batch()
BATCH.add("v2", _variable_times_two, {"x": np.float32([1.0])}, ["output_node"])

PARTITIONED = Batch()
PARTITIONED.add("partitioned", _partitioned,
                {"part/input1": RNG.normal(size=(1, 8, 8, 3)).astype(np.float32),
                 "part/input2": RNG.normal(size=(1, 8, 8, 3)).astype(np.float32)}, ["part/test/relu6"])


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return BATCH.go(tmp_path_factory.mktemp("freeze"))


def test_the_batch_runs_and_verifies(batch):
    assert batch.run.ok, batch.run.output


def test_freeze_graph_v2_checkpoint(batch):
    """testFreezeGraphV2: no variable op is left in frozen.pb, and the output is 2.0."""
    frozen_ops = {n.op for n in batch.run.frozen.node}
    assert not NO_VARIABLES & frozen_ops, frozen_ops
    assert not NO_VARIABLES & set(batch.ops("v2"))
    np.testing.assert_allclose(batch.output("v2"), [2.0], atol=1e-5)


@pytest.fixture(scope="module")
def partitioned(tmp_path_factory):
    return PARTITIONED.go(tmp_path_factory.mktemp("partitioned"))


def test_single_partitioned_variable_fails_cleanly(partitioned):
    """testSinglePartitionedVariable: the peer's assertion is that freezing fails cleanly (a
    ValueError, not a crash). kfreeze: one error line, no traceback."""
    r = partitioned.run
    if not r.ok:
        assert len(r.errors()) == 1 and "Traceback" not in r.output, r.output


def test_single_partitioned_variable_freezes(partitioned):
    """Better than failing cleanly: the same graph frozen, part_0 read through its Identity chain."""
    assert partitioned.run.ok, partitioned.run.output
    assert not NO_VARIABLES & set(partitioned.ops("partitioned"))
    np.testing.assert_allclose(partitioned.output("partitioned"), partitioned.expected("partitioned"),
                               rtol=1e-5, atol=1e-5)


def test_clear_devices(tmp_path):
    """freeze_graph's clear_devices=True: no device left on any node, and the graph runs here."""
    r = _one(tmp_path, _with_devices)
    assert r.ok, r.output
    assert not [n.name for n in r.graph.node if n.device], "devices left"
    np.testing.assert_allclose(r.run({"x:0": np.float32([1.0])}, "output_node:0"), [2.0])


def _one(tmp_path, build, *, binary=False, write=None, **kw):
    graph, ckpt = (write or write_tf1)(tmp_path / "src", build, binary=binary)
    return invoke(["--graph", graph, "--checkpoint", ckpt,
                   *flags(inputs="x", outputs="output_node", input_shape=[1], samples=2, **kw)], tmp_path / "out")


def test_save_restore_all_as_output_is_one_error_line(tmp_path):
    """The peer's ask (output save/restore_all) fails cleanly: one error line, no traceback."""
    graph, ckpt = write_tf1(tmp_path / "src", _variable_times_two)
    r = invoke(["--graph", graph, "--checkpoint", ckpt,
                *flags(inputs="x", outputs="save/restore_all", input_shape=[1], samples=2)], tmp_path / "out")
    assert r.exit_code == 1
    assert len(r.errors()) == 1 and "Traceback" not in r.output, r.output


def test_binary_graph_input(tmp_path):
    """freeze_graph's input_binary=True: the graph as graph.pb."""
    r = _one(tmp_path, _variable_times_two, binary=True)
    assert r.ok, r.output
    assert not NO_VARIABLES & {n.op for n in r.frozen.node}
    np.testing.assert_allclose(r.run({"x:0": np.float32([1.0])}, "output_node:0"), [2.0])


def _write_v1(folder, build, binary=False):
    folder.mkdir(parents=True, exist_ok=True)
    from tensorflow.core.protobuf import saver_pb2
    with tf.Graph().as_default() as g:
        build()
        saver = tf.compat.v1.train.Saver(write_version=saver_pb2.SaverDef.V1)
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = saver.save(sess, str(folder / "saved_checkpoint"), global_step=0, write_meta_graph=False)
        tf.io.write_graph(g.as_graph_def(), str(folder), "input_graph.pbtxt")
    return folder / "input_graph.pbtxt", prefix


def test_freeze_graph_v1_checkpoint(tmp_path):
    """testFreezeGraphV1: the same graph saved with SaverDef.V1."""
    r = _one(tmp_path, _variable_times_two, write=_write_v1)
    assert r.ok, r.output
    np.testing.assert_allclose(r.run({"x:0": np.float32([1.0])}, "output_node:0"), [2.0])


def _no_input_graph():
    v = var(1.0, "variable_node")
    tf.math.multiply(v, 2.0, name="output_node")


def test_freeze_graph_the_peers_graph_with_no_input(tmp_path):
    """The peer's graph as it is: 4 nodes once frozen, answering 2.0 with nothing fed."""
    graph, ckpt = write_tf1(tmp_path / "src", _no_input_graph)
    r = invoke(["--graph", graph, "--checkpoint", ckpt, *flags(outputs="output_node", samples=2)], tmp_path / "out")
    assert r.ok, r.output
    assert not NO_VARIABLES & {n.op for n in r.frozen.node}
    assert r.run({}, "output_node:0") == pytest.approx(2.0)


def test_freeze_meta_graph(tmp_path):
    """testFreezeMetaGraph: the graph given as the checkpoint's .meta file."""
    folder = tmp_path / "src"
    folder.mkdir()
    with tf.Graph().as_default() as g:
        _variable_times_two()
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = saver.save(sess, str(folder / "meta_graph_checkpoint"), global_step=0)
    r = invoke(["--graph", prefix + ".meta", "--checkpoint", prefix,
                *flags(inputs="x", outputs="output_node", input_shape=[1], samples=2)], tmp_path / "out")
    assert r.ok, r.output
    np.testing.assert_allclose(r.run({"x:0": np.float32([1.0])}, "output_node:0"), [2.0])


@pytest.mark.parametrize("tags", [[], ["serve"]], ids=["empty_tags_set", "default_tags_set"])
def test_freeze_saved_model(tmp_path, tags):
    """testFreezeSavedModel: a TF1 SavedModel (builder) with tf.Example input; the frozen graph
    answers feature * variable (1.0) = 2.0 for feature 2.0. kfreeze runs no tf.Example parsing
    (not an inference op it knows), so the graph is cut at the parsed feature; frozen.pb is the
    whole signature, and answers the peer's serialized example."""
    path = tmp_path / "saved_model_dir"
    with tf.Graph().as_default():
        examples = tf.compat.v1.placeholder(tf.string, name="input_node")
        feature = tf.compat.v1.io.parse_example(
            examples, {"feature": tf.io.FixedLenFeature(shape=[], dtype=tf.float32)})["feature"]
        scores = tf.math.multiply(var(1.0, "variable_node"), feature, name="output_node")
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sig = tf.compat.v1.saved_model.signature_def_utils.predict_signature_def(
                {"examples": examples}, {"scores": scores})
            builder = tf.compat.v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(sess, tags, signature_def_map={"serving_default": sig})
            builder.save(as_text=True)
    cut = "ParseExample/ParseExampleV2"
    r = invoke([path, *flags(inputs=cut, outputs="scores", input_shape=[-1], samples=2)], tmp_path / "out")
    assert r.ok, r.output
    assert not NO_VARIABLES & {n.op for n in r.frozen.node}
    example = tf.train.Example(features=tf.train.Features(
        feature={"feature": tf.train.Feature(float_list=tf.train.FloatList(value=[2.0]))}))
    assert r.run({"examples:0": [example.SerializeToString()]}, "scores:0", graph=r.frozen) == pytest.approx([2.0])
    assert r.run({f"{cut}:0": np.float32([2.0])}, "scores:0") == pytest.approx([2.0])


def _resource_graph():
    x = placeholder("x", [1])
    v = tf.compat.v1.Variable(np.float32(1.0), name="variable_node", use_resource=True)
    tf.math.multiply(v * x, 2.0, name="output_node")


def test_resource_variable(tmp_path):
    """freeze_graph on a graph whose variable is a resource variable (VarHandleOp), as TF 2's
    tf.compat.v1.Variable makes it by default."""
    r = _one(tmp_path, _resource_graph)
    assert r.ok, r.output
    assert not NO_VARIABLES & {n.op for n in r.frozen.node}
    np.testing.assert_allclose(r.run({"x:0": np.float32([1.0])}, "output_node:0"), [2.0])
