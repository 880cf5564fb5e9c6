"""optimized.pb -> model.onnx: names, layout, opset, parity in ONNX Runtime, same bytes twice, clean refusals."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from kfreeze.errors import KfreezeError
from kfreeze.targets import onnx as onnx_target
from tests.targets import graphs


@pytest.fixture(scope="module")
def two_heads():
    return graphs.conv_two_heads()


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_names_shapes_and_parity_in_onnxruntime(two_heads, layout):
    sibling = onnx_target.convert(two_heads.graph, two_heads.inputs, two_heads.outputs, layout, "here")
    sig = sibling.signature
    assert sig["opset"] == onnx_target.OPSET and sig["layout"] == layout
    image = [6, 6, 2] if layout == "NHWC" else [2, 6, 6]
    fmap = [6, 6, 4] if layout == "NHWC" else [4, 6, 6]
    assert sig["inputs"] == [{"name": "image", "dtype": "float32", "shape": [None, *image]},
                             {"name": "vec", "dtype": "float32", "shape": [None, 4]}]
    assert sig["outputs"] == [{"name": "fmap", "dtype": "float32", "shape": [None, *fmap]},
                              {"name": "probs", "dtype": "float32", "shape": [None, 3]}]
    model = onnx.load_from_string(sibling.data)
    assert model.opset_import[0].version == onnx_target.OPSET
    onnx.checker.check_model(model)
    feeds = graphs.feeds_for(two_heads)
    ref = graphs.run_tf(two_heads, feeds)
    got = onnx_target.run(sibling.data, feeds, two_heads.outputs, layout)  # NHWC in, NHWC out
    assert graphs.rel_err(ref, got) < 1e-5
    assert np.ptp(ref["probs"], axis=0).max() > 1e-3  # outputs that depend on the input


def test_nchw_file_takes_nchw_arrays(two_heads):
    """What an OpenCV or C++ user feeds: the NCHW file on transposed arrays gives the NCHW feature map."""
    import onnxruntime as ort

    data = onnx_target.convert(two_heads.graph, two_heads.inputs, two_heads.outputs, "NCHW", "here").data
    feeds = graphs.feeds_for(two_heads)
    ref = graphs.run_tf(two_heads, feeds)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    fmap, = session.run(["fmap"], {"image": feeds["image"].transpose(0, 3, 1, 2), "vec": feeds["vec"]})
    np.testing.assert_allclose(fmap, ref["fmap"].transpose(0, 3, 1, 2), rtol=1e-5, atol=1e-6)


def test_same_graph_same_bytes():
    graph = graphs.dense()
    a = onnx_target.convert(graph.graph, graph.inputs, graph.outputs, "NCHW", "here").data
    b = onnx_target.convert(graphs.dense().graph, graph.inputs, graph.outputs, "NCHW", "here").data
    assert a == b


def test_an_op_without_conversion_is_refused_by_name():
    graph = graphs.matrix_inverse()
    with pytest.raises(KfreezeError) as e:
        onnx_target.convert(graph.graph, graph.inputs, graph.outputs, "NCHW", "params.yaml: models.m.targets")
    assert e.value.where == "params.yaml: models.m.targets"
    assert "op MatrixInverse (node 'inverse')" in e.value.problem and "\n" not in e.value.line()


@pytest.mark.slow
@pytest.mark.e2e  # converter processes with other hash seeds: make test-e2e
def test_same_bytes_whatever_the_hash_seed():
    """tf2onnx's made-up names followed set order; each conversion here runs in its own process."""
    import hashlib
    import subprocess
    import sys
    from pathlib import Path

    code = ("import hashlib; from tests.targets import graphs; from kfreeze.targets import onnx; "
            "g = graphs.gray_conv(); "
            "print(hashlib.sha256(onnx.convert(g.graph, g.inputs, g.outputs, 'NCHW', 'x').data).hexdigest())")
    root = Path(__file__).resolve().parents[2]
    digests = {subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
                              env={"PYTHONPATH": str(root), "PYTHONHASHSEED": str(seed), "PATH": "/usr/bin:/bin"}
                              ).stdout.split()[-1] for seed in (1, 2, 3, 4)}
    assert len(digests) == 1, digests


def test_exact_gelu_converts_through_erf():
    """activation="gelu" freezes to Erfc, which tf2onnx 1.17 cannot convert: the ONNX copy uses 1 - Erf."""
    from kfreeze.tfenv import tf

    rng = np.random.default_rng(0)
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 6], name="x")
        h = tf.matmul(x, tf.constant(rng.normal(0, 2, (6, 5)).astype(np.float32)))
        tf.identity(tf.nn.gelu(h, approximate=False), name="y")
    graph = graphs.Graph(g.as_graph_def(), ["x"], ["y"])
    assert "Erfc" in {n.op for n in graph.graph.node}
    sibling = onnx_target.convert(graph.graph, graph.inputs, graph.outputs, "NCHW", "here")
    assert "Erf" in {n.op_type for n in onnx.load_from_string(sibling.data).graph.node}
    feeds = {"x": rng.normal(0, 3, (64, 6)).astype(np.float32)}
    ref, got = graphs.run_tf(graph, feeds), onnx_target.run(sibling.data, feeds, ["y"], "NCHW")
    assert np.max(np.abs(ref["y"] - got["y"])) < 1e-5 * np.max(np.abs(ref["y"]))
