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


@pytest.mark.slow
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
    'reg', verify called it so, and metrics.json says it."""
    tmp, _, result = two_io_run
    assert "  net.forward(['cls', 'reg'])" in result.output.splitlines()
    assert "OpenCV max_abs_diff" in result.output and "(net.forward takes the output names)" in result.output
    out = tmp / "out"
    assert json.loads((out / "metrics.json").read_text())["opencv_names"] == {"cls": "cls", "reg": "reg"}


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


def _tf1_graph(folder: Path, scalar: bool) -> tuple[Path, str]:
    """A variable times 2, plus an input fed as a scalar (``scalar``), or nothing fed at all."""
    from kfreeze.tfenv import tf
    folder.mkdir(parents=True)
    with tf.Graph().as_default() as g:
        v = tf.compat.v1.Variable(np.float32([1.0, 3.0]), name="v", use_resource=False)
        y = v * 2.0
        if scalar:
            y = y + tf.compat.v1.placeholder(tf.float32, [], name="x")
        tf.identity(y, name="out")
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = tf.compat.v1.train.Saver().save(sess, str(folder / "model.ckpt"), write_meta_graph=False)
        tf.io.write_graph(g.as_graph_def(), str(folder), "graph.pbtxt", as_text=True)
    return folder / "graph.pbtxt", prefix


@pytest.mark.slow
@pytest.mark.parametrize("scalar", [False, True], ids=["no_inputs", "scalar_input"])
def test_run_a_tf1_graph_with_no_inputs_or_a_scalar_one(tmp_path, scalar):
    """Nothing to batch: verify runs the graph once (samples 1), and no output is called constant."""
    graph, ckpt = _tf1_graph(tmp_path / "g", scalar)
    shape = ["--inputs", "x", "--input-shape", "[]"] if scalar else []
    result = invoke("--graph", graph, "--checkpoint", ckpt, "--outputs", "out", *shape, "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert ("has no inputs (no placeholder)" in result.output) is not scalar
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["passed"] and metrics["samples"] == 1 and metrics["constant_outputs"] == []
    assert json.loads((tmp_path / "o" / "names.json").read_text())["inputs"] == (["x"] if scalar else [])


@pytest.mark.slow
def test_a_failed_verify_keeps_the_artifacts_and_the_report(tmp_path, tiny_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "metrics.json").write_text("{}")  # a stale pass from an earlier run
    result = invoke(tiny_path, "--out", tmp_path / "o", "--atol", "1e-30", "--rtol", "1e-30")
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(f"error: {tmp_path / 'o'}/optimized.pb: output 'probs' differs from the source model")
    assert json.loads((tmp_path / "o" / "verify_failed.json").read_text())["passed"] is False
    assert (tmp_path / "o" / "optimized.pb").is_file() and not (tmp_path / "o" / "metrics.json").exists()


# -- sources kfreeze tells apart by their bytes (issue #22) ----------------------------------------

from tests.frozen_graphs import build as build_frozen  # noqa: E402
from tests.saved_models import save_tf1_examples, save_two_signatures  # noqa: E402


@pytest.fixture(scope="module")
def seed_graph(tmp_path_factory):
    return build_frozen("seed", tmp_path_factory.mktemp("seed") / "frozen_graph.pb")


@pytest.mark.slow
def test_run_a_frozen_graph_cut_at_its_tf_data_input(seed_graph, tmp_path):
    """The seeds' flow in one command: a frozen graph fed by tf.data, cut at IteratorGetNext to a fixed
    [1, 20, 20, 1], optimized, verified against the frozen graph itself, and loaded in OpenCV (judged:
    --opencv)."""
    result = invoke(seed_graph, "--inputs", "IteratorGetNext", "--outputs", "softmax_tensor",
                    "--input-shape", "[1, 20, 20, 1]", "--opencv", "--samples", "4", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "is frozen already (no checkpoint)" in result.output
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["passed"] and metrics["max_abs_diff"] < 1e-5
    assert metrics["opencv_error"] is None and metrics["opencv_max_abs_diff"] <= 1e-4
    assert "import/IteratorGetNext:0" in result.output and "import/softmax_tensor:0" in result.output
    from kfreeze import graphio
    optimized = graphio.read_graph(tmp_path / "o" / "optimized.pb")
    ops = {n.op for n in optimized.node}
    assert not ops & {"IteratorGetNext", "OneShotIterator", "TensorSliceDataset", "RepeatDataset"}
    placeholder = next(n for n in optimized.node if n.op == "Placeholder")
    assert placeholder.name == "IteratorGetNext"
    assert [d.size for d in placeholder.attr["shape"].shape.dim] == [1, 20, 20, 1]
    assert len(optimized.node) < len(graphio.read_graph(seed_graph).node)


@pytest.mark.slow
def test_a_frozen_graph_is_known_by_its_bytes_not_its_suffix(seed_graph, tmp_path):
    """A binary graph named .pbtxt and a text graph named .bin: each read as what it is."""
    (tmp_path / "binary.pbtxt").write_bytes(seed_graph.read_bytes())
    text = build_frozen("seed", tmp_path / "text.bin", text=True)
    from kfreeze import graphio, sources
    assert sources.kind(tmp_path / "binary.pbtxt") == "graph" and sources.kind(text) == "graph_text"
    assert len(graphio.read_graph(tmp_path / "binary.pbtxt").node) == len(graphio.read_graph(text).node)
    result = invoke(text, "--inputs", "IteratorGetNext", "--input-shape", "[1, 20, 20, 1]", "--samples", "2",
                    "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_a_frozen_graph_goes_through_the_op_policy(tmp_path):
    graph = build_frozen("reads_file", tmp_path / "reads.pb")
    result = invoke(graph, "--inputs", "x", "--outputs", "y", "--out", tmp_path / "o")
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert "node 'read' is a ReadFile op, which touches files" in line
    assert line.endswith("pass --trust-code") and "params.yaml" not in line


def test_a_graph_with_variables_and_no_checkpoint_is_one_line(tmp_path):
    result = invoke(ROOT / "models" / "digits_tf1" / "graph.pbtxt", "--inputs", "IteratorGetNext",
                    "--outputs", "softmax_tensor", "--out", tmp_path / "o")
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert "variable(s)" in line and "no checkpoint is given" in line and "graph.pbtxt" in line


def test_a_file_of_no_known_kind_is_refused_by_its_bytes(tmp_path):
    (tmp_path / "notes.model").write_text("hello")
    result = invoke(tmp_path / "notes.model", "--out", tmp_path / "o")
    assert result.exit_code == 1
    assert "notes.model: is no Keras file (HDF5 or zip), GraphDef or SavedModel folder" in result.output
    (tmp_path / "folder").mkdir()
    result = invoke(tmp_path / "folder", "--out", tmp_path / "o")
    assert result.exit_code == 1 and "holds no saved_model.pb" in result.output


@pytest.mark.parametrize("fmt, name", [("h5", "net.model"),  # the other two: make test-matrix
                                       pytest.param("keras", "net.model", marks=(pytest.mark.slow, pytest.mark.matrix)),
                                       pytest.param("keras", "weights.bin", marks=(pytest.mark.slow, pytest.mark.matrix))])
@pytest.mark.slow
def test_keras_files_are_known_by_their_magic_bytes_whatever_the_suffix(tmp_path, tiny_model, fmt, name):
    """An HDF5 model named *.model, a .keras zip named *.model or *.bin: run as Keras models."""
    saved = tmp_path / f"saved.{fmt}"
    tiny_model.save(saved)
    (tmp_path / name).write_bytes(saved.read_bytes())
    from kfreeze import sources
    assert sources.kind(tmp_path / name) == ("zip" if fmt == "keras" else "hdf5")
    result = invoke(tmp_path / name, "--samples", "2", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["passed"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A Keras 3 model.export() SavedModel: two inputs, two outputs, batch norm."""
    from tests.conftest import build_two_io
    folder = tmp_path_factory.mktemp("sm") / "exported"
    model = build_two_io(5)
    model.export(folder, verbose=False)
    return folder, model


@pytest.mark.slow
def test_run_a_savedmodel_folder(exported, tmp_path):
    """Inputs and outputs named after the signature's keys; verified against the signature function itself."""
    folder, model = exported
    result = invoke(folder, "--samples", "4", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "SavedModel signature 'serving_default'" in result.output
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["passed"] and metrics["reference"] == "savedmodel" and metrics["max_abs_diff"] < 1e-4
    names = json.loads((tmp_path / "o" / "names.json").read_text())
    assert names["inputs"] == ["img", "vec"] and names["outputs"] == ["output_0", "output_1"]
    from kfreeze import graphio
    from kfreeze.tfenv import tf
    optimized = graphio.read_graph(tmp_path / "o" / "optimized.pb")
    assert not {n.op for n in optimized.node} & {"VarHandleOp", "ReadVariableOp", "StatefulPartitionedCall"}
    rng = np.random.default_rng(0)
    img, vec = rng.random((2, 6, 6, 2), dtype=np.float32), rng.random((2, 5), dtype=np.float32)
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(optimized, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            got = sess.run(["output_0:0", "output_1:0"], {"img:0": img, "vec:0": vec})
    want = model([img, vec])
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, np.asarray(b), atol=1e-5)


@pytest.mark.slow
def test_a_savedmodel_signature_is_chosen_by_its_key(tmp_path):
    folder = save_two_signatures(tmp_path / "sm")
    result = invoke(folder, "--signature", "doubled", "--samples", "3", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "names.json").read_text())["outputs"] == ["z"]
    result = invoke(folder, "--signature", "tripled", "--out", tmp_path / "o2")
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: --signature:") and "has no signature 'tripled' (it has doubled, serving_default)" in line


def test_a_savedmodel_goes_through_the_op_policy_before_it_is_loaded(tmp_path):
    folder = save_two_signatures(tmp_path / "sm", reads=True)
    result = invoke(folder, "--out", tmp_path / "o")
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert "is a ReadFile op, which touches files" in line and line.endswith("pass --trust-code")
    assert "SavedModel signature" not in result.output  # refused before convert_variables_to_constants_v2


def test_a_tf1_savedmodel_node_name_points_to_its_key(tmp_path):
    """A TF1 SavedModel's output given by its node name: one line naming the key the frozen graph uses."""
    folder = save_tf1_examples(tmp_path / "sm")
    result = invoke(folder, "--inputs", "ParseExample/ParseExampleV2", "--outputs", "output_node",
                    "--out", tmp_path / "o")
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert line == ("error: --outputs: node 'output_node' is named 'scores' in the frozen graph: the signature's "
                    "inputs and outputs take their keys' names; pass --outputs [scores]"), line


def test_a_keras_file_given_as_graph_is_one_line_naming_source(tmp_path, tiny_path):
    result = invoke("--graph", tiny_path, "--out", tmp_path / "o")
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert "is a zip archive, a Keras model file, not a graph" in line and f"kfreeze run {tiny_path}" in line


def test_a_key_and_its_fix_are_named_as_the_user_wrote_them():
    """The spec's origin, not a rewrite of the message: params.yaml's key, or kfreeze run's flag or file."""
    from kfreeze.params import TF1, Origin
    project, flags = Origin.project(TF1, "m"), Origin(TF1, "m", params=None)
    assert project.where("input_shape") == "params.yaml: graphs.m.input_shape"
    assert project.where("verify.data") == "params.yaml: verify.data"
    assert project.setting("trust_code", "true") == "set graphs.m.trust_code: true in params.yaml"
    assert flags.where("input_shape") == "--input-shape" and flags.where("verify.data") == "--data"
    assert flags.where("graph", "/home/u/g.pb") == "/home/u/g.pb"
    assert flags.setting("trust_code", "true") == "pass --trust-code"
    assert flags.setting("theano_kernels", "false") == "pass --no-theano-kernels"
    assert flags.setting("custom_objects", "[a.b:C]") == "pass --custom-objects [a.b:C]"


@pytest.mark.slow
def test_run_writes_what_the_dvc_stages_write(two_io_run, tmp_path):
    """The same steps on the same entry: a project's resolve + stages (settings files) and kfreeze run
    (flags) write byte-identical names.json, signature.json and optimized.pb."""
    import os

    from kfreeze import pipeline
    tmp, _, result = two_io_run
    assert result.exit_code == 0, result.output
    (tmp_path / "models" / "two").mkdir(parents=True)
    shutil.copyfile(tmp / "Two IO.keras", tmp_path / "models" / "two" / "Two IO.keras")
    (tmp_path / "params.yaml").write_text(
        "graphs: {}\nmodels:\n  two:\n    source: models/two/Two IO.keras\n"
        "    input_shape: {img: [2, 6, 6, 2], vec: [2, 5]}\n    targets: [tf, onnx, tflite]\n"
        "verify: {samples: 4, atol: 1.0e-3}\n")
    before = os.getcwd()
    os.chdir(tmp_path)  # a DVC stage runs in the project's root
    try:
        pipeline.resolve("two", "params.yaml", Path("build"))
        for step in oneshot.steps("models"):
            pipeline.from_settings(step, "two", Path("build"), Path("metrics"), warn=lambda line: None)
    finally:
        os.chdir(before)
    built, out = tmp_path / "build" / "two", tmp / "out"
    for name in ("names.json", "signature.json", "optimized.pb", "frozen.pb", "onnx/model.onnx",
                 "tflite/model.tflite", "tflite/signature.json"):
        assert (built / name).read_bytes() == (out / name).read_bytes(), name
    ours, theirs = (json.loads(p.read_text()) for p in (out / "metrics.json", tmp_path / "metrics" / "two.json"))
    assert ours == theirs


@pytest.mark.slow
def test_graph_flag_takes_a_frozen_graph_without_checkpoint(seed_graph, tmp_path):
    result = invoke("--graph", seed_graph, "--inputs", "IteratorGetNext", "--input-shape", "[1, 20, 20, 1]",
                    "--samples", "2", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["reference"] == "graph"
