import numpy as np
import pytest

from kfreeze import export, freeze
from kfreeze.errors import KfreezeError
from kfreeze.tfenv import tf
from tests.conftest import build_tiny, save_checkpoint


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    result = export.export_model(build_tiny())
    export.write_export(result, out)
    return result, out


def test_every_variable_becomes_a_constant(exported):
    result, out = exported
    frozen = freeze.freeze(result.graph, freeze.resolve_checkpoint(out / "ckpt"), ["probs"], "t")
    assert frozen.converted == len(result.values) == 8
    ops = {n.op for n in frozen.graph.node}
    assert not ops & freeze.LEFTOVER_OPS
    assert not any(n.name.startswith("save/") for n in frozen.graph.node)
    consts = {n.name: tf.make_ndarray(n.attr["value"].tensor) for n in frozen.graph.node if n.op == "Const"}
    np.testing.assert_array_equal(consts["conv/kernel"], result.values["conv/kernel"])


def test_directory_means_latest_checkpoint(exported):
    _, out = exported
    assert freeze.resolve_checkpoint(out / "ckpt").endswith("model.ckpt")


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(KfreezeError, match="no checkpoint"):
        freeze.resolve_checkpoint(tmp_path)
    with pytest.raises(KfreezeError, match="no .index file"):
        freeze.resolve_checkpoint(tmp_path / "model.ckpt-20")


def test_checkpoint_lacking_a_variable_names_it(exported, tmp_path):
    result, _ = exported
    values = {k: np.asarray(v) for k, v in result.values.items() if k != "bn/gamma"}
    partial = export.Exported(result.graph, values, result.signature)
    save_checkpoint(values, tmp_path / "model.ckpt")
    with pytest.raises(KfreezeError, match="no value for variable 'bn/gamma'"):
        freeze.freeze(partial.graph, str(tmp_path / "model.ckpt"), ["probs"], "t")


def test_checkpoint_with_a_wrong_shape_names_the_variable(exported, tmp_path):
    result, _ = exported
    values = {k: np.asarray(v) for k, v in result.values.items()} | {"probs/bias": np.zeros([5], np.float32)}
    save_checkpoint(values, tmp_path / "model.ckpt")
    with pytest.raises(KfreezeError, match=r"variable 'probs/bias' has shape \[5\] in the checkpoint but \[3\]"):
        freeze.freeze(result.graph, str(tmp_path / "model.ckpt"), ["probs"], "t")


def test_over_two_gigabytes_is_refused_before_reading_weights(tmp_path):
    """A 3 GiB variable costs nothing to describe: the check runs on shapes, before the checkpoint."""
    from tensorflow.core.framework import graph_pb2
    graph = graph_pb2.GraphDef()
    var = graph.node.add(name="big/kernel", op="VariableV2")
    var.attr["dtype"].type = tf.float32.as_datatype_enum
    var.attr["shape"].shape.CopyFrom(tf.TensorShape([768, 1024, 1024]).as_proto())
    read = graph.node.add(name="out", op="Identity", input=["big/kernel"])
    read.attr["T"].type = tf.float32.as_datatype_enum
    with pytest.raises(KfreezeError, match=r"3.00 GiB of constants, over protobuf's 2 GiB limit"):
        freeze.freeze(graph, str(tmp_path / "no-checkpoint-needed"), ["out"], "big.pbtxt")


def test_two_freezes_in_one_process_do_not_mix(tmp_path):
    """TF's freeze_graph imports into the default graph; a second model must not restore into the first."""
    from tests.conftest import build_two_io
    for model, outputs in ((build_tiny(), ["probs"]), (build_two_io(), ["cls", "reg"]), (build_tiny(3), ["probs"])):
        result = export.export_model(model)
        out = tmp_path / model.name / str(id(model))
        export.write_export(result, out)
        frozen = freeze.freeze(result.graph, out / "ckpt", outputs, "t")
        assert frozen.converted == len(result.values)


def _partitioned_graph(folder, parts: int, resource: bool = False):
    """A [6, 4] variable in ``parts`` partitions along axis 0, read as x @ w; saved by a Saver (whole)."""
    value = np.random.default_rng(2).normal(size=(6, 4)).astype(np.float32)
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 6], name="x")
        with tf.compat.v1.variable_scope("p", partitioner=tf.compat.v1.fixed_size_partitioner(parts, axis=0),
                                         use_resource=resource):
            def init(shape, dtype=None, partition_info=None):  # each part its own rows of ``value``
                start = partition_info.var_offset[0] if partition_info is not None else 0
                return tf.constant(value[start:start + shape[0]])
            w = tf.compat.v1.get_variable("w", [6, 4], initializer=init)
        tf.identity(tf.matmul(x, w), name="out")
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = saver.save(sess, str(folder / "model.ckpt"))
    return g.as_graph_def(), prefix, value


@pytest.mark.parametrize("parts", [1, 3])
def test_partitioned_variables_are_restored_from_the_whole_checkpoint_value(tmp_path, parts):
    """A Saver stores 'p/w' whole; the graph's variables are 'p/w/part_k', each its slice."""
    graph, prefix, value = _partitioned_graph(tmp_path, parts)
    assert {n.name for n in graph.node if n.op == "VariableV2"} == {f"p/w/part_{k}" for k in range(parts)}
    frozen = freeze.freeze(graph, prefix, ["out"], "g").graph
    assert not {n.op for n in frozen.node} & freeze.VARIABLE_OPS
    x = np.random.default_rng(3).normal(size=(2, 6)).astype(np.float32)
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(frozen, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            got = sess.run("out:0", {"x:0": x})
    np.testing.assert_allclose(got, x @ value, rtol=1e-5, atol=1e-5)


def test_parts_that_do_not_add_up_to_the_stored_variable_are_not_guessed():
    stored = {"v": [6, 4]}
    assert freeze.partitions({"v/part_0": [3, 4], "v/part_1": [2, 4]}, stored) == {}
    assert freeze.partitions({"v/part_0": [3, 4], "v/part_2": [3, 4]}, stored) == {}  # a part missing
    found = freeze.partitions({"v/part_0": [4, 4], "v/part_1": [2, 4]}, stored)
    assert found["v/part_1"] == ("v", (slice(4, 6), slice(None)))


def test_verify_restores_resource_and_partitioned_variables(tmp_path):
    """The checkpoint reference (verify) restores without a Saver, which fails on VarHandleOp."""
    from kfreeze.verify.run import run_checkpoint_graph
    graph, prefix, value = _partitioned_graph(tmp_path, 2, resource=True)
    assert "VarHandleOp" in {n.op for n in graph.node}
    x = np.random.default_rng(4).normal(size=(3, 6)).astype(np.float32)
    got = run_checkpoint_graph(graph, prefix, {"x": x}, ["out"])
    np.testing.assert_allclose(got["out"], x @ value, rtol=1e-5, atol=1e-5)


def test_verify_runs_a_graph_pinned_to_a_missing_gpu(tmp_path):
    """freeze_graph's clear_devices case: the reference clears devices, as freeze does."""
    from kfreeze.verify.run import run_checkpoint_graph
    graph, prefix, value = _partitioned_graph(tmp_path, 1)
    for node in graph.node:
        node.device = "/device:GPU:0"
    x = np.random.default_rng(5).normal(size=(2, 6)).astype(np.float32)
    got = run_checkpoint_graph(graph, prefix, {"x": x}, ["out"])
    np.testing.assert_allclose(got["out"], x @ value, rtol=1e-5, atol=1e-5)


def test_a_v1_checkpoint_one_file_named_by_its_prefix_freezes(tmp_path):
    """freeze_graph_test's testFreezeGraphV1: SaverDef.V1 writes the prefix itself, no .index."""
    from tensorflow.core.protobuf import saver_pb2
    value = np.random.default_rng(6).normal(size=(3, 2)).astype(np.float32)
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        w = tf.compat.v1.Variable(value, name="w", use_resource=False)
        tf.identity(tf.matmul(x, w), name="out")
        saver = tf.compat.v1.train.Saver(write_version=saver_pb2.SaverDef.V1)
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = saver.save(sess, str(tmp_path / "v1_ckpt"), global_step=0, write_meta_graph=False)
    assert (tmp_path / "v1_ckpt-0").is_file() and not (tmp_path / "v1_ckpt-0.index").exists()
    assert freeze.resolve_checkpoint(prefix) == prefix
    frozen = freeze.freeze(g.as_graph_def(), prefix, ["out"], "g")
    assert frozen.converted == 1
    const = next(n for n in frozen.graph.node if n.name == "w")
    np.testing.assert_array_equal(tf.make_ndarray(const.attr["value"].tensor), value)
