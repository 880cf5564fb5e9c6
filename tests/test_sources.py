"""kfreeze.sources: a model file's kind from its bytes, never its name (no TensorFlow)."""

import pytest

from kfreeze import sources

# A GraphDef by hand: node { name: "x" op: "Placeholder" } and versions { producer: 1 }
NODE = b"\x0a\x01x\x12\x0bPlaceholder"
BINARY = b"\x0a" + bytes([len(NODE)]) + NODE + b"\x22\x02\x08\x01"


@pytest.mark.parametrize("name, data, kind", [
    ("a.model", b"\x89HDF\r\n\x1a\n" + b"\0" * 64, "hdf5"),
    ("a.bin", b"PK\x03\x04" + b"\0" * 64, "zip"),
    ("g.bin", BINARY, "graph"),
    ("g.pbtxt", BINARY, "graph"),
    ("g.pb", b"# exported\nnode {\n  name: 'x'\n  op: 'Placeholder'\n}\n", "graph_text"),
    ("g.pb", BINARY[:-3], None),                 # a length running past the end
    ("g.pb", b"\x0a\x00" + BINARY, None),        # an empty node
    ("g.pb", b"\x3a\x01x", None),                # field 7 is no GraphDef field
    ("notes.txt", b"hello", None),
    ("empty.pb", b"", None),
])
def test_kind_is_told_by_the_bytes(tmp_path, name, data, kind):
    (tmp_path / name).write_bytes(data)
    assert sources.kind(tmp_path / name) == kind


def test_a_savedmodel_is_a_folder_with_saved_model_pb(tmp_path):
    assert sources.kind(tmp_path) is None
    (tmp_path / "saved_model.pb").write_bytes(b"x")
    assert sources.kind(tmp_path) == "savedmodel"
    assert sources.kind(tmp_path / "missing") is None


def test_the_binary_graph_parses_as_tensorflow_reads_it(tmp_path):
    from tensorflow.core.framework import graph_pb2
    graph = graph_pb2.GraphDef()
    graph.ParseFromString(BINARY)
    assert [(n.name, n.op) for n in graph.node] == [("x", "Placeholder")] and graph.versions.producer == 1


def _varint(n: int) -> bytes:
    out = b""
    while True:
        out += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            return out


@pytest.mark.parametrize("kind", ["graph", None])
def test_a_huge_sparse_file_is_told_without_reading_it(tmp_path, kind):
    """16 GiB on paper, a few bytes on disk, starting with 0x0a: kind() read all of it to walk it
    (issue 25). In a child bounded to 1 GiB, the walk seeks over the one node (or stops at the
    first byte that is no GraphDef field) and reads a few bytes."""
    from kfreeze import child

    path = tmp_path / "big.pb"
    head = b"\x0a" + _varint(2**34) + b"\x0a" if kind == "graph" else BINARY
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) - 1 + 2**34 if kind == "graph" else 2**34)
    assert path.stat().st_size >= 2**34 and path.stat().st_blocks * 512 < 2**20  # sparse
    assert child.call(sources.kind, path, what="kind", where=str(path), memory=2**30) == kind
