import pytest

from kfreeze import graphio
from kfreeze.errors import KfreezeError
from kfreeze.tfenv import tf


def small_graph():
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 2], name="x")
        tf.identity(x * 2.0, name="y")
    return g.as_graph_def()


@pytest.mark.parametrize("suffix", [".pb", ".pbtxt"])
def test_round_trip_is_byte_stable(tmp_path, suffix):
    path = tmp_path / f"g{suffix}"
    graphio.write_graph(small_graph(), path)
    first = path.read_bytes()
    graphio.write_graph(graphio.read_graph(path), path)
    assert path.read_bytes() == first
    assert [n.name for n in graphio.read_graph(path).node][-1] == "y"


def test_reads_meta_graph(tmp_path):
    with tf.Graph().as_default() as g:
        tf.compat.v1.placeholder(tf.float32, [1], name="x")
        meta = tf.compat.v1.train.export_meta_graph(graph=g)
    path = tmp_path / "model.meta"
    path.write_bytes(meta.SerializeToString())
    assert [n.name for n in graphio.read_graph(path).node] == ["x"]


@pytest.mark.parametrize("name, content, message", [
    ("missing.pb", None, "graph file not found"),
    ("empty.pb", b"", "graph file is empty"),
    ("junk.pb", b"\xff\xfe not a protobuf \x00\x01" * 3, "not a binary GraphDef"),
    ("bad.pbtxt", b"node { name: 'x' op: ", "not a text GraphDef"),
    ("g.onnx", b"abc", "unknown graph file type"),
])
def test_bad_graph_files_get_one_clear_error(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(KfreezeError, match=message) as info:
        graphio.read_graph(path)
    assert "\n" not in str(info.value) and name in str(info.value)


def test_directory_is_not_a_graph(tmp_path):
    with pytest.raises(KfreezeError, match="is a directory"):
        graphio.read_graph(tmp_path)
