"""Every bad input: exit != 0, one line on stderr naming the file, the problem and the fix,
no traceback, no output of that stage, and other models' outputs untouched."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.bad_input import Project
from tests.entries import keras_entry
from tests.conftest import build_tiny, save_checkpoint

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
TF1 = ROOT / "models" / "digits_tf1"
CKPT = "model.ckpt-600"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    p = Project(tmp_path_factory.mktemp("bad"))
    for stage in ("convert", "export", "freeze", "optimize", "verify"):
        assert p.run(stage, "good").code == 0
    p.good = p.tree("good")
    yield p
    assert p.tree("good") == p.good  # no bad input ever touched another model's artifacts


def check(project, result, stage, name, *expected):
    line = result.stderr.strip()
    assert result.code == 1, (result.code, result.stderr, result.stdout)
    assert len(line.splitlines()) == 1 and line.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in line
    for text in expected:
        assert text in line, line
    assert project.outputs(stage, name) == []
    return line


def keras_bytes(tmp_path, suffix=".keras") -> bytes:
    path = tmp_path / f"m{suffix}"
    build_tiny().save(path)
    return path.read_bytes()


# -- Keras sources: convert ---------------------------------------------------------

def source_cases(tmp_path):
    keras = keras_bytes(tmp_path)
    h5 = keras_bytes(tmp_path, ".h5")
    rng = np.random.default_rng(0)
    cases = {
        "missing": (None, "model file not found"),
        "empty": (b"", "model file is empty"),
        "random": (rng.bytes(4096), "not a .keras archive"),
        "random_h5": (rng.bytes(4096), "not a readable HDF5 file"),
        "pb_as_source": (b"\x0a\x03abc", "not a Keras model file"),
    }
    for frac in (0.1, 0.5, 0.9):
        cases[f"keras_cut_{int(frac * 100)}"] = (keras[: int(len(keras) * frac)], "m.keras")
        cases[f"h5_cut_{int(frac * 100)}"] = (h5[: int(len(h5) * frac)], "m.h5")
    return cases


SOURCE_CASES = ["missing", "empty", "random", "random_h5", "pb_as_source",
                "keras_cut_10", "keras_cut_50", "keras_cut_90", "h5_cut_10", "h5_cut_50", "h5_cut_90"]


@pytest.mark.slow
@pytest.mark.parametrize("case", SOURCE_CASES)
def test_bad_keras_source(project, tmp_path, case):
    data, message = source_cases(tmp_path)[case]
    suffix = ".h5" if "h5" in case else ".pb" if case == "pb_as_source" else ".keras"
    rel = f"models/{case}/m{suffix}"
    if data is not None:
        project.file(rel, data)
    project.add_keras(case, rel)
    check(project, project.run("convert", case), "convert", case, rel, message.replace("m.keras", rel).replace("m.h5", rel))


def test_source_that_is_a_directory(project):
    (project.root / "models" / "dir" / "m.keras").mkdir(parents=True)
    project.add_keras("dir", "models/dir/m.keras")
    check(project, project.run("convert", "dir"), "convert", "dir", "is a directory")


def test_missing_arch_and_mismatched_arch(project, tmp_path):
    project.file("models/arch1/weights.h5", copy_from=ROOT / "models" / "digits_th" / "weights.h5")
    project.add_keras("arch1", "models/arch1/weights.h5", arch="models/arch1/model.json")
    check(project, project.run("convert", "arch1"), "convert", "arch1", "models/arch1/model.json", "not found")
    # The digits_th architecture with another model's weights: layers do not match.
    project.file("models/arch2/model.json", copy_from=ROOT / "models" / "digits_th" / "model.json")
    project.file("models/arch2/weights.h5", keras_bytes(tmp_path, ".h5"))
    project.add_keras("arch2", "models/arch2/weights.h5", arch="models/arch2/model.json")
    check(project, project.run("convert", "arch2"), "convert", "arch2")


@pytest.mark.slow
def test_unregistered_custom_layer_and_the_param_that_fixes_it(project):
    from tests.test_keras_io import LAYER_MODULE
    project.file("models/custom/layers.py", LAYER_MODULE.encode())
    from kfreeze import keras_io
    cwd = os.getcwd()
    os.chdir(project.root)
    try:
        scale = keras_io.import_custom_objects(["models.custom.layers:Scale"], "t")["Scale"]
    finally:
        os.chdir(cwd)
    from kfreeze.keras_io import keras
    inp = keras.Input((4,), name="x")
    keras.Model(inp, scale(2.0, name="scale")(inp)).save(project.root / "models" / "custom" / "m.keras")
    project.add_keras("custom", "models/custom/m.keras")
    check(project, project.run("convert", "custom"), "convert", "custom",
          "custom class", "models.custom.custom_objects: [your.module:Scale]")
    project.add_keras("custom", "models/custom/m.keras", custom_objects=["models.custom.layers:Scale"])
    for stage in ("convert", "export", "freeze", "optimize", "verify"):
        result = project.run(stage, "custom")
        assert result.code == 0, result.stderr


@pytest.mark.slow
def test_lambda_layer_refused_then_trusted(project):
    from kfreeze.keras_io import keras
    inp = keras.Input((4,), name="x")
    out = keras.layers.Dense(2, name="probs")(keras.layers.Lambda(lambda t: t * 2.0, name="double")(inp))
    project.file("models/lam/.keep", b"")
    keras.Model(inp, out).save(project.root / "models" / "lam" / "m.keras")
    project.add_keras("lam", "models/lam/m.keras")
    check(project, project.run("convert", "lam"), "convert", "lam", "Lambda", "models.lam.trust_code: true")
    project.add_keras("lam", "models/lam/m.keras", trust_code=True)
    for stage in ("convert", "export", "freeze", "optimize", "verify"):
        result = project.run(stage, "lam")
        assert result.code == 0, result.stderr


def test_subclassed_model_without_config(project):
    from kfreeze.keras_io import keras

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)
    net = Net()
    net(np.zeros((1, 3), np.float32))
    project.file("models/sub/.keep", b"")
    net.save(project.root / "models" / "sub" / "m.keras")
    project.add_keras("sub", "models/sub/m.keras")
    check(project, project.run("convert", "sub"), "convert", "sub", "models/sub/m.keras")


# -- TF graphs and checkpoints: freeze -------------------------------------------------

def graph_cases():
    text = (TF1 / "graph.pbtxt").read_bytes()
    from kfreeze import graphio
    binary = graphio.read_graph(TF1 / "graph.pbtxt").SerializeToString()
    rng = np.random.default_rng(1)
    return {
        "pbtxt_empty": ("graph.pbtxt", b"", "graph file is empty"),
        "pbtxt_syntax": ("graph.pbtxt", text.replace(b"node {", b"node {{", 1), "not a text GraphDef"),
        "pbtxt_cut": ("graph.pbtxt", text[: len(text) // 2], "not a text GraphDef"),
        "pb_cut_early": ("graph.pb", binary[:1000], "graph.pb"),
        "pb_cut_late": ("graph.pb", binary[: len(binary) - 7], "graph.pb"),
        "pb_random": ("graph.pb", rng.bytes(5000), "graph.pb"),
        "graph_missing": ("graph.pbtxt", None, "graph file not found"),
    }


@pytest.mark.parametrize("case", ["pbtxt_empty", "pbtxt_syntax", "pbtxt_cut", "pb_cut_early", "pb_cut_late",
                                  "pb_random", "graph_missing"])
def test_bad_graph(project, case):
    filename, data, message = graph_cases()[case]
    for suffix in (".index", ".data-00000-of-00001"):
        project.file(f"models/{case}/{CKPT}{suffix}", copy_from=TF1 / f"{CKPT}{suffix}")
    if data is not None:
        project.file(f"models/{case}/{filename}", data)
    project.add_graph(case, f"models/{case}/{filename}", f"models/{case}/{CKPT}")
    check(project, project.run("freeze", case), "freeze", case, f"models/{case}/{filename}", message)


@pytest.mark.parametrize("case", ["ckpt_index_cut", "ckpt_data_cut", "ckpt_index_random", "ckpt_missing",
                                  "ckpt_dir_without_state"])
def test_bad_checkpoint(project, case):
    project.file(f"models/{case}/graph.pbtxt", copy_from=TF1 / "graph.pbtxt")
    index, data = (TF1 / f"{CKPT}.index").read_bytes(), (TF1 / f"{CKPT}.data-00000-of-00001").read_bytes()
    if case not in ("ckpt_missing", "ckpt_dir_without_state"):
        project.file(f"models/{case}/{CKPT}.index", {"ckpt_index_cut": index[: len(index) // 2],
                                                      "ckpt_index_random": np.random.default_rng(2).bytes(len(index))}
                     .get(case, index))
        project.file(f"models/{case}/{CKPT}.data-00000-of-00001",
                     data[: len(data) // 3] if case == "ckpt_data_cut" else data)
    checkpoint = f"models/{case}/ckpts" if case == "ckpt_dir_without_state" else f"models/{case}/{CKPT}"
    if case == "ckpt_dir_without_state":
        (project.root / checkpoint).mkdir()
    project.add_graph(case, f"models/{case}/graph.pbtxt", checkpoint)
    check(project, project.run("freeze", case), "freeze", case, checkpoint)


def test_checkpoint_lacking_a_variable(project, tmp_path):
    from kfreeze.tfenv import tf
    reader = tf.compat.v1.train.NewCheckpointReader(str(TF1 / CKPT))
    values = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if k != "conv2/kernel"}
    project.file("models/lacks/graph.pbtxt", copy_from=TF1 / "graph.pbtxt")
    save_checkpoint(values, project.root / "models" / "lacks" / CKPT)
    project.add_graph("lacks", "models/lacks/graph.pbtxt", f"models/lacks/{CKPT}")
    check(project, project.run("freeze", "lacks"), "freeze", "lacks", "no value for variable 'conv2/kernel'")


# -- names, shapes, dtypes: freeze and optimize --------------------------------------

def tf1_model(project, name, **keys):
    for f in ("graph.pbtxt", f"{CKPT}.index", f"{CKPT}.data-00000-of-00001"):
        project.file(f"models/{name}/{f}", copy_from=TF1 / f)
    project.add_graph(name, f"models/{name}/graph.pbtxt", f"models/{name}/{CKPT}", **keys)


def test_node_name_that_does_not_exist(project):
    tf1_model(project, "noname", outputs=["softmax_tensr"])
    check(project, project.run("freeze", "noname"), "freeze", "noname",
          "graphs.noname.outputs", "'softmax_tensr' is not in the graph", "closest names: softmax_tensor")


def test_input_downstream_of_the_output(project):
    tf1_model(project, "downstream", inputs=["softmax_tensor"], outputs=["dense/logits"])
    check(project, project.run("freeze", "downstream"), "freeze", "downstream", "graphs.downstream.inputs",
          "input 'softmax_tensor' does not feed any of the outputs ['dense/logits']")


@pytest.mark.parametrize("keys, message", [
    ({"input_shape": [20, 20, 1]}, "does not fit the graph's shape"),
    ({"input_dtype": "float33"}, "'float33' is not a TensorFlow dtype"),
], ids=["wrong_rank", "bad_dtype"])
@pytest.mark.slow
def test_bad_names_shapes_dtypes_fail_in_optimize(project, keys, message):
    name = f"opt_{list(keys)[0]}_{len(project.params['graphs'])}"
    tf1_model(project, name, **keys)
    assert project.run("freeze", name).code == 0
    check(project, project.run("optimize", name), "optimize", name, message)


# -- params.yaml itself -------------------------------------------------------------

@pytest.mark.parametrize("entry, message", [
    ({"sourse": "models/p1/m.keras"}, "unknown key 'sourse' (did you mean 'source'?)"),
    ({"inputs": "image"}, "must be a list"),
], ids=["unknown_key", "wrong_type"])
def test_bad_params(project, entry, message):
    project.params["models"]["p1"] = keras_entry("models/p1/m.keras", **entry)
    if "sourse" in entry:
        del project.params["models"]["p1"]["source"]
    project.save()
    try:
        check(project, project.run("convert", "p1"), "convert", "p1", "params.yaml", message)
    finally:
        del project.params["models"]["p1"]
        project.save()
