"""Converters' own output (issue 25): kfreeze prints one line, not MLIR's or tf2onnx's before it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kfreeze.quiet import captured_stderr

ROOT = Path(__file__).resolve().parents[1]


def test_what_writes_to_fd_2_is_captured_and_replayed_only_with_debug(capfd, monkeypatch):
    monkeypatch.delenv("KFREEZE_DEBUG", raising=False)
    with captured_stderr() as got:
        os.write(2, b"loc(fused[...]): error: C++ noise\n")
        print("python noise", file=sys.__stderr__)
        with captured_stderr():  # nested: the outer capture holds it
            os.write(2, b"inner\n")
    assert capfd.readouterr().err == ""
    assert got == ["loc(fused[...]): error: C++ noise\npython noise\ninner\n"]
    os.write(2, b"after\n")  # fd 2 is back
    assert capfd.readouterr().err == "after\n"
    monkeypatch.setenv("KFREEZE_DEBUG", "1")
    with captured_stderr():
        os.write(2, b"shown with --debug\n")
    assert capfd.readouterr().err == "shown with --debug\n"


@pytest.mark.slow
@pytest.mark.parametrize("target, said", [("onnx", "has no ONNX conversion in tf2onnx"),
                                          ("tflite", "is not a TFLite builtin op")])
def test_a_failing_converter_leaves_one_line_on_the_terminal(tmp_path, target, said):
    """Igamma: tf2onnx logs 'Tensorflow op [y: Igamma] is not supported', the TFLite converter prints
    MLIR's diagnostics from C++; a real process (its stderr a file, not CliRunner's) shows only kfreeze's."""
    from kfreeze import graphio
    from kfreeze.tfenv import tf

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        tf.identity(tf.math.igamma(x + 2.0, x + 1.0), name="y")
    graphio.write_graph(g.as_graph_def(), tmp_path / "ig.pb")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("KFREEZE_DEBUG", None)
    done = subprocess.run(
        [sys.executable, "-c", "from kfreeze.cli import main; main()", "-q", "run", str(tmp_path / "ig.pb"),
         "--inputs", "x", "--outputs", "y", "--input-shape", "[1, 3]", "--out", str(tmp_path / "out"),
         "--targets", f"[{target}]"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: --targets: op Igamma"), done.stderr
    assert said in done.stderr
