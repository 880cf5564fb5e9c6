"""Tests for the ``opencv_embedding`` pass (kfreeze/optimize/passes/opencv_embedding.py)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from kfreeze.errors import KfreezeError
from kfreeze.optimize import passes, passes_for
from kfreeze.optimize.graph import light_graph
from kfreeze.tfenv import tf
from kfreeze.verify import index_limits, make_inputs, placeholder_infos
from tests.optimize.helpers import by_name, ctx, ops, run
from tests.optimize.opencv_check import assert_opencv_matches, opencv_fails

V, D, T = 50, 4, 6


def _lookup(wrap=True, dtype=tf.int32, rows=V, steps=T):
    """Keras' Embedding as traced: Keras 3 wraps negative ids (SelectV2(x < 0, x + V, x)) before the
    GatherV2; a float ids input (Keras 2 style) is cast to int32 first."""
    table = np.random.default_rng(0).normal(size=(rows, D)).astype(np.float32)
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(dtype, [1, steps], name="x")
        ids = x if dtype.is_integer else tf.cast(x, tf.int32)
        if wrap:
            ids = tf.where(ids < 0, ids + rows, ids)
        tf.identity(tf.gather(tf.constant(table), ids), name="out")
    return passes.dense_constants(g.as_graph_def(), ctx(opencv=True)), table


def _ids(low=0):
    return np.array([[3, 0, V - 1, 7, 7, 21 if low == 0 else low]], np.int32)


@pytest.mark.parametrize("wrap", [True, False], ids=["keras3_wrap", "plain"])
def test_an_embedding_lookup_is_a_one_hot_matmul_with_the_same_numbers(wrap):
    graph, table = _lookup(wrap)
    assert "opencv_embedding" not in dict(passes_for(ctx()))
    out = passes.opencv_embedding(graph, ctx(opencv=True))
    assert not {"GatherV2", "Cast", "SelectV2", "Less"} & set(ops(out)), ops(out)
    assert by_name(out)["x"].attr["dtype"].type == tf.float32.as_datatype_enum
    ids = _ids(-3 if wrap else 0)  # Keras 3 reads -3 as V - 3
    ref = run(graph, {"x:0": ids})
    np.testing.assert_array_equal(ref[0], table[ids[0] % V])
    np.testing.assert_array_equal(run(out, {"x:0": ids.astype(np.float32)}), ref)  # exact: 0/1 picks a row
    assert opencv_fails(graph, {"x": ids.astype(np.float32)})
    assert_opencv_matches(out, {"x": ids.astype(np.float32)}, ref)


def test_a_large_vocabulary_is_still_exact():
    """Above 4096 rows ``d * d`` rounds in float32, but stays >= 1 where ``d != 0``: the one-hot is exact."""
    graph, table = _lookup(rows=20000)
    out = passes.opencv_embedding(graph, ctx(opencv=True))
    ids = np.array([[19999, 0, 4097, 12345, -1, 8191]], np.int32)
    ref = run(graph, {"x:0": ids})
    np.testing.assert_array_equal(ref[0], table[ids[0] % 20000])
    np.testing.assert_array_equal(run(out, {"x:0": ids.astype(np.float32)}), ref)
    assert_opencv_matches(out, {"x": ids.astype(np.float32)}, ref)
    assert index_limits(light_graph(out), ["x"]) == {"x": 20000}  # verify reads a light graph


def test_float_ids_cast_to_int_lose_the_cast():
    graph, table = _lookup(wrap=False, dtype=tf.float32)
    out = passes.opencv_embedding(graph, ctx(opencv=True))
    assert "Cast" not in ops(out) and "GatherV2" not in ops(out)
    ids = _ids().astype(np.float32)
    np.testing.assert_array_equal(run(out, {"x:0": ids}), run(graph, {"x:0": ids}))


def test_verify_draws_integer_ids_below_input_dim_for_the_float_input():
    out = passes.opencv_embedding(_lookup()[0], ctx(opencv=True))
    infos = placeholder_infos(out, ["x"])
    assert infos[0].dtype == "float32" and index_limits(out, ["x"]) == {"x": V}
    feeds = make_inputs(infos, 1, 0, index_limits=index_limits(out, ["x"]))["x"]
    assert feeds.dtype == np.float32 and (feeds == np.round(feeds)).all() and 0 <= feeds.min() and feeds.max() < V
    ranged = make_inputs(infos, 1, 0, (0.0, 5.0), index_limits(out, ["x"]))["x"]  # verify.input_range: ids too
    assert ranged.dtype == np.float32 and (ranged == np.round(ranged)).all() and set(ranged.ravel()) <= set(range(5))


def test_a_lookup_over_the_size_cap_stays_for_the_refusal(monkeypatch):
    graph, _ = _lookup()
    module = importlib.import_module("kfreeze.optimize.passes.opencv_embedding")  # the package exports the function
    monkeypatch.setattr(module, "MAX_ONE_HOT", T * V * 2 - 1)  # the wrap's two one-hots do not fit
    assert passes.opencv_embedding(graph, ctx(opencv=True)) is graph
    with pytest.raises(KfreezeError, match="GatherV2"):
        passes.opencv_refuse(graph, ctx(opencv=True))


def test_ids_the_graph_reads_elsewhere_stay_integers():
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.int32, [1, T], name="x")
        table = tf.constant(np.ones((V, D), np.float32))
        tf.add(tf.gather(table, x), tf.cast(x, tf.float32)[..., None], name="out")
    graph = g.as_graph_def()
    assert passes.opencv_embedding(graph, ctx(opencv=True)) is graph
