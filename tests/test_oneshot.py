"""kfreeze run: one file in, frozen + optimized + verified graph out, without params.yaml or DVC."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kfreeze import oneshot
from kfreeze.cli import app
from kfreeze.params import KEYS
from tests.conftest import build_two_io

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args):
    return CliRunner().invoke(app, ["run", *map(str, args)])


def test_every_params_key_has_a_flag():
    help_text = " ".join(invoke("--help").output.split())
    for section in KEYS.values():
        for key in section:
            if key in oneshot.FILE_KEYS:
                flag = "SOURCE" if key == "source" else f"--{key}"
                assert key == "source" or flag in help_text, flag
            else:
                assert f"--{key.replace('_', '-')}" in help_text, key


@pytest.fixture(scope="module")
def two_io_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    model = build_two_io(3)
    model.save(tmp / "Two IO.keras")
    result = invoke(tmp / "Two IO.keras", "--out", tmp / "out", "--input-shape", "{img: [2, 6, 6, 2], vec: [2, 5]}",
                    "--samples", "4", "--atol", "1e-3", "--targets", "tf,onnx,tflite")
    return tmp, model, result


def test_run_writes_the_artifacts_and_prints_the_names(two_io_run):
    tmp, model, result = two_io_run
    assert result.exit_code == 0, result.output
    out = tmp / "out"
    for name in ("optimized.pb", "frozen.pb", "graph.pbtxt", "op_names.txt", "metrics.json", "signature.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["passed"] and metrics["samples"] == 4 and metrics["atol"] == 1e-3
    assert "import/img:0" in result.output and "import/vec:0" in result.output
    assert "import/cls:0" in result.output and "import/reg:0" in result.output
    assert "net.forward([" in result.output  # OpenCV's own layer names for the two outputs
    assert not list(tmp.glob("kfreeze-run-*"))


def test_opencv_takes_the_output_names_and_they_are_recorded(two_io_run):
    """reg is a linear Dense: OpenCV used to fold it into 'two/reg/MatMul'. Now net.forward takes
    'reg', verify called it so, and --out's names.json and signature.json say it."""
    tmp, _, result = two_io_run
    assert "  net.forward(['cls', 'reg'])" in result.output.splitlines()
    assert "OpenCV max_abs_diff" in result.output and "(net.forward takes the output names)" in result.output
    out = tmp / "out"
    assert json.loads((out / "metrics.json").read_text())["opencv_names"] == {"cls": "cls", "reg": "reg"}
    assert json.loads((out / "names.json").read_text())["opencv_outputs"] == ["cls", "reg"]
    assert [o["opencv_name"] for o in json.loads((out / "signature.json").read_text())["outputs"]] == ["cls", "reg"]


def test_the_printed_tf_names_run_the_optimized_graph(two_io_run):
    """Feed and fetch exactly what run printed; the answer is the Keras model's."""
    from kfreeze.tfenv import tf
    tmp, model, result = two_io_run
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((tmp / "out" / "optimized.pb").read_bytes())
    names = [line.split()[1] for line in result.output.splitlines() if line.strip().startswith(("input ", "output "))]
    rng = np.random.default_rng(0)
    img, vec = rng.uniform(0, 1, (2, 6, 6, 2)).astype("float32"), rng.uniform(0, 1, (2, 5)).astype("float32")
    with tf.Graph().as_default() as g:
        tf.import_graph_def(graph_def, name="import")
        with tf.compat.v1.Session(graph=g) as sess:
            got = sess.run(names[2:], {names[0]: img, names[1]: vec})
    want = model.predict([img, vec], verbose=0)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_run_with_targets_writes_verifies_and_prints_the_siblings(two_io_run):
    """--targets: the siblings beside optimized.pb, verified, and the ONNX call printed runs as printed."""
    import onnxruntime as ort

    tmp, model, result = two_io_run
    out = tmp / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    assert {t: m["passed"] for t, m in metrics["targets"].items()} == {"onnx": True, "tflite": True}
    assert (out / "onnx" / "model.onnx").is_file() and (out / "tflite" / "model.tflite").is_file()
    call = next(line.strip() for line in result.output.splitlines() if line.strip().startswith("session.run("))
    assert call.startswith("session.run(['cls', 'reg'], {'img': float32 [2, 2, 6, 6], 'vec': float32 [2, 5]})")
    assert "get_input_details(): 'img' float32 [2, 6, 6, 2], 'vec' float32 [2, 5]" in result.output
    rng = np.random.default_rng(1)
    img, vec = rng.uniform(0, 1, (2, 6, 6, 2)).astype("float32"), rng.uniform(0, 1, (2, 5)).astype("float32")
    session = ort.InferenceSession(str(out / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["cls", "reg"], {"img": img.transpose(0, 3, 1, 2), "vec": vec})  # NCHW, as printed
    for a, b in zip(got, model.predict([img, vec], verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_bad_flag_value_is_one_line_naming_the_flag(tmp_path, tiny_path):
    result = invoke(tiny_path, "--out", tmp_path / "o", "--precision", "float8")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("error: --precision: must be float32 or float16")
    result = invoke(tiny_path, "--out", tmp_path / "o", "--input-dtype", "float32")
    assert result.exit_code == 1 and "error: --input-dtype: applies only with --graph" in result.output


def test_a_missing_source_is_one_line(tmp_path):
    result = invoke(tmp_path / "nope.keras", "--out", tmp_path / "o")
    assert result.exit_code == 1 and "nope.keras: model file not found" in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_run_a_tf1_graph_and_checkpoint(tmp_path):
    src = ROOT / "models" / "digits_tf1"
    shutil.copytree(src, tmp_path / "g", ignore=shutil.ignore_patterns("*.py", "*.md"))
    result = invoke("--graph", tmp_path / "g" / "graph.pbtxt", "--checkpoint", tmp_path / "g" / "model.ckpt-600",
                    "--inputs", "IteratorGetNext", "--outputs", "softmax_tensor", "--input-shape", "[1, 20, 20, 1]",
                    "--samples", "4", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["passed"]
    assert "import/softmax_tensor:0" in result.output


def test_a_failed_verify_keeps_the_artifacts_and_the_report(tmp_path, tiny_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "metrics.json").write_text("{}")  # a stale pass from an earlier run
    result = invoke(tiny_path, "--out", tmp_path / "o", "--atol", "1e-30", "--rtol", "1e-30")
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(f"error: {tmp_path / 'o'}/optimized.pb: output 'probs' differs from the source model")
    assert json.loads((tmp_path / "o" / "verify_failed.json").read_text())["passed"] is False
    assert (tmp_path / "o" / "optimized.pb").is_file() and not (tmp_path / "o" / "metrics.json").exists()
