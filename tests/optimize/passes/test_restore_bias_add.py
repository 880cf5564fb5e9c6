"""restore_bias_add: after the whole pipeline every conv/matmul bias sits right after its conv."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import PASSES, optimize, passes
from kfreeze.tfenv import tf
from tests.optimize.helpers import by_name, const, ctx, ops, residual_block_graph, run

LINEAR = ("Conv2D", "DepthwiseConv2dNative", "MatMul")
WITHOUT = [(s.name, s.fn) for s in PASSES if s.name != "restore_bias_add"]  # the pipeline before the pass


def bare_linear(graph) -> dict[str, str]:
    """conv/matmul name -> the op reading it, for those not read by exactly one BiasAdd."""
    readers: dict[str, list[str]] = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i.lstrip("^").split(":")[0], []).append(n.op)
    return {n.name: ",".join(readers.get(n.name, [])) for n in graph.node
            if n.op in LINEAR and readers.get(n.name) != ["BiasAdd"]}


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


HOISTED = [("conv", "bn"), ("depthwise", "bn"), ("matmul", "bn")]  # the forms Grappler takes apart
CASES = HOISTED + [("conv", "keras_bias"), ("conv", "bias_add")]


@pytest.mark.parametrize("kind,bias", CASES)
def test_bias_follows_its_conv_and_outputs_stay(kind, bias, rng):
    graph = residual_block_graph(kind, rng, bias)
    new, _ = optimize(graph, ctx())
    assert bare_linear(new) == {}, new
    x = rng.normal(size=[1, 6] if kind == "matmul" else [1, 6, 6, 4]).astype(np.float32)
    assert rel_err(run(new, {"x:0": x}), run(graph, {"x:0": x})) < 1e-5
    assert not any(n.op.startswith("_") for n in new.node)


@pytest.mark.parametrize("kind,bias", HOISTED)
def test_negative_control_old_pipeline_hoists_the_bias(kind, bias, rng):
    """Without the pass Grappler's sum leaves the conv bare: the check above would fail."""
    old, _ = optimize(residual_block_graph(kind, rng, bias), ctx(), pipeline=WITHOUT)
    assert list(bare_linear(old).values()) == ["AddN"]


def test_opencv_mode_too(rng):
    new, _ = optimize(residual_block_graph("conv", rng), ctx(opencv=True))
    assert bare_linear(new) == {} and ops(new)["Add"] == 1 and "AddV2" not in ops(new)


def test_no_bias_gets_none(rng):
    graph = residual_block_graph("conv", rng, "none")
    new, _ = optimize(graph, ctx())
    assert ops(new)["BiasAdd"] == 1  # the first block's batch norm, folded
    assert list(bare_linear(new).values()) == ["AddV2"]  # the second conv: nothing to fuse, no zero bias
    x = rng.normal(size=[1, 6, 6, 4]).astype(np.float32)
    assert rel_err(run(new, {"x:0": x}), run(graph, {"x:0": x})) < 1e-5


def _hoisted(rng, shared=False, terms=2):
    """Grappler's form: out = AddV2(AddN(conv, x, ...), c); ``shared``: the AddN is read twice."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [1, 6, 6, 4], name="x")
        conv = tf.nn.conv2d(x, const(rng, 3, 3, 4, 4), 1, "SAME", name="conv")
        total = tf.math.add_n([conv] + [x] * (terms - 1), name="sum")
        y = tf.add(total, const(rng, 4), name="biased")
        tf.identity(y * total if shared else y, name="out")
    return g.as_graph_def()


@pytest.mark.parametrize("terms", [2, 3])
def test_pass_on_grapplers_form(rng, terms):
    graph = _hoisted(rng, terms=terms)
    new = passes.restore_bias_add(graph, ctx())
    nodes = by_name(new)
    assert nodes["conv/bias"].op == "BiasAdd" and nodes["conv/bias"].input[0] == "conv"
    assert nodes["biased"].op == ("AddV2" if terms == 2 else "AddN") and "sum" not in nodes
    x = rng.normal(size=[1, 6, 6, 4]).astype(np.float32)
    assert rel_err(run(new, {"x:0": x}), run(graph, {"x:0": x})) < 1e-6


def test_a_sum_read_elsewhere_stays(rng):
    graph = _hoisted(rng, shared=True)
    assert passes.restore_bias_add(graph, ctx()) == graph
