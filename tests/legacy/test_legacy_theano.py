"""Theano-trained Keras 1 files convert right by default: kernels flipped, said on stderr in one line.

The fixture is written as Keras 1.2.2 with the Theano backend wrote it (``th`` dim ordering, kernels
stored (filters, channels, rows, cols), weight names without ':0'); the reference is a numpy forward
pass that convolves as Theano did (the kernel flipped), sharing no code with kfreeze.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import keras1_rnn as k1
from kfreeze import legacy

CONFIG = {"class_name": "Sequential", "config": [
    {"class_name": "Convolution2D", "config": {
        "name": "convolution2d_1", "nb_filter": 3, "nb_row": 3, "nb_col": 2, "dim_ordering": "th",
        "border_mode": "valid", "subsample": [1, 1], "activation": "linear", "bias": True,
        "batch_input_shape": [None, 2, 6, 5], "input_dtype": "float32", "trainable": True, "init": "glorot_uniform"}},
    {"class_name": "Flatten", "config": {"name": "flatten_1", "trainable": True}},
    {"class_name": "Dense", "config": {"name": "dense_1", "output_dim": 4, "activation": "linear", "bias": True,
                                       "trainable": True, "init": "glorot_uniform", "input_dim": None}},
]}


def _weights(suffix: str = ""):
    rng = np.random.default_rng(7)
    return {"convolution2d_1": {f"convolution2d_1_W{suffix}": rng.normal(0, 0.5, (3, 2, 3, 2)).astype(np.float32),
                                f"convolution2d_1_b{suffix}": rng.normal(0, 0.5, (3,)).astype(np.float32)},
            "flatten_1": {},
            "dense_1": {f"dense_1_W{suffix}": rng.normal(0, 0.5, (3 * 4 * 4, 4)).astype(np.float32),
                        f"dense_1_b{suffix}": rng.normal(0, 0.5, (4,)).astype(np.float32)}}


def forward(x_nchw, w, flipped: bool):
    """Keras 1 on Theano: conv2d (a true convolution: the kernel's spatial axes reversed) when ``flipped``,
    else a correlation as TensorFlow computes; bias; Flatten in (c, h, w) order; Dense."""
    (kernel, bias), (dense_w, dense_b) = w["convolution2d_1"].values(), w["dense_1"].values()
    if flipped:
        kernel = kernel[:, :, ::-1, ::-1]
    n, _, h, wd = x_nchw.shape
    f, _, kh, kw = kernel.shape
    out = np.zeros((n, f, h - kh + 1, wd - kw + 1), np.float64)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            patch = x_nchw[:, :, i:i + kh, j:j + kw].astype(np.float64)
            out[:, :, i, j] = np.einsum("nchw,fchw->nf", patch, kernel)
    out += bias[None, :, None, None]
    return out.reshape(n, -1) @ dense_w + dense_b


def _inputs():
    return np.random.default_rng(3).random((5, 2, 6, 5), dtype=np.float32)


def _converted(model, x_nchw):
    return np.asarray(model(np.transpose(x_nchw, (0, 2, 3, 1))))


@pytest.mark.parametrize("backend", [None, "theano"])
def test_theano_weights_are_flipped_by_default_and_said_in_one_line(tmp_path, backend):
    """No backend attribute and names without ':0' (Keras 1 on Theano; named .weights here: an HDF5 file is
    told by its bytes), or backend 'theano' (Keras 2's)."""
    path = tmp_path / ("th.h5" if backend else "th.weights")
    k1.write_keras1(path, CONFIG, _weights(), backend=backend)
    lines = []
    model = legacy.load_source(path, warn=lines.append)
    x = _inputs()
    theano = forward(x, _weights(), flipped=True)
    assert k1.relative_error(forward(x, _weights(), flipped=False), theano) > 0.1  # the flip matters here
    assert k1.relative_error(_converted(model, x), theano) <= 1e-5
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith(f"{path}: weights saved by Theano") and "theano_kernels: false" in lines[0]


def test_theano_kernels_false_turns_the_flip_off(tmp_path):
    path = tmp_path / "th.h5"
    k1.write_keras1(path, CONFIG, _weights(), backend=None)
    lines = []
    model = legacy.load_source(path, theano_kernels=False, warn=lines.append)
    x = _inputs()
    assert not lines
    assert k1.relative_error(_converted(model, x), forward(x, _weights(), flipped=False)) <= 1e-5


@pytest.mark.parametrize("backend, suffix", [(None, ":0"), ("tensorflow", "")])
def test_tensorflow_weights_are_not_flipped(tmp_path, backend, suffix):
    """Names ending in ':0' are TensorFlow variables; a backend attribute other than theano is believed."""
    path = tmp_path / "tf.h5"
    k1.write_keras1(path, CONFIG, _weights(suffix), backend=backend)
    lines = []
    model = legacy.load_source(path, warn=lines.append)
    x = _inputs()
    assert not lines
    assert k1.relative_error(_converted(model, x), forward(x, _weights(suffix), flipped=False)) <= 1e-5


@pytest.mark.slow
def test_kfreeze_run_flips_by_default_says_so_and_verifies(tmp_path):
    """The one-command path: the notice on stderr (naming the flag), verify against the flipped reference."""
    from kfreeze.cli import app

    path = tmp_path / "th_model.h5"
    k1.write_keras1(path, CONFIG, _weights(), backend=None)
    result = CliRunner().invoke(app, ["run", str(path), "--samples", "3", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    notice = [line for line in result.output.splitlines() if "weights saved by Theano" in line]
    assert len(notice) == 1 and notice[0].endswith("pass --no-theano-kernels if they were not trained with Theano")
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["passed"]
    from kfreeze import graphio
    from kfreeze.tfenv import tf
    graph = graphio.read_graph(tmp_path / "o" / "optimized.pb")
    names = graphio.read_json(tmp_path / "o" / "names.json")
    x = _inputs()
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(graph, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            got = sess.run(names["outputs"][0] + ":0" if ":" not in names["outputs"][0] else names["outputs"][0],
                           {names["inputs"][0] + ":0": np.transpose(x, (0, 2, 3, 1))})
    assert k1.relative_error(got, forward(x, _weights(), flipped=True)) <= 1e-5
