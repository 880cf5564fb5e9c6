"""onnx/tensorflow-onnx tests/test_optimizers.py: the cases that have a TensorFlow form, rebuilt
as TF1 graphs and fed through ``kfreeze run --graph`` (all in one run, ``Batch``).

tf2onnx's tests build an ONNX graph, optimize it and assert how many ops of one type remain
(``remaining_op_num``) with the same answer. The same graph in TF ops, through kfreeze's
optimizer (Grappler and its own passes), is judged the same way: the op count among the case's
output's ancestors, and the output against the source graph's.
"""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.tfenv import tf
from tests.peers.harness import Batch, placeholder, var

RNG = np.random.default_rng(0)
X = RNG.normal(size=(1, 2, 3, 4)).astype(np.float32)


def _w(shape, name):
    """A weight whose value depends on its name only (each graph is built twice: source and reference)."""
    import zlib
    return var(np.random.default_rng(zlib.crc32(name.encode())).normal(size=shape).astype(np.float32), name)


CASES = {}  # case -> (build, feeds, op type, remaining count)


def case(name, op, remaining, feeds=None):
    def deco(fn):
        CASES[name] = (fn, feeds or {"x": X}, op, remaining)
        return fn
    return deco


@case("transpose_pair", "Transpose", 0)
def _transpose_pair():  # test_transpose_merge / two transposes that cancel
    x = placeholder("x", X.shape)
    y = tf.transpose(tf.transpose(x, [0, 2, 3, 1]), [0, 3, 1, 2])
    tf.identity(y * _w([4], "w"), name="output")


@case("transpose_relu", "Transpose", 0)
def _transpose_relu():  # test_transpose_relu: T -> Relu -> T^-1
    x = placeholder("x", X.shape)
    y = tf.transpose(tf.nn.relu(tf.transpose(x * _w([4], "w"), [0, 2, 3, 1])), [0, 3, 1, 2])
    tf.identity(y, name="output")


@case("transpose_add", "Transpose", 0)
def _transpose_add():  # test_transpose_with_add1: T -> Add(const) -> T^-1
    x = placeholder("x", X.shape)
    t = tf.transpose(x * _w([4], "w"), [0, 2, 3, 1])
    y = tf.transpose(t + _w([2], "b"), [0, 3, 1, 2])
    tf.identity(y, name="output")


@case("transpose_concat", "Transpose", 0)
def _transpose_concat():  # test_transpose_with_concat: both inputs T, Concat, T^-1
    x = placeholder("x", X.shape)
    a = tf.transpose(x * _w([4], "wa"), [0, 2, 3, 1])
    b = tf.transpose(x * _w([4], "wb"), [0, 2, 3, 1])
    tf.transpose(tf.concat([a, b], axis=3), [0, 3, 1, 2], name="output")


@case("identity_chain", "Identity", 0)
def _identity_chain():  # test_identity_non_graph_output / test_back_to_back_identity
    x = placeholder("x", X.shape)
    y = tf.identity(tf.identity(tf.identity(x * _w([4], "w"))))
    tf.nn.relu(tf.identity(y), name="output")


@case("duplicated_nodes", "Relu", 1)
def _duplicated_nodes():  # test_merge_duplicated_nodes: two identical ops on the same input
    x = placeholder("x", X.shape)
    y = x * _w([4], "w")
    tf.math.add(tf.nn.relu(y), tf.nn.relu(y), name="output")


@case("duplicated_constants", "Const", 1)
def _duplicated_constants():  # test_duplicated_duplicated_constants: equal weights, one Const
    x = placeholder("x", X.shape)
    value = np.float32([0.5, -1.0, 2.0, 0.25])
    tf.math.add(x * var(value, "w1"), x * var(value, "w2"), name="output")


@case("const_fold_transpose", "Transpose", 0, feeds={"x": RNG.normal(size=(1, 4)).astype(np.float32)})
def _const_fold_transpose():  # test_const_fold_trans_with_const1: Transpose of a constant folds
    x = placeholder("x", [1, 4])
    tf.linalg.matmul(x, tf.transpose(_w([3, 4], "w")), name="output")


@case("const_fold_unsqueeze", "ExpandDims", 0)
def _const_fold_unsqueeze():  # test_const_fold_unsqueeze: Unsqueeze of a constant folds
    x = placeholder("x", X.shape)
    tf.math.add(x, tf.expand_dims(tf.expand_dims(_w([3, 4], "w"), 0), 0), name="output")


@case("reshape_chain", "Reshape", 1)
def _reshape_chain():  # test_reshape_opt: Reshape of a Reshape is one Reshape
    x = placeholder("x", X.shape)
    y = tf.reshape(tf.reshape(x * _w([4], "w"), [1, 6, 4]), [1, 24])
    tf.identity(y, name="output")


@case("squeeze_unsqueeze", "ExpandDims", 0)
def _squeeze_unsqueeze():  # test_squeeze_unsqueeze cancel each other
    x = placeholder("x", X.shape)
    y = tf.squeeze(tf.expand_dims(x * _w([4], "w"), 1), [1])
    tf.nn.relu(y, name="output")


@case("cast_chain", "Cast", 0)
def _cast_chain():  # test_cast_opt: float -> double -> float, value-preserving, goes
    x = placeholder("x", X.shape)
    y = tf.cast(tf.cast(x * _w([4], "w"), tf.float64), tf.float32)
    tf.nn.relu(y, name="output")


@case("mul_by_one_add_zero", "Mul", 0)
def _neutral_ops():  # const fold of neutral elements: x * 1 + 0
    x = placeholder("x", X.shape)
    y = (x + _w([4], "b")) * tf.ones([4]) + tf.zeros([4])
    tf.nn.relu(y, name="output")


BATCH = Batch()
for name, (build, feeds, _, _) in CASES.items():
    BATCH.add(name, build, feeds, ["output"])

XFAIL = {
}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return BATCH.go(tmp_path_factory.mktemp("tf2onnx"))


def test_the_batch_runs_and_verifies(batch):
    assert batch.run.ok, batch.run.output


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=XFAIL[n]))
                                  if n in XFAIL else n for n in CASES])
def test_remaining_op_num(batch, name):
    _, _, op, remaining = CASES[name]
    ops = batch.ops(name)
    if op == "Const":  # only the weights: the shape/axis constants are not the point
        count = sum(1 for n in batch.run.graph.node if n.name.startswith(f"{name}/") and n.op == "Const"
                    and n.attr["value"].tensor.tensor_shape.dim and n.attr["value"].tensor.dtype == 1
                    and n.attr["value"].tensor.tensor_shape.dim[0].size == 4)
    else:
        count = ops.count(op)
    assert count == remaining, ops


@pytest.mark.parametrize("name", list(CASES))
def test_same_answer(batch, name):
    np.testing.assert_allclose(batch.output(name), batch.expected(name), rtol=1e-5, atol=1e-5)
