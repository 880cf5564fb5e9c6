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


def test_a_graph_file_over_2_gib_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "huge.pb"
    with open(big, "wb") as f:  # sparse: no disk used
        f.truncate(2**31 + 10)
    with pytest.raises(KfreezeError, match="over protobuf's 2 GiB limit"):
        graphio.read_graph(big)


def test_binary_or_text_is_told_by_the_bytes(tmp_path):
    from kfreeze.tfenv import tf
    from kfreeze import sources
    g = tf.Graph()
    with g.as_default():
        tf.constant(1.0, name="c")
    (tmp_path / "bin.pbtxt").write_bytes(g.as_graph_def().SerializeToString())
    (tmp_path / "text.pb").write_text(str(g.as_graph_def()))
    assert sources.kind(tmp_path / "bin.pbtxt") == "graph" and sources.kind(tmp_path / "text.pb") == "graph_text"
    assert [n.name for n in graphio.read_graph(tmp_path / "bin.pbtxt").node] == ["c"]
    assert [n.name for n in graphio.read_graph(tmp_path / "text.pb").node] == ["c"]
