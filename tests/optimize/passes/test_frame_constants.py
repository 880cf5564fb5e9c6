"""Tests for the ``frame_constants`` pass (kfreeze/optimize/passes/frame_constants.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze import graphio
from kfreeze.optimize import Context, InputSpec, optimize, passes, passes_for
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2
from tests.optimize.helpers import ctx, run, ops, by_name


def test_frame_constants_keeps_folded_constants_in_the_loop(gru_frozen):
    frozen, x, expected = gru_frozen
    ctx = Context((InputSpec("seq"),), ("gru",))
    without = [(n, f) for n, f in passes_for(ctx) if not n.startswith("frame_constants")]
    broken, _ = optimize(frozen, ctx, without)  # fold_affine's new bias lands in the root frame
    with pytest.raises(tf.errors.InvalidArgumentError, match="different frames"):
        run(broken, {"seq:0": x}, "gru:0")
    fixed, stats = optimize(frozen, ctx)
    np.testing.assert_allclose(run(fixed, {"seq:0": x}, "gru:0"), expected, rtol=1e-5, atol=1e-6)
    assert ops(fixed).get("Enter", 0) > 0  # still a loop, run by the session


def test_frame_constants_copies_a_constant_read_inside_and_outside_a_loop(gru_frozen):
    frozen, x, expected = gru_frozen
    loop = graphio.loop_nodes(frozen)
    reader = next(n for n in frozen.node if n.name in loop and n.op in ("MatMul", "BiasAdd"))
    shared = node_def_pb2.NodeDef(name="shared_zero", op="Const")
    zero = np.zeros([], np.float32)
    shared.attr["dtype"].type = tf.float32.as_datatype_enum
    shared.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(zero))
    graph = graph_pb2.GraphDef()
    graph.CopyFrom(frozen)
    graph.node.append(shared)
    # x + 0 inside the loop, and the output + 0 outside it
    add_in = node_def_pb2.NodeDef(name=f"{reader.name}/plus_zero", op="AddV2", input=[reader.name, "shared_zero"])
    add_in.attr["T"].type = tf.float32.as_datatype_enum
    for node in graph.node:
        for i, inp in enumerate(node.input):
            if inp == reader.name:
                node.input[i] = add_in.name
    graph.node.append(add_in)
    for node in graph.node:
        if node.name == "gru":
            node.name = "gru_raw"
    for node in graph.node:
        for i, inp in enumerate(node.input):
            if inp == "gru":
                node.input[i] = "gru_raw"
    out = node_def_pb2.NodeDef(name="gru", op="AddV2", input=["gru_raw", "shared_zero"])
    out.attr["T"].type = tf.float32.as_datatype_enum
    graph.node.append(out)
    ctx = Context((InputSpec("seq"),), ("gru",))
    fixed = passes.frame_constants(graph, ctx)
    copies = [n for n in fixed.node if n.name.startswith("shared_zero/in_loop")]
    assert len(copies) == 1 and copies[0].input[0].startswith("^")
    assert not by_name(fixed)["shared_zero"].input  # the outside reader keeps the root-frame constant
    np.testing.assert_allclose(run(fixed, {"seq:0": x}, "gru:0"), expected, rtol=1e-5, atol=1e-6)
