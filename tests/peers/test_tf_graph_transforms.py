"""tensorflow/tools/graph_transforms/*_test.cc (fold_constants, fold_batch_norms,
fold_old_batch_norms, remove_nodes, strip_unused_nodes), rebuilt in tf.compat.v1 and fed
through ``kfreeze run --graph``; all cases side by side in one run (``Batch``).

The C++ tests build from constants with the peer's data ({1, 4, 2, 5, 3, 6, -1, ...} inputs,
{1, 2, 3, 4, 0.1, 0.2, 0.3, 0.4} weights); here the input is a placeholder fed that data and
the weights are variables in a checkpoint. Each case is judged by the peer's own assertion: the
output near the original's (1e-5 / 2e-5), and the op that must be gone.
"""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.tfenv import tf
from tests.peers.harness import Batch, placeholder, var

X = np.array([1, 4, 2, 5, 3, 6, -1, -4, -2, -5, -3, -6], np.float32)
W = np.reshape([1, 2, 3, 4, 0.1, 0.2, 0.3, 0.4], [1, 2, 2, 2])
MEAN2, VAR2, BETA2, GAMMA2 = [10, 20], [0.25, 0.5], [0.1, 0.6], [1.0, 2.0]
MEAN4, VAR4, BETA4, GAMMA4 = [10, 20, 30, 40], [0.25, 0.5, 0.75, 1.0], [0.1, 0.6, 1.1, 1.6], [1, 2, 3, 4]


def _producer_8():
    old = tf.compat.v1.GraphDef()
    old.versions.producer = 8
    tf.import_graph_def(old, name="")


# --- fold_batch_norms_test.cc: a constant Mul after Conv2D / DepthwiseConv2dNative / MatMul --------

def _conv_mul(kind: str):
    def build():
        if kind == "matmul":
            x = placeholder("input_op", [1, 2])  # batch 1, as every input of the batch
            y = tf.linalg.matmul(x, var(np.reshape([1, 2, 3, 4], [2, 2]), "weights_op"), name="matmul_op")
        else:
            x = placeholder("input_op", [1, 1, 6, 2])
            if kind == "conv2d":
                y = tf.nn.conv2d(x, var(W, "weights_op"), [1, 1, 1, 1], "VALID", name="conv_op")
            else:
                y = tf.raw_ops.DepthwiseConv2dNative(input=x, filter=var(W, "weights_op"), strides=[1, 1, 1, 1],
                                                     padding="VALID", name="conv_op")
        channels = 4 if kind == "depthwise" else 2
        tf.math.multiply(y, var([2.0, 3.0, 4.0, 5.0][:channels], "mul_values"), name="output")
    return build


def _conv_mul_shared():
    """TestFoldBatchNormsConv2DShared: one weights tensor, two convs, each with its own Mul."""
    x = placeholder("input_op", [1, 1, 6, 2])
    w = var(W, "weights_op")
    c1 = tf.nn.conv2d(x, w, [1, 1, 1, 1], "VALID", name="conv_op")
    c2 = tf.nn.conv2d(x, w, [1, 1, 1, 1], "VALID", name="conv_op_2")
    tf.math.multiply(c1, var([2.0, 3.0], "mul_values"), name="output")
    tf.math.multiply(c2, var([4.0, 5.0], "mul_values_2"), name="output2")


# --- fold_old_batch_norms_test.cc ------------------------------------------------------------------

def _old_bn(conv: str, op: str):
    def build():
        if op == "BatchNormWithGlobalNormalization":
            _producer_8()
        x = placeholder("input_op", [1, 1, 6, 2])
        if conv == "conv2d":
            y = tf.nn.conv2d(x, var(W, "weights_op"), [1, 1, 1, 1], "VALID", name="conv_op")
            m, v, b, g = MEAN2, VAR2, BETA2, GAMMA2
        else:
            y = tf.raw_ops.DepthwiseConv2dNative(input=x, filter=var(W, "weights_op"), strides=[1, 1, 1, 1],
                                                 padding="VALID", name="conv_op")
            m, v, b, g = MEAN4, VAR4, BETA4, GAMMA4
        if op == "BatchNormWithGlobalNormalization":
            tf.raw_ops.BatchNormWithGlobalNormalization(
                t=y, m=var(m, "mean_op"), v=var(v, "variance_op"), beta=var(b, "beta_op"), gamma=var(g, "gamma_op"),
                variance_epsilon=0.00001, scale_after_normalization=False, name="output")
        else:
            getattr(tf.raw_ops, op)(x=y, scale=var(g, "gamma_op"), offset=var(b, "beta_op"), mean=var(m, "mean_op"),
                                    variance=var(v, "variance_op"), epsilon=0.00001, is_training=False, name="output")
    return build


def _fused_bn_with_concat(split: bool):
    """TestFoldFusedBatchNormsWithConcat: two convs concatenated (on channels when split, else on
    width), then one FusedBatchNorm."""
    def build():
        x = placeholder("input_op", [1, 1, 6, 2])
        w = var(W if split else np.reshape([1, 2, 3, 4, 0.1, 0.2, 0.3, 0.4, 1, 2, 3, 4, 0.1, 0.2, 0.3, 0.4],
                                           [1, 2, 2, 4]), "weights_op")
        c0 = tf.nn.conv2d(x, w, [1, 1, 1, 1], "VALID", name="conv0")
        c1 = tf.nn.conv2d(x, w, [1, 1, 1, 1], "VALID", name="conv1")
        y = tf.concat([c0, c1], 3 if split else 2, name="concat")
        tf.raw_ops.FusedBatchNorm(x=y, scale=var(GAMMA4, "gamma_op"), offset=var(BETA4, "beta_op"),
                                  mean=var(MEAN4, "mean_op"), variance=var(VAR4, "variance_op"),
                                  epsilon=0.00001, is_training=False, name="output")
    return build


def _fused_bn_with_batch_to_space():
    """TestFoldFusedBatchNormsWithBatchToSpace: Conv2D -> BatchToSpaceND -> FusedBatchNorm."""
    x = placeholder("input_op", [2, 1, 3, 2])
    y = tf.nn.conv2d(x, var(W, "weights_op"), [1, 1, 1, 1], "VALID", name="conv_op")
    y = tf.compat.v1.batch_to_space_nd(y, [2, 1], [[0, 0], [0, 0]], name="batch_to_space_op")
    tf.raw_ops.FusedBatchNorm(x=y, scale=var(GAMMA2, "gamma_op"), offset=var(BETA2, "beta_op"),
                              mean=var(MEAN2, "mean_op"), variance=var(VAR2, "variance_op"),
                              epsilon=0.00001, is_training=False, name="output")


# --- fold_constants_test.cc ---------------------------------------------------------------------

def _fold_simple_add():
    """TestSimpleAdd: a + b of constants, times a placeholder: the add is folded to one constant."""
    x = placeholder("placeholder", [1, 1000])
    a = var(np.full((1, 1000), 1.0), "a_const")
    b = var(np.full((1, 1000), 2.0), "b_const")
    add = tf.math.add(a, b, name="add")
    tf.math.multiply(add, x, name="output")


def _fold_shape():
    """TestShapePropagation: Shape of a placeholder of known shape folds to a constant."""
    x = placeholder("placeholder", [1, 2, 3, 4])
    w = var(np.ones((4,)), "w")
    shape = tf.shape(x * w, name="shape_op")
    tf.reshape(x * w, tf.math.reduce_prod(shape, keepdims=True), name="output")


# --- remove_nodes_test.cc: Identity and CheckNumerics go, the graph still answers ----------------

def _remove_nodes():
    x = placeholder("placeholder", [1, 4])
    a = var(np.arange(4.0), "a_const")
    ident = tf.identity(tf.identity(a, name="id_1"), name="id_2")
    checked = tf.debugging.check_numerics(x, "x", name="check")
    add = tf.math.add(ident, checked, name="add_node")
    tf.identity(tf.math.multiply(add, 2.0, name="mul_node"), name="output")


# --- strip_unused_nodes_test.cc ------------------------------------------------------------------

def _strip_unused():
    """TestSimpleAdd / TestSimplePlaceholder: an unused branch goes; the input is an inner node
    ('add_node') that becomes a placeholder of the given shape."""
    a = var(np.ones((1, 3)), "a_const")
    b = var(np.ones((1, 3)) * 2, "b_const")
    add = tf.math.add(a, b, name="add_node")
    tf.math.multiply(add, var(np.ones((1, 3)) * 3, "c_const"), name="mul_node")
    tf.math.subtract(a, b, name="unused_node")


BATCH = Batch()
X4 = X.reshape(1, 1, 6, 2)
for kind in ("conv2d", "depthwise", "matmul"):
    BATCH.add(f"fold_bn_{kind}", _conv_mul(kind), {"input_op": X[:2].reshape(1, 2) if kind == "matmul" else X4},
              ["output"])
BATCH.add("fold_bn_shared", _conv_mul_shared, {"input_op": X4}, ["output", "output2"])
for conv in ("conv2d", "depthwise"):
    for op in ("BatchNormWithGlobalNormalization", "FusedBatchNorm", "FusedBatchNormV3"):
        BATCH.add(f"old_{op}_{conv}", _old_bn(conv, op), {"input_op": X4}, ["output"])
BATCH.add("concat_split_False", _fused_bn_with_concat(False), {"input_op": X4}, ["output"])
CONCAT = Batch()  # its own run: kfreeze answers wrong here, and verify fails the whole run
CONCAT.add("concat_split_True", _fused_bn_with_concat(True), {"input_op": X4}, ["output"])
BATCH.add("fold_add", _fold_simple_add, {"placeholder": np.linspace(0, 1, 1000, dtype=np.float32)[None]}, ["output"])
BATCH.add("fold_shape", _fold_shape, {"placeholder": np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)}, ["output"])
BATCH.add("remove_nodes", _remove_nodes, {"placeholder": np.float32([[1, -2, 3, -4]])}, ["output"])
BATCH.add("strip_unused", _strip_unused, {"add_node": np.float32([[1, 2, 3]])}, ["mul_node"])


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return BATCH.go(tmp_path_factory.mktemp("transforms"))


def test_the_batch_runs_and_verifies(batch):
    assert batch.run.ok, batch.run.output


@pytest.mark.parametrize("kind", ["conv2d", "depthwise", "matmul"])
def test_fold_batch_norms(batch, kind):
    """TestFoldBatchNormsConv2D / DepthwiseConv2dNative / MatMul: no Mul left, same output."""
    case = f"fold_bn_{kind}"
    assert "Mul" not in batch.ops(case), batch.ops(case)
    np.testing.assert_allclose(batch.output(case), batch.expected(case), atol=1e-5)


def test_fold_batch_norms_shared_weights(batch):
    """TestFoldBatchNormsConv2DShared: both Muls go though the convs share one weights tensor."""
    assert "Mul" not in batch.ops("fold_bn_shared"), batch.ops("fold_bn_shared")
    for out in ("output", "output2"):
        np.testing.assert_allclose(batch.output("fold_bn_shared", out), batch.expected("fold_bn_shared", out),
                                   atol=1e-5)


@pytest.mark.parametrize("conv", ["conv2d", "depthwise"])
@pytest.mark.parametrize("op", ["BatchNormWithGlobalNormalization", "FusedBatchNorm", "FusedBatchNormV3"])
def test_fold_old_batch_norms(batch, op, conv):
    """TestFoldOldBatchNorms(AfterDepthwiseConv2dNative), TestFoldFusedBatchNorms(...), V3."""
    case = f"old_{op}_{conv}"
    assert op not in batch.ops(case), batch.ops(case)
    np.testing.assert_allclose(batch.output(case), batch.expected(case), atol=2e-5, rtol=2e-5)


def test_fold_fused_batch_norms_with_concat_on_width(batch):
    """TestFoldFusedBatchNormsWithConcat(split=false): concat on width, the BN's channels are each conv's."""
    case = "concat_split_False"
    assert "FusedBatchNorm" not in batch.ops(case), batch.ops(case)
    np.testing.assert_allclose(batch.output(case), batch.expected(case), atol=2e-5, rtol=2e-5)


def test_fold_fused_batch_norms_with_batch_to_space(tmp_path):
    """TestFoldFusedBatchNormsWithBatchToSpace: Conv2D -> BatchToSpaceND -> FusedBatchNorm (its own
    run: its input has batch 2, and inputs of different fixed batch sizes crash verify)."""
    one = Batch()
    one.add("b2s", _fused_bn_with_batch_to_space, {"input_op": X.reshape(2, 1, 3, 2)}, ["output"])
    one.go(tmp_path)
    assert one.run.ok, one.run.output
    assert "FusedBatchNorm" not in one.ops("b2s"), one.ops("b2s")
    np.testing.assert_allclose(one.output("b2s"), one.expected("b2s"), atol=2e-5, rtol=2e-5)


def test_inputs_of_different_fixed_batch_sizes(tmp_path):
    """TestFoldBatchNormsMatMul's input is [6, 2]; beside TestFoldBatchNormsConv2D's [1, 1, 6, 2] in one
    graph (two inputs, fixed batches 6 and 1): verify feeds each input its own fixed rows."""
    two = Batch()
    two.add("matmul", lambda: tf.math.multiply(tf.linalg.matmul(placeholder("input_op", [6, 2]), var(
        np.reshape([1, 2, 3, 4], [2, 2]), "weights_op")), var([2.0, 3.0], "mul_values"), name="output"),
        {"input_op": X.reshape(6, 2)}, ["output"])
    two.add("conv", _conv_mul("conv2d"), {"input_op": X4}, ["output"])
    two.go(tmp_path)
    assert two.run.ok, two.run.output


@pytest.fixture(scope="module")
def concat(tmp_path_factory):
    return CONCAT.go(tmp_path_factory.mktemp("concat"))


def test_fold_fused_batch_norms_with_concat_on_channels(concat):
    """TestFoldFusedBatchNormsWithConcat(split=true): each half of the BN folds into its conv."""
    case = "concat_split_True"
    assert concat.run.ok, concat.run.output
    assert "FusedBatchNorm" not in concat.ops(case), concat.ops(case)
    np.testing.assert_allclose(concat.output(case), concat.expected(case), atol=2e-5, rtol=2e-5)


def test_fold_constants_simple_add(batch):
    """TestSimpleAdd: the constant add is folded: no Add left, one Mul of a constant and the input."""
    ops = batch.ops("fold_add")
    assert not {"Add", "AddV2"} & set(ops), ops
    np.testing.assert_allclose(batch.output("fold_add"), batch.expected("fold_add"), atol=1e-5)


def test_fold_constants_shape_propagation(batch):
    """TestShapePropagation: with the input's shape known, Shape folds (no Shape op remains)."""
    ops = batch.ops("fold_shape")
    assert "Shape" not in ops and "Prod" not in ops, ops
    np.testing.assert_allclose(batch.output("fold_shape"), batch.expected("fold_shape"), atol=1e-5)


def test_remove_nodes_identity_and_check_numerics(batch):
    """remove_nodes(op=Identity, op=CheckNumerics): neither op is left on the path; same output."""
    ops = batch.ops("remove_nodes")
    assert "Identity" not in ops, ops
    np.testing.assert_allclose(batch.output("remove_nodes"), batch.expected("remove_nodes"), atol=1e-5)


def test_remove_nodes_check_numerics(batch):
    assert "CheckNumerics" not in batch.ops("remove_nodes"), batch.ops("remove_nodes")


def test_strip_unused_nodes(batch):
    """strip_unused_nodes(name=add_node, type_for_name=float, shape_for_name="1,3"): the inner
    node is a placeholder of that shape; nothing before it or off the output's path is left."""
    nodes = {n.name: n for n in batch.run.graph.node}
    node = nodes["strip_unused/add_node"]
    assert node.op == "Placeholder"
    assert [d.size for d in node.attr["shape"].shape.dim] == [1, 3]
    assert "strip_unused/unused_node" not in nodes and "strip_unused/a_const" not in nodes
    assert not {"Add", "AddV2", "Sub"} & set(batch.ops("strip_unused"))
    np.testing.assert_allclose(batch.output("strip_unused", "mul_node"), [[3, 6, 9]])
