"""Tests for the ``transform_graph`` pass (kfreeze/optimize/passes/transform_graph.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.optimize import passes
from kfreeze.tfenv import tf
from tests.optimize.helpers import ATOL, RTOL, ctx, run, ops, by_name, conv_bn_graph


@pytest.mark.parametrize("bn_name", ["FusedBatchNorm", "FusedBatchNormV3"])
def test_transform_graph_folds_fused_batch_norm_into_conv(rng, bn_name):
    """TransformGraph folds V1; V3 (what tf.compat.v1.nn.fused_batch_norm emits) needs
    batch_norm_to_affine + fold_affine. Either way no batch norm is left."""
    graph = conv_bn_graph(rng, getattr(tf.raw_ops, bn_name))
    assert bn_name in ops(graph)
    c = ctx(["x"])
    out = passes.fold_affine(passes.batch_norm_to_affine(passes.transform_graph(graph, c), c), c)
    hist = ops(out)
    assert not any(op.startswith("FusedBatchNorm") for op in hist), hist
    assert hist.get("Conv2D") == 1 and hist.get("BiasAdd") == 1 and "Mul" not in hist
    assert "out" in by_name(out) and "x" in by_name(out)
    xv = rng.normal(size=[2, 6, 6, 2]).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x:0": xv}), run(graph, {"x:0": xv}), rtol=RTOL, atol=ATOL)
