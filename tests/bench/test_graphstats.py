"""bench/graphstats.py: the FLOP counter against hand-computed counts, the fusion share, the peak."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import graphstats  # noqa: E402

from kfreeze.tfenv import tf  # noqa: E402


def _graph(batch=1, bias=False):
    """input [b,8,8,3] -> Conv2D 3x3x3x4 SAME -> depthwise 3x3 x2 VALID -> [b,288] -> MatMul [288,5],
    and a transposed MatMul on the same features."""
    rng = np.random.default_rng(0)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [batch, 8, 8, 3], name="input")
        y = tf.nn.conv2d(x, rng.random((3, 3, 3, 4), np.float32), 1, "SAME", name="conv")
        if bias:
            y = tf.nn.relu(tf.nn.bias_add(y, rng.random(4, np.float32)))
        y = tf.nn.depthwise_conv2d(y, rng.random((3, 3, 4, 2), np.float32), [1, 1, 1, 1], "VALID", name="dw")
        f = tf.reshape(y, [-1 if batch is None else batch, 288])
        m = tf.matmul(f, rng.random((288, 5), np.float32), name="fc")
        t = tf.matmul(tf.transpose(f), rng.random((288, 5), np.float32), transpose_a=True, name="fc_t")
        tf.identity(m + t, name="output")
    return g.as_graph_def()


def test_flops_are_twice_the_macs_counted_by_hand():
    counts = graphstats.flops(_graph())
    conv = 2 * (8 * 8 * 4) * (3 * 3 * 3)          # 256 outputs x 27 MACs
    depthwise = 2 * (6 * 6 * 8) * (3 * 3)          # 288 outputs x 9 MACs
    matmul = 2 * 2 * (1 * 5) * 288                 # two matmuls, 5 outputs x 288 MACs each
    assert counts == {"Conv2D": conv, "DepthwiseConv2dNative": depthwise, "MatMul": matmul,
                      "total": conv + depthwise + matmul}


def test_flops_refuse_an_unknown_batch():
    with pytest.raises(ValueError, match="unknown shape"):
        graphstats.flops(_graph(batch=None))


def _cpuinfo(vendor, family, flags):
    return (f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: 2\n"
            f"model name\t: X\ncpu MHz\t\t: 2500.000\nflags\t\t: fpu {flags}\n\nprocessor\t: 1\n")


@pytest.mark.parametrize("vendor,family,flags,per_cycle", [
    ("AuthenticAMD", 26, "avx avx2 fma avx512f", 64),   # Zen 5: full 512-bit datapath
    ("AuthenticAMD", 25, "avx avx2 fma avx512f", 32),   # Zen 4: AVX-512 double-pumped
    ("AuthenticAMD", 25, "avx avx2 fma", 32),           # Zen 3
    ("GenuineIntel", 6, "avx avx2 fma avx512f", 64),
    ("GenuineIntel", 6, "avx", 16),
])
def test_peak_from_cpuinfo(vendor, family, flags, per_cycle):
    p = graphstats.peak(graphstats.cpu_info(_cpuinfo(vendor, family, flags)))
    assert p["flop_per_cycle"] == per_cycle
    assert p["gflops_per_core"] == pytest.approx(per_cycle * 2.5)
