"""Computed sizes (issue 25): a few KB of graph that asks for gigabytes once folded, imported or run is
refused from its GraphDef, naming the node, before anything computes it. Every graph here declares its
sizes; no test allocates them (the bound is lowered with KFREEZE_MEMORY_LIMIT_GB instead)."""

from __future__ import annotations

import struct
import zlib

import pytest
from google.protobuf import text_format

from kfreeze import bounds, policy
from kfreeze.errors import KfreezeError
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2

GiB = 2**30


@pytest.fixture(autouse=True)
def low_bound(monkeypatch):
    monkeypatch.setenv("KFREEZE_MEMORY_LIMIT_GB", "1")  # one tensor: at most 0.25 GiB


def png_header(width: int, height: int, colour: int = 6) -> bytes:
    """A PNG's signature and IHDR chunk: all a decoder reads before it allocates width x height pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def attack(kind: str, n: int):
    """y = x + (a reduction of one op whose size grows with n); kind names that op."""
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 3], name="x")
        if kind == "range":
            big = tf.cast(tf.range(0, n, name="big"), tf.float32)
        elif kind == "fill_from_input":  # dims computed from the input's shape
            big = tf.fill(tf.shape(x) * tf.constant([n, n]), 1.0, name="big")
        elif kind == "tile_of_tile":
            big = tf.tile(tf.tile(x, [n, 1], name="small"), [n, n], name="big")
        elif kind == "broadcast_to":
            big = tf.broadcast_to(x, [n, n, 3], name="big")
        elif kind == "matmul_outer":
            col = tf.reshape(tf.range(0.0, float(n)), [n, 1])
            big = tf.matmul(col, tf.transpose(col), name="big")
        elif kind == "pad":
            big = tf.pad(x, [[0, n], [0, n]], name="big")
        elif kind == "one_hot":
            big = tf.one_hot(tf.range(n), n, name="big")
        elif kind == "decode_png":
            big = tf.cast(tf.io.decode_png(tf.constant(png_header(n, n)), name="big"), tf.float32)
        else:
            raise ValueError(kind)
        tf.identity(x + tf.reduce_sum(big), name="y")
    return g.as_graph_def()


#                kind             huge       sane
CASES = [("range", 2**28, 1000), ("fill_from_input", 20000, 30), ("tile_of_tile", 20000, 30),
         ("broadcast_to", 20000, 30), ("matmul_outer", 2**15, 100), ("pad", 20000, 30), ("one_hot", 2**15, 100),
         ("decode_png", 16000, 64)]


@pytest.mark.parametrize("kind, huge, sane", CASES, ids=[c[0] for c in CASES])
def test_an_op_computing_gigabytes_is_refused_before_it_runs(kind, huge, sane):
    line = None
    with pytest.raises(KfreezeError) as e:
        policy.check(attack(kind, huge), ["y"], ["x"], "models/m/graph.pb")
    line = e.value.line()
    assert line.startswith("models/m/graph.pb: node 'big' (") and "GiB" in line, line
    assert "over the 0.2 GiB one op may allocate" in line and "KFREEZE_MEMORY_LIMIT_GB" in line, line
    policy.check(attack(kind, sane), ["y"], ["x"], "models/m/graph.pb")  # the same graph at a sane size passes


def test_trust_code_does_not_switch_the_size_bound_off():
    with pytest.raises(KfreezeError, match="node 'big' \\(Range\\)"):
        policy.check(attack("range", 2**28), ["y"], ["x"], "g", trust_code=True)


def test_the_bound_follows_the_model_size_and_the_override(monkeypatch):
    monkeypatch.delenv("KFREEZE_MEMORY_LIMIT_GB")
    assert bounds.tensor_limit(0) == GiB and bounds.tensor_limit(GiB) == 5 * GiB
    graph = attack("range", 2**28)  # 1 GiB of int32: exactly at the default bound, not over it
    bounds.check(graph, "g")
    monkeypatch.setenv("KFREEZE_MEMORY_LIMIT_GB", "3.9")
    with pytest.raises(KfreezeError, match="1.0 GiB \\(shape \\[268435456\\]\\)"):
        bounds.check(graph, "g")


# A Reshape whose shape sums Range(0, 2**28): TensorFlow's shape inference evaluates that subgraph while
# the graph is imported (measured: 1 GiB more at import_graph_def). Written as text: building it with
# tf ops would evaluate it too.
IMPORT_BOMB = """
node { name: "x" op: "Placeholder" attr { key: "dtype" value { type: DT_FLOAT } }
       attr { key: "shape" value { shape { dim { size: 1 } dim { size: 3 } } } } }
node { name: "zero" op: "Const" attr { key: "dtype" value { type: DT_INT32 } }
       attr { key: "value" value { tensor { dtype: DT_INT32 tensor_shape {} int_val: 0 } } } }
node { name: "one" op: "Const" attr { key: "dtype" value { type: DT_INT32 } }
       attr { key: "value" value { tensor { dtype: DT_INT32 tensor_shape {} int_val: 1 } } } }
node { name: "two" op: "Const" attr { key: "dtype" value { type: DT_INT32 } }
       attr { key: "value" value { tensor { dtype: DT_INT32 tensor_shape {} int_val: 2 } } } }
node { name: "limit" op: "Const" attr { key: "dtype" value { type: DT_INT32 } }
       attr { key: "value" value { tensor { dtype: DT_INT32 tensor_shape {} int_val: 268435456 } } } }
node { name: "rng" op: "Range" input: "zero" input: "limit" input: "one"
       attr { key: "Tidx" value { type: DT_INT32 } } }
node { name: "total" op: "Sum" input: "rng" input: "zero"
       attr { key: "T" value { type: DT_INT32 } } attr { key: "Tidx" value { type: DT_INT32 } } }
node { name: "parity" op: "FloorMod" input: "total" input: "two" attr { key: "T" value { type: DT_INT32 } } }
node { name: "dim" op: "AddV2" input: "parity" input: "one" attr { key: "T" value { type: DT_INT32 } } }
node { name: "three" op: "Const" attr { key: "dtype" value { type: DT_INT32 } }
       attr { key: "value" value { tensor { dtype: DT_INT32 tensor_shape {} int_val: 3 } } } }
node { name: "shape" op: "Pack" input: "dim" input: "three"
       attr { key: "N" value { i: 2 } } attr { key: "T" value { type: DT_INT32 } } }
node { name: "y" op: "Reshape" input: "x" input: "shape"
       attr { key: "T" value { type: DT_FLOAT } } attr { key: "Tshape" value { type: DT_INT32 } } }
"""


def test_a_graph_whose_import_would_evaluate_gigabytes_is_refused_before_the_import(monkeypatch):
    from kfreeze import resources

    graph = text_format.Parse(IMPORT_BOMB, graph_pb2.GraphDef())
    assert bounds.largest(graph, None, 2**28)[:3] == ("rng", "Range", [2**28])

    def imported(*args):
        raise AssertionError("the graph was imported before its sizes were checked")
    monkeypatch.setattr(resources, "activation_bytes", imported)
    with pytest.raises(KfreezeError, match="optimize: node 'rng' \\(Range\\)"):
        resources.check_activations(graph, "optimize", "graphs.m.input_shape")
    with pytest.raises(KfreezeError, match="node 'rng' \\(Range\\)"):
        policy.check(graph, ["y"], ["x"], "g")


def test_sizes_in_a_function_body_are_bounded_too():
    @tf.function
    def inner(x):
        return x + tf.reduce_sum(tf.cast(tf.range(0, 2**28, name="big"), tf.float32))
    graph = inner.get_concrete_function(tf.TensorSpec([1, 3], tf.float32)).graph.as_graph_def()
    found = bounds.largest(graph, None, 2**26)
    assert found is None or found[0] == "big"  # traced inline, or in a function of the library
    outer = tf.Graph()
    with outer.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 3], name="x")
        tf.identity(tf.function(lambda v: v + tf.reduce_sum(tf.cast(tf.range(0, 2**28, name="big"), tf.float32)))(x),
                    name="y")
    graph = outer.as_graph_def()
    assert graph.library.function, "the test needs a function in the library"
    name, op, shape, size = bounds.largest(graph, None, 2**26)
    assert name.endswith("/big") and op == "Range" and size == 2**30


@pytest.mark.slow
def test_the_size_check_stays_quiet_on_real_models():
    """keras.applications and RNN graphs: no refusal at a bound far under what they hold, so the check
    reads shapes and does not invent sizes; and it takes milliseconds."""
    import time

    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from kfreeze.keras_io import keras

    L = keras.layers
    models = [keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3)),
              keras.Sequential([keras.Input((20, 8)), L.LSTM(16, return_sequences=True), L.GRU(8), L.Dense(3)]),
              keras.Sequential([keras.Input((32, 32, 3)), L.Resizing(64, 64), L.UpSampling2D(), L.ZeroPadding2D(3),
                                L.Conv2D(4, 3), L.GlobalAveragePooling2D(), L.RepeatVector(5), L.Flatten()])]
    for model in models:
        fn = tf.function(lambda *a, m=model: m(*a)).get_concrete_function(
            *[tf.TensorSpec([1, *i.shape[1:]], i.dtype) for i in model.inputs])
        graph = convert_variables_to_constants_v2(fn).graph.as_graph_def()
        start = time.monotonic()
        assert bounds.largest(graph, None, 2**23) is None  # 8 MiB; MobileNetV2's largest activation is 4.6 MiB
        assert time.monotonic() - start < 2


def test_image_headers():
    assert bounds.image_size(png_header(16000, 12000)) == (12000, 16000, 1)
    assert bounds.size_channels(png_header(4, 4, colour=2)) == 3
    jpeg = tf.io.encode_jpeg(tf.zeros([7, 5, 3], tf.uint8)).numpy()
    assert bounds.image_size(jpeg) == (7, 5, 1)
    gif = b"GIF89a" + struct.pack("<HH", 300, 200) + b"\x00" * 8
    assert bounds.image_size(gif)[:2] == (200, 300)
    assert bounds.image_size(b"not an image") is None


@pytest.mark.slow
def test_kfreeze_run_refuses_a_fill_sized_by_the_cut_in_one_line(tmp_path, monkeypatch):
    """The input is [None, 3] in the graph, so freeze cannot know Fill's size; optimize's child does once
    input_shape fixes it, and refuses before Grappler in one line (no --out, not even frozen.pb)."""
    from typer.testing import CliRunner

    from kfreeze import graphio
    from kfreeze.cli import app

    monkeypatch.setenv("KFREEZE_MEMORY_LIMIT_GB", "6")  # the child's bound; one tensor: 1.5 GiB
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        big = tf.fill(tf.shape(x) * tf.constant([12000, 12000]), 1.0, name="big")  # [12000, 36000]: 1.6 GiB
        tf.identity(x + tf.reduce_sum(big), name="y")
    graphio.write_graph(g.as_graph_def(), tmp_path / "g.pb")
    result = CliRunner().invoke(app, ["run", str(tmp_path / "g.pb"), "--inputs", "x", "--outputs", "y",
                                      "--input-shape", "[1, 3]", "--out", str(tmp_path / "out")])
    line = result.stderr.strip()
    assert result.exit_code == 1 and len(line.splitlines()) == 1, result.stderr
    assert "node 'big' (Fill) would compute a tensor of 1.6 GiB (shape [12000, 36000])" in line, line
    assert "Traceback" not in line
    # --out is built aside and renamed into place only when every step ran: nothing of this run is left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.pb"]


@pytest.mark.slow
def test_shapes_that_only_claim_to_be_huge_build_nothing_huge():
    """Found by fuzzing the checker: a Fill whose dims argument has 2**40 entries (a rank no tensor has),
    and a Const of shape [2**40, 0] (no values, 2**40 rows of them). The checker built a 2**40-long tuple
    and list; in a bounded child it now answers at once."""
    from kfreeze import child

    g = tf.Graph()
    with g.as_default():
        dims = tf.compat.v1.placeholder(tf.int32, [4], name="dims")
        tf.fill(dims, 1.0, name="big")
        tf.constant(0, tf.int32, name="empty")
    graph = g.as_graph_def()  # then edited: TF refuses to build either
    next(n for n in graph.node if n.name == "dims").attr["shape"].shape.dim[0].size = 2**40
    empty = next(n for n in graph.node if n.name == "empty").attr["value"].tensor
    empty.tensor_shape.dim.add(size=2**40)
    empty.tensor_shape.dim.add(size=0)
    empty.ClearField("int_val")
    bound = child.BASE_MEMORY + GiB  # the floor a process that imports TensorFlow needs, and 1 GiB
    assert child.call(bounds.largest, graph, None, GiB, what="bounds", where="g", memory=bound) is None


def test_the_check_leaves_the_graph_as_it_was():
    """Reading an attr a node lacks must not add it (a protobuf map inserts on indexing): an empty
    'adj_x' on a MatMul made TF's oneDNN rewrite fail, and a SavedModel lose its inputs."""
    from tests.targets import graphs
    graph = graphs.conv_two_heads().graph
    before = graph.SerializeToString()
    bounds.check(graph, "g")
    assert graph.SerializeToString() == before
