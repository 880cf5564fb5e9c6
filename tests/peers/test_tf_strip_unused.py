"""tensorflow/python/tools/strip_unused_test.py, rebuilt and fed through ``kfreeze run --graph``.

The peer cuts the graph at an inner node ('wanted_input_node', a Sub) that becomes a placeholder
with a shape; what follows the output ('later_node') and what precedes the cut go. The peer's
constants are a variable here (kfreeze takes a checkpoint).
"""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.tfenv import tf
from tests.peers.harness import Batch, flags, invoke, var, write_tf1


def _one_input():
    constant_node = var(1.0, "constant_node")
    wanted = tf.math.subtract(constant_node, tf.ones([1]) * 3.0, name="wanted_input_node")
    output = tf.math.multiply(wanted, 2.0, name="output_node")
    tf.math.add(output, 2.0, name="later_node")


def _two_inputs():
    c1, c2 = var(1.0, "constant_node1"), var(2.0, "constant_node2")
    i1 = tf.math.subtract(c1, tf.ones([1]) * 3.0, name="input_node1")
    i2 = tf.math.subtract(c2, tf.ones([1]) * 5.0, name="input_node2")
    output = tf.math.multiply(i1, i2, name="output_node")
    tf.math.add(output, 2.0, name="later_node")


BATCH = Batch()
BATCH.add("one", _one_input, {"wanted_input_node": np.float32([10.0])}, ["output_node"])
BATCH.add("two", _two_inputs, {"input_node1": np.float32([10.0]), "input_node2": np.float32([-5.0])},
          ["output_node"])


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return BATCH.go(tmp_path_factory.mktemp("strip"))


def test_the_batch_runs_and_verifies(batch):
    assert batch.run.ok, batch.run.output


@pytest.mark.parametrize("case,inputs,want", [("one", ["wanted_input_node"], [20.0]),
                                              ("two", ["input_node1", "input_node2"], [-50.0])],
                         ids=["testStripUnused", "testStripUnusedMultipleInputs"])
def test_strip_unused(batch, case, inputs, want):
    ops = batch.ops(case)
    assert "Add" not in ops and "AddV2" not in ops and "Sub" not in ops, ops
    assert len(ops) == 3, ops  # the peer's 3 nodes: the placeholder(s), the constant, the Mul
    nodes = {n.name: n for n in batch.run.graph.node}
    for i in inputs:
        node = nodes[f"{case}/{i}"]
        assert node.op == "Placeholder" and "shape" in node.attr
    assert f"{case}/later_node" not in nodes
    np.testing.assert_allclose(batch.output(case), want, atol=1e-5)


def test_an_input_not_in_the_graph_is_one_error_line(tmp_path):
    """The peer: KeyError for input 'does_not_exist'. kfreeze: one error line naming it."""
    graph, ckpt = write_tf1(tmp_path / "src", _one_input)
    r = invoke(["--graph", graph, "--checkpoint", ckpt,
                *flags(inputs="does_not_exist", outputs="output_node", input_shape=[1], samples=2)], tmp_path / "out")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert len(r.errors()) == 1 and "does_not_exist" in r.errors()[0], r.output


def test_a_tensor_name_as_input_is_taken(tmp_path):
    """The peer refuses 'wanted_input_node:0' (a ValueError: node names only). kfreeze takes a
    tensor name (node:k) on purpose; the result is the same graph, answering 20 for 10."""
    graph, ckpt = write_tf1(tmp_path / "src", _one_input)
    r = invoke(["--graph", graph, "--checkpoint", ckpt,
                *flags(inputs="wanted_input_node:0", outputs="output_node", input_shape=[1], samples=2)],
               tmp_path / "out")
    assert r.ok, r.output
    assert not {"Sub", "Add", "AddV2"} & {n.op for n in r.graph.node}
    placeholders = [n.name for n in r.graph.node if n.op == "Placeholder"]
    assert len(placeholders) == 1
    np.testing.assert_allclose(r.run({f"{placeholders[0]}:0": np.float32([10.0])}, "output_node:0"), [20.0])
