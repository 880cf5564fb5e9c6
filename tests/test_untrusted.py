"""Hostile model files and params (issue 12): each must end with exit 1 and one clean line, with nothing
run, nothing written outside build/, and no byte of a file outside models/<name>/ in any artifact.

Every fixture is made here: TF1 graphs with file ops, HDF5 files with external storage, links and
virtual datasets, symlinks out of the model folder, a zip bomb, an alias bomb.
"""

from __future__ import annotations

import os
import shutil
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.bad_input import Project
from tests.conftest import build_tiny

ROOT = Path(__file__).resolve().parents[1]
TF1 = ROOT / "models" / "digits_tf1"
CKPT = "model.ckpt-600"
SECRET = b"root:x:0:0:FOREIGN-SECRET-BYTES:/root:/bin/bash\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    p = Project(tmp_path_factory.mktemp("untrusted"))
    p.outside = tmp_path_factory.mktemp("outside")  # stands in for /etc: nothing may read or write it
    (p.outside / "passwd").write_bytes(SECRET * 4096)
    p.outside_before = sorted(os.listdir(p.outside))
    return p


def hostile(project, result, *expected) -> str:
    line = result.stderr.strip()
    assert result.code == 1, (result.code, result.stderr, result.stdout)
    assert len(line.splitlines()) == 1 and line.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in line and "\x1b" not in line
    for text in expected:
        assert text in line, line
    assert sorted(os.listdir(project.outside)) == project.outside_before, "something was written outside"
    build = project.root / "build"
    for f in build.rglob("*") if build.exists() else []:
        if f.is_file():
            assert b"FOREIGN-SECRET" not in f.read_bytes(), f
    return line


# -- 1. TF1 graphs with ops that touch the machine -----------------------------------

def tf1_graph(project, name: str, kind: str, **keys) -> None:
    from tests.test_policy import graph_with
    from kfreeze import graphio
    from kfreeze.tfenv import tf

    folder = project.root / "models" / name
    folder.mkdir(parents=True)
    graph = graph_with(kind, str(project.outside / "pwned"))
    graphio.write_graph(graph, folder / "graph.pbtxt")
    assert isinstance(tf, object)
    project.add_graph(name, f"models/{name}/graph.pbtxt", f"models/{name}/{CKPT}",
                      **{"inputs": ["x"], "outputs": ["y"], "input_shape": [1, 3], **keys})


@pytest.mark.parametrize("kind, op", [("control", "WriteFile"), ("read", "ReadFile"), ("pyfunc", "PyFunc"),
                                      ("function", "WriteFile")])
def test_graph_with_file_or_python_ops_is_refused_at_freeze(project, kind, op):
    name = f"ops_{kind}"
    tf1_graph(project, name, kind)
    line = hostile(project, project.run("freeze", name), f"models/{name}/graph.pbtxt", f"a {op} op",
                   f"graphs.{name}.trust_code: true")
    assert project.outputs("freeze", name) == []
    assert "node '" in line


def test_trust_code_lets_a_graph_through_freeze(project):
    tf1_graph(project, "ops_trusted", "read", trust_code=True)
    result = project.run("freeze", "ops_trusted")
    assert result.code == 0, result.stderr


def test_verify_checks_the_graph_it_runs(project):
    """An optimized.pb swapped after optimize is refused before any Session.run."""
    from kfreeze import graphio
    from tests.test_policy import graph_with

    tf1_graph(project, "swap", "unused")
    for stage in ("freeze", "optimize"):
        assert project.run(stage, "swap").code == 0
    evil = graph_with("control", str(project.outside / "pwned"))
    graphio.write_graph(evil, project.root / "build" / "swap" / "optimized.pb")
    hostile(project, project.run("verify", "swap"), "build/swap/optimized.pb", "WriteFile")
    assert project.outputs("verify", "swap") == []


# -- 2. HDF5 files that read other files ----------------------------------------------

def tf_keras_h5(path: Path) -> None:
    import tf_keras
    inp = tf_keras.Input((4,), name="x")
    out = tf_keras.layers.Dense(3, name="probs")(tf_keras.layers.Dense(5, activation="relu", name="d")(inp))
    tf_keras.Model(inp, out).save(path)


def keras3_h5(path: Path) -> None:
    build_tiny().save(path)


def _weight_datasets(f) -> list[str]:
    found = []
    f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) else None)
    return [n for n in found if "kernel" in n]


def make_external(path: Path, outside: Path) -> None:
    """The first kernel's bytes live in ``outside`` (HDF5 external storage)."""
    with h5py.File(path, "r+") as f:
        name = _weight_datasets(f)[0]
        ds = f[name]
        shape, dtype = ds.shape, ds.dtype
        del f[name]
        f.create_dataset(name, shape, dtype, external=[(str(outside), 0, int(np.prod(shape)) * dtype.itemsize)])


def _fixtures(outside: Path) -> Path:
    """Helper files of the fixtures: outside models/<name>/, but not in the folder watched for writes."""
    folder = outside.parent.parent / "fixtures"
    folder.mkdir(exist_ok=True)
    return folder


def make_external_link(path: Path, outside: Path) -> None:
    target = _fixtures(outside) / "linked.h5"
    with h5py.File(target, "w") as t:
        t["data"] = np.frombuffer(SECRET[:48], np.float32)
    with h5py.File(path, "r+") as f:
        name = _weight_datasets(f)[0]
        del f[name]
        f[name] = h5py.ExternalLink(str(target), "/data")


def make_virtual(path: Path, outside: Path) -> None:
    source = _fixtures(outside) / "vsource.h5"
    with h5py.File(path, "r+") as f:
        name = _weight_datasets(f)[0]
        shape, dtype = f[name].shape, f[name].dtype
        with h5py.File(source, "w") as s:
            s["data"] = np.zeros(shape, dtype)
        layout = h5py.VirtualLayout(shape, dtype)
        layout[...] = h5py.VirtualSource(str(source), "data", shape)
        del f[name]
        f.create_virtual_dataset(name, layout)


def make_huge(path: Path, outside: Path) -> None:
    """A 2 GB dataset of fill values: a few KB on disk, 2 GB when read."""
    with h5py.File(path, "r+") as f:
        f.create_dataset("junk", (2**29,), "float32", chunks=(2**20,), compression="gzip")


H5_CASES = {"external_storage": (make_external, "external file"),
            "external_link": (make_external_link, "external link"),
            "virtual": (make_virtual, "virtual dataset"),
            "huge_dataset": (make_huge, "MiB")}


@pytest.mark.parametrize("writer", ["tf_keras", "keras3"])
@pytest.mark.parametrize("case", list(H5_CASES))
def test_hdf5_that_reads_outside_the_file_is_refused(project, writer, case):
    make, message = H5_CASES[case]
    name = f"h5_{case}_{writer}".replace("_", "-")
    folder = project.root / "models" / name
    folder.mkdir(parents=True)
    (tf_keras_h5 if writer == "tf_keras" else keras3_h5)(folder / "m.h5")
    make(folder / "m.h5", project.outside / "passwd")
    project.add_keras(name, f"models/{name}/m.h5")
    start = time.monotonic()
    hostile(project, project.run("convert", name), f"models/{name}/m.h5", message)
    assert time.monotonic() - start < 60
    assert project.outputs("convert", name) == []


def test_h5check_and_the_legacy_reader_refuse_external_storage_directly(project, tmp_path):
    from kfreeze import h5check
    from kfreeze.errors import KfreezeError
    from kfreeze.legacy import source

    path = tmp_path / "m.h5"
    tf_keras_h5(path)
    make_external(path, project.outside / "passwd")
    with pytest.raises(KfreezeError, match="external file"):
        h5check.check(path)
    with pytest.raises(KfreezeError, match="external file"):
        source.read_source(path, None)


# -- 3. paths out of models/<name>/ ----------------------------------------------------

def test_source_symlink_to_outside_is_refused(project):
    keras3_h5(project.outside.parent / "real.h5")
    (project.root / "models" / "lnk").mkdir()
    os.symlink(project.outside.parent / "real.h5", project.root / "models" / "lnk" / "m.h5")
    project.add_keras("lnk", "models/lnk/m.h5")
    hostile(project, project.run("convert", "lnk"), "models.lnk.source", "leads outside models/lnk/")


def test_model_folder_that_is_a_symlink_is_refused(project, tmp_path):
    shutil.copy(project.root / "models" / "good" / "model.keras", tmp_path / "model.keras")
    os.symlink(tmp_path, project.root / "models" / "folderlink")
    project.add_keras("folderlink", "models/folderlink/model.keras")
    hostile(project, project.run("convert", "folderlink"), "models/folderlink is a symlink")


def test_checkpoint_state_naming_an_outside_prefix_is_refused(project, tmp_path):
    for f in (f"{CKPT}.index", f"{CKPT}.data-00000-of-00001"):
        shutil.copy(TF1 / f, tmp_path / f)
    folder = project.root / "models" / "ckstate"
    (folder / "ckpts").mkdir(parents=True)
    shutil.copy(TF1 / "graph.pbtxt", folder / "graph.pbtxt")
    (folder / "ckpts" / "checkpoint").write_text(f'model_checkpoint_path: "{tmp_path / CKPT}"\n')
    project.add_graph("ckstate", "models/ckstate/graph.pbtxt", "models/ckstate/ckpts")
    hostile(project, project.run("freeze", "ckstate"), "models/ckstate/ckpts/checkpoint", "outside")
    (folder / "ckpts" / "checkpoint").write_text('model_checkpoint_path: "../../../outside/model.ckpt-600"\n')
    hostile(project, project.run("freeze", "ckstate"), "outside")


def test_checkpoint_file_symlinked_to_outside_is_refused(project, tmp_path):
    shutil.copy(TF1 / f"{CKPT}.data-00000-of-00001", tmp_path / "data")
    folder = project.root / "models" / "cklink"
    folder.mkdir(parents=True)
    shutil.copy(TF1 / "graph.pbtxt", folder / "graph.pbtxt")
    shutil.copy(TF1 / f"{CKPT}.index", folder / f"{CKPT}.index")
    os.symlink(tmp_path / "data", folder / f"{CKPT}.data-00000-of-00001")
    project.add_graph("cklink", "models/cklink/graph.pbtxt", f"models/cklink/{CKPT}")
    hostile(project, project.run("freeze", "cklink"), "leads outside models/cklink/")


# -- 4. limits ----------------------------------------------------------------------

def test_alias_bomb_and_duplicate_keys_in_params_fail_fast(project):
    saved = (project.root / "params.yaml").read_text()
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    bomb = "\n".join(lines) + "\nmodels:\n  good:\n    source: *a9\ngraphs: {}\n"
    try:
        (project.root / "params.yaml").write_text(bomb)
        start = time.monotonic()
        line = hostile(project, project.run("convert", "good"), "params.yaml", "aliases")
        assert time.monotonic() - start < 10 and len(line) < 500
        (project.root / "params.yaml").write_text(saved + "\nmodels:\n  other: {}\n")
        hostile(project, project.run("convert", "good"), "duplicate key 'models'")
    finally:
        (project.root / "params.yaml").write_text(saved)


def test_keras_zip_bomb_is_refused_before_extraction(project):
    folder = project.root / "models" / "bomb"
    folder.mkdir()
    with zipfile.ZipFile(folder / "m.keras", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", b"{}")
        z.writestr("model.weights.h5", bytes(200 * 2**20))
    assert (folder / "m.keras").stat().st_size < 2**20
    project.add_keras("bomb", "models/bomb/m.keras")
    hostile(project, project.run("convert", "bomb"), "models/bomb/m.keras", "zip bomb")


@pytest.mark.slow
def test_input_shape_beyond_memory_is_refused_with_the_estimate(project):
    """A fully convolutional graph takes any image size; this one would need ~224 GiB."""
    from kfreeze import graphio
    from kfreeze.tfenv import tf

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, None, None, 3], name="x")
        k = tf.constant(np.random.default_rng(0).normal(size=(3, 3, 3, 4)).astype(np.float32))
        tf.reduce_mean(tf.nn.relu(tf.nn.conv2d(x, k, 1, "SAME")), axis=[1, 2], name="y")
    (project.root / "models" / "huge").mkdir()
    graphio.write_graph(g.as_graph_def(), project.root / "models" / "huge" / "graph.pbtxt")
    project.add_graph("huge", "models/huge/graph.pbtxt", f"models/huge/{CKPT}", inputs=["x"], outputs=["y"],
                      input_shape=[1, 100000, 100000, 3])
    assert project.run("freeze", "huge").code == 0
    hostile(project, project.run("optimize", "huge"), "graphs.huge.input_shape", "GiB")
    assert project.outputs("optimize", "huge") == []


@pytest.mark.slow
def test_a_child_is_a_fresh_bounded_process_and_its_failures_are_one_error():
    """kfreeze.child: a result, a crash, a KfreezeError, the memory bound and the time bound."""
    import ctypes
    import operator
    import time

    from kfreeze import child
    from kfreeze.errors import KfreezeError
    from tests import bad_input

    assert child.call(operator.mul, 21, 2, what="optimize", where="w") == 42
    assert child.call(os.getpid, what="optimize", where="w") != os.getpid()
    with pytest.raises(KfreezeError, match=r"optimize crashed \(SIGSEGV"):
        child.call(ctypes.string_at, 0, what="optimize", where="w")
    with pytest.raises(KfreezeError, match="names the key"):
        child.call(bad_input.refuse, "names the key", what="optimize", where="w")
    with pytest.raises(KfreezeError, match="more than the memory bound of 1.0 GiB"):
        child.call(bytearray, 3 * 2**30, what="optimize", where="w", memory=2**30)
    start = time.monotonic()
    with pytest.raises(KfreezeError, match="did not finish within 3 s"):
        child.call(time.sleep, 60, what="optimize", where="w", timeout=3)
    assert time.monotonic() - start < 30


# -- 5. validation -------------------------------------------------------------------

@pytest.mark.parametrize("keys, message", [
    ({"input_shape": [1, True, 8, 1]}, "true/false are not numbers"),
    ({"input_shape": [1, 8.0, 8, 1]}, "is not a shape"),
    ({"input_shape": {"image": [1, 2**40, 8, 1]}}, "is not a shape"),
    ({"opencv": 1}, "must be"),
], ids=["bool_dim", "float_dim", "huge_dim", "int_as_bool"])
def test_params_types_are_exact(project, keys, message):
    project.file("models/typed/model.keras", copy_from=project.root / "models" / "good" / "model.keras")
    project.add_keras("typed", "models/typed/model.keras", **keys)
    try:
        hostile(project, project.run("convert", "typed"), "models.typed", message)
    finally:
        del project.params["models"]["typed"]
        project.save()


@pytest.mark.parametrize("name", ["-x", "--help"])
def test_model_names_that_look_like_options_are_refused(project, name):
    project.params["models"][name] = dict(project.params["models"]["good"], source=f"models/{name}/model.keras")
    project.save()
    try:
        hostile(project, project.run("convert", "--", name), "model name")
    finally:
        del project.params["models"][name]
        project.save()


def test_control_characters_are_escaped(project):
    project.add_keras("ansi", "models/ansi/\x1b[31mred\x07.keras")
    line = hostile(project, project.run("convert", "ansi"), "\\x1b[31mred\\x07.keras")
    assert "\x07" not in line


@pytest.mark.parametrize("err", ["EACCES", "ENOSPC", "EROFS"])
def test_os_errors_name_the_path(project, monkeypatch, err):
    """A full disk, a read-only or forbidden build folder: the line names the file being written."""
    import errno

    from kfreeze import atomic

    name = f"os-{err.lower()}"
    for f in ("graph.pbtxt", f"{CKPT}.index", f"{CKPT}.data-00000-of-00001"):
        project.file(f"models/{name}/{f}", copy_from=TF1 / f)
    project.add_graph(name, f"models/{name}/graph.pbtxt", f"models/{name}/{CKPT}")

    assert project.run("resolve", name).code == 0  # its settings written: 'kfreeze freeze' leaves them alone

    def fail(fd):
        raise OSError(getattr(errno, err), os.strerror(getattr(errno, err)))
    monkeypatch.setattr(atomic.os, "fsync", fail)
    line = hostile(project, project.run("freeze", name), f"build/{name}/frozen.pb", os.strerror(getattr(errno, err)))
    assert line.count(";") >= 1


@pytest.mark.slow
def test_concurrent_writers_never_collide(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(str(tmp_path), i)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert (tmp_path / "a.json").read_bytes() == b"same"
    assert sorted(os.listdir(tmp_path / "d")) == ["x"]
    assert sorted(os.listdir(tmp_path)) == ["a.json", "d"]


def _write_many(folder: str, seed: int) -> None:
    import sys
    sys.path.insert(0, str(ROOT))
    from kfreeze import atomic
    for _ in range(40):
        atomic.write_bytes(Path(folder) / "a.json", b"same")
        with atomic.directory(Path(folder) / "d") as tmp:
            (tmp / "x").write_text("same")


def test_clean_stale_keeps_a_live_writers_temp_files(tmp_path):
    from kfreeze import atomic

    live = tmp_path / f".a.json.{os.getpid()}.abc.tmp"
    dead = tmp_path / ".a.json.999999999.abc.tmp"
    live.write_text("")
    dead.write_text("")
    atomic.clean_stale(tmp_path / "a.json")
    assert live.exists() and not dead.exists()


# -- 6. custom_objects ------------------------------------------------------------------

@pytest.mark.parametrize("ref, message", [
    ("os:system", "standard library"), ("subprocess:Popen", "standard library"), ("builtins:eval", "standard library"),
    ("this:x", "standard library"), ("numpy:save", "is not a Keras"), ("models.co.notkeras:Thing", "is not a Keras"),
    ("nosuchpackage.mod:X", "no module"),
])
def test_custom_objects_name_only_keras_objects(project, ref, message):
    import sys

    project.file("models/co/notkeras.py", b"class Thing:\n    pass\n")
    project.file("models/co/model.keras", copy_from=project.root / "models" / "good" / "model.keras")
    project.add_keras("co", "models/co/model.keras", custom_objects=[ref])
    try:
        result = project.run("convert", "co")
        hostile(project, result, "models.co.custom_objects", message)
        assert "Beautiful is better" not in result.stdout + result.stderr
        assert "this" not in sys.modules and "nosuchpackage" not in sys.modules
    finally:
        del project.params["models"]["co"]
        project.save()


# -- 7. leftovers ------------------------------------------------------------------------

@pytest.mark.slow
def test_verify_removes_a_killed_runs_metrics_temp_file(project):
    for stage in ("convert", "export", "freeze", "optimize"):
        assert project.run(stage, "good").code == 0, stage
    stale = project.root / "metrics" / ".good.json.999999999.x1y2.tmp"
    stale.parent.mkdir(exist_ok=True)
    stale.write_text("{")
    result = project.run("verify", "good")
    assert result.code == 0, result.stderr
    assert sorted(os.listdir(project.root / "metrics")) == ["good.json"]
    assert ".*.tmp" in (ROOT / ".dvcignore").read_text().split()


# -- 8. round 3: every path by which a graph runs an op ------------------------------------

def _trap_graph(project, name: str):
    """A graph whose output needs only 'v', plus a ReadVariableOp 'trap' behind a WriteFile's
    control edge, and a checkpoint holding a key 'trap': TF's freeze_graph restores every checkpoint
    key that names a graph tensor, which ran the WriteFile."""
    import numpy as np

    from kfreeze import graphio
    from kfreeze.tfenv import tf

    folder = project.root / "models" / name
    folder.mkdir(parents=True)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        v = tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[3, 2], shared_name="v", name="v")
        w = tf.raw_ops.ReadVariableOp(resource=v, dtype=tf.float32, name="v/read")
        tf.identity(tf.matmul(x, w), name="y")
        h2 = tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[1], shared_name="h2", name="h2")
        writer = tf.io.write_file(str(project.outside / "pwned"), "x", name="writer")
        with tf.control_dependencies([writer]):
            ident = tf.identity(h2, name="ident")
        tf.raw_ops.ReadVariableOp(resource=ident, dtype=tf.float32, name="trap")
    graphio.write_graph(g.as_graph_def(), folder / "graph.pbtxt")
    tf.raw_ops.SaveV2(prefix=str(folder / CKPT), tensor_names=["v", "trap"], shape_and_slices=["", ""],
                      tensors=[np.ones((3, 2), np.float32), np.ones(1, np.float32)])
    project.add_graph(name, f"models/{name}/graph.pbtxt", f"models/{name}/{CKPT}",
                      inputs=["x"], outputs=["y"], input_shape=[1, 3])


def test_a_checkpoint_key_naming_a_trapped_tensor_runs_nothing(project):
    _trap_graph(project, "ckpt_trap")
    result = project.run("freeze", "ckpt_trap")
    assert not (project.outside / "pwned").exists(), "the restore path ran a WriteFile"
    assert result.code == 0, result.stderr


def test_a_splat_constant_declaring_gigabytes_is_refused_before_it_expands(tmp_path):
    """8 KB of graph: a Const of shape [60000, 60000] with one float_val (13 GiB once dense)."""
    from kfreeze import graphio
    from kfreeze.errors import KfreezeError
    from tensorflow.core.framework import graph_pb2

    graph = graph_pb2.GraphDef()
    x = graph.node.add(name="x", op="Placeholder")
    x.attr["dtype"].type = 1
    big = graph.node.add(name="big", op="Const")
    big.attr["dtype"].type = 1
    tensor = big.attr["value"].tensor
    tensor.dtype = 1
    tensor.tensor_shape.dim.add(size=60000)
    tensor.tensor_shape.dim.add(size=60000)
    tensor.float_val.append(1.0)
    graph.node.add(name="y", op="AddV2", input=["x", "big"]).attr["T"].type = 1
    (tmp_path / "g.pb").write_bytes(graph.SerializeToString())
    assert (tmp_path / "g.pb").stat().st_size < 8192
    with pytest.raises(KfreezeError, match=r"constant 'big' declares 13.4 GiB"):
        graphio.read_graph(tmp_path / "g.pb")
    tensor.tensor_shape.dim[0].size = 6  # the same splat at a sane size reads
    (tmp_path / "g.pb").write_bytes(graph.SerializeToString())
    assert len(graphio.read_graph(tmp_path / "g.pb").node) == 3


def test_a_fifo_in_a_model_folder_is_refused_before_anything_reads_it(tmp_path):
    """resolve (and DVC's hash of models/<name>/, which runs after the names stage) would block on it."""
    import threading

    from kfreeze import params, settings
    from kfreeze.errors import KfreezeError

    (tmp_path / "models" / "m").mkdir(parents=True)
    os.mkfifo(tmp_path / "models" / "m" / "model.keras")
    (tmp_path / "params.yaml").write_text("graphs: {}\nmodels:\n  m:\n    source: models/m/model.keras\n")
    done = []

    def check():
        for fn in (lambda: params.check_all_names(tmp_path / "params.yaml"),
                   lambda: settings.model_files(tmp_path / "models" / "m")):
            with pytest.raises(KfreezeError, match="is a FIFO, not a regular file"):
                fn()
            done.append(fn)
    worker = threading.Thread(target=check, daemon=True)
    worker.start()
    worker.join(20)
    assert len(done) == 2, "blocked on the FIFO"


@pytest.mark.parametrize("name", ["x\n", "x;touch${IFS}PWNED;#", "a" * 101, "-rf", "Caps"])
def test_every_name_dvc_would_put_on_a_command_line_is_checked(tmp_path, name):
    from kfreeze import params
    from kfreeze.errors import KfreezeError
    import yaml

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"graphs": {}, "models": {name: {"source": "x"}}}))
    with pytest.raises(KfreezeError, match="model name may only use a-z") as e:
        params.check_all_names(tmp_path / "params.yaml")
    assert "\n" not in e.value.line()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"graphs": {}, "models": {"a" * 100: {"source": "x"}}}))
    assert params.check_all_names(tmp_path / "params.yaml") == ["models." + "a" * 100]


def test_a_loop_that_does_not_end_is_stopped_at_the_time_bound(monkeypatch):
    """A while loop of allowed ops counting to 2^62: verify's session stops it, in one line."""
    from kfreeze import verify
    from kfreeze.errors import KfreezeError
    from kfreeze.tfenv import tf

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        _, y = tf.compat.v1.while_loop(lambda i, v: i < 2**62, lambda i, v: (i + 1, v * 1.0),
                                       [tf.constant(0, tf.int64), x])
        tf.identity(y, name="y")
    monkeypatch.setenv("KFREEZE_TIME_LIMIT_S", "2")
    start = time.monotonic()
    with pytest.raises(KfreezeError, match="did not finish within 2 s"):
        verify.run_graph(g.as_graph_def(), {"x": np.zeros((1, 3), np.float32)}, ["y"])
    assert time.monotonic() - start < 30


def _dense_bomb(path: Path, units: int = 2**29) -> Path:
    """A small model file whose Dense layer config asks for 2**29 units (21 GiB of kernel)."""
    import json as json_lib

    from kfreeze.keras_io import keras

    if path.suffix == ".keras":
        keras.Sequential([keras.Input((10,)), keras.layers.Dense(3, name="d")]).save(path)
        with zipfile.ZipFile(path) as z:
            files = {n: z.read(n) for n in z.namelist()}
        config = json_lib.loads(files["config.json"])
        next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")["config"]["units"] = units
        files["config.json"] = json_lib.dumps(config).encode()
        with zipfile.ZipFile(path, "w") as z:
            for name, data in files.items():
                z.writestr(name, data)
    else:
        keras.Sequential([keras.Input((10,)), keras.layers.Dense(3, name="d")]).save(path)
        with h5py.File(path, "r+") as f:
            config = json_lib.loads(f.attrs["model_config"])
            next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")["config"]["units"] = units
            f.attrs["model_config"] = json_lib.dumps(config)
    return path


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_layer_config_asking_for_gigabytes_is_stopped_while_building(tmp_path, suffix):
    """Dense(units=2**29) in a 12 KB file: building it stops at the load bound, in one line."""
    import resource

    from kfreeze import keras_io
    from kfreeze.errors import KfreezeError

    before = resource.getrlimit(resource.RLIMIT_AS)
    path = _dense_bomb(tmp_path / f"bomb{suffix}")
    assert path.stat().st_size < 64 * 1024
    with pytest.raises(KfreezeError, match=r"building the model asks for more than .* GiB, far more than its"):
        keras_io.load_model(path)
    assert resource.getrlimit(resource.RLIMIT_AS) == before  # the bound is lifted again
    ok = _dense_bomb(tmp_path / f"ok{suffix}", units=3)
    assert keras_io.load_model(ok).count_params() == 33


def test_a_legacy_keras2_config_asking_for_gigabytes_is_stopped_while_building(tmp_path):
    """The same bomb in a Keras 2 (tf_keras) .h5, which the legacy reader builds from its config."""
    import json as json_lib

    import tf_keras

    from kfreeze import legacy
    from kfreeze.errors import KfreezeError

    path = tmp_path / "k2bomb.h5"
    tf_keras.Sequential([tf_keras.Input((10,)), tf_keras.layers.Dense(3, name="d")]).save(path)
    with h5py.File(path, "r+") as f:
        config = json_lib.loads(f.attrs["model_config"])
        next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")["config"]["units"] = 2**29
        f.attrs["model_config"] = json_lib.dumps(config)
    with pytest.raises(KfreezeError, match="building the model asks for more than"):
        legacy.load_source(path)


def test_a_keras_config_that_inflates_past_its_bound_is_refused_whatever_the_padding(tmp_path):
    """config.json of 200 MiB compressed to ~200 KB, padded with 8 MB of noise to pass the ratio check."""
    from kfreeze import keras_io
    from kfreeze.errors import KfreezeError
    from kfreeze.keras_io import keras

    good = tmp_path / "good.keras"
    keras.Sequential([keras.Input((10,)), keras.layers.Dense(3)]).save(good)
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "config.json":
                data = data[:-1] + b" " * (200 * 2**20) + data[-1:]
            dst.writestr(info.filename, data)
        dst.writestr("assets/padding.bin", np.random.default_rng(0).bytes(8 * 2**20), zipfile.ZIP_STORED)
    with pytest.raises(KfreezeError, match=r"'config.json' unpacks to 200 MiB"):
        keras_io.load_model(bomb)


@pytest.mark.parametrize("case", ["inflates", "huge_header", "not_npy"])
def test_verify_data_that_would_exhaust_memory_is_refused_from_its_headers(tmp_path, case, monkeypatch):
    import io

    from kfreeze.errors import KfreezeError
    from kfreeze.verify import inputs
    from kfreeze.verify.inputs import TensorInfo, load_data

    monkeypatch.setattr(inputs, "DATA_LIMIT", 2**26)  # the real bound is 2 GiB: the same check, 64 MiB

    path = tmp_path / "samples.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        if case == "inflates":  # 128 MiB of zeros, 128 KB on disk
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                          "shape": (2**25, 1)})
            with z.open("x.npy", "w") as f:
                f.write(header.getvalue())
                for _ in range(8):
                    f.write(bytes(2**24))
        elif case == "huge_header":
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                          "shape": (10**12, 4)})
            z.writestr("x.npy", header.getvalue() + bytes(64))
        else:
            z.writestr("x.txt", b"hello")
    with pytest.raises(KfreezeError) as e:
        load_data(path, [TensorInfo("x", "float32", (None, 1))], ["x"], 16)
    assert {"inflates": "GiB", "huge_header": "(10**12", "not_npy": "not an .npy array"}[case].replace(
        "(10**12", "1000000000000") in e.value.line()


def test_a_variable_of_unknown_shape_is_sized_by_the_checkpoint_before_it_is_read(tmp_path, monkeypatch):
    """The graph's size check used to skip a variable of unknown rank; the checkpoint's index says its shape."""
    from kfreeze import freeze as freeze_lib
    from kfreeze.errors import KfreezeError
    from kfreeze.tfenv import tf

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 1000], name="x")
        v = tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=tf.TensorShape(None), shared_name="v", name="v")
        w = tf.raw_ops.ReadVariableOp(resource=v, dtype=tf.float32, name="v/read")
        tf.identity(tf.matmul(x, tf.reshape(w, [1000, -1])), name="y")
    tf.raw_ops.SaveV2(prefix=str(tmp_path / "ckpt"), tensor_names=["v"], shape_and_slices=[""],
                      tensors=[np.ones((1000, 300), np.float32)])  # 1.2 MB
    monkeypatch.setattr(freeze_lib, "PROTOBUF_LIMIT", 2**20)  # the real limit is 2 GiB: the same check, at 1 MiB
    with pytest.raises(KfreezeError, match="would hold .* GiB of constants"):
        freeze_lib.freeze(g.as_graph_def(), tmp_path / "ckpt", ["y"], "graph")


def test_an_alias_bomb_in_a_flag_is_refused_and_never_expanded(tmp_path):
    """--input-shape with a 10-level YAML alias list: refused in one line, quickly."""
    from typer.testing import CliRunner

    from kfreeze.cli import app

    levels = ["a0: &a0 [1,1,1,1,1,1,1,1,1,1]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    bomb = "{" + ", ".join(levels) + "}"
    start = time.monotonic()
    result = CliRunner().invoke(app, ["run", str(tmp_path / "missing.keras"), "--input-shape", bomb])
    assert result.exit_code != 0 and time.monotonic() - start < 20
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and len(line) < 400, line


def test_a_config_nested_100000_deep_is_one_line(tmp_path):
    import json as json_lib

    import tf_keras
    from typer.testing import CliRunner

    from kfreeze.cli import app

    path = tmp_path / "deep.h5"
    tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(2)]).save(path)
    with h5py.File(path, "r+") as f:
        config = json_lib.dumps(json_lib.loads(f.attrs["model_config"]))
        f.attrs["model_config"] = config[:-1] + ', "x": ' + "[" * 100000 + "]" * 100000 + "}"
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    line = result.stderr.strip()
    assert result.exit_code == 1 and len(line.splitlines()) == 1 and "internal error" not in line, line
    assert "deep.h5" in line and "RecursionError" in line
