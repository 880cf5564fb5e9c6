"""What kind of model file a user brought, from its bytes, not its name (no TensorFlow import).

``kind(path)`` is one of:

- ``hdf5``: an HDF5 file (Keras 1/2 ``.h5`` model or weights), magic ``\\x89HDF\\r\\n\\x1a\\n``
- ``zip``: a zip archive (a Keras 3 ``.keras`` file), magic ``PK\\x03\\x04``
- ``savedmodel``: a folder holding ``saved_model.pb`` (or ``saved_model.pbtxt``)
- ``graph``: a binary GraphDef (its top-level protobuf fields walk cleanly to the end of the file)
- ``graph_text``: a text GraphDef (``node {`` ... after comments and blank lines)
- ``None``: none of these

An HDF5 model named ``*.model``, or a frozen graph named ``*.bin``, is what its bytes say.
"""

from __future__ import annotations

import re
from pathlib import Path

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
KERAS_KINDS = ("hdf5", "zip")
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")  # as keras_io (which imports Keras) names them
GRAPH_KINDS = ("graph", "graph_text")
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")

# GraphDef's top-level fields: node = 1, library = 2 (length-delimited); version = 3 (varint); versions = 4.
_GRAPHDEF_FIELDS = {1: 2, 2: 2, 3: 0, 4: 2}
_TEXT_START = re.compile(rb"^(?:\s|#[^\n]*\n)*(node|versions|library|version)\s*[{:]")


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            return value, i
        shift += 7


def is_binary_graphdef(data: bytes) -> bool:
    """The bytes parse as GraphDef's wire format at the top level: only its fields, with their wire types,
    each length inside the file, ending exactly at its end, and at least one node."""
    i, nodes = 0, 0
    try:
        while i < len(data):
            key, i = _varint(data, i)
            field, wire = key >> 3, key & 7
            if _GRAPHDEF_FIELDS.get(field) != wire:
                return False
            if wire == 0:
                _, i = _varint(data, i)
                continue
            length, i = _varint(data, i)
            if i + length > len(data):
                return False
            if field == 1:
                if length == 0 or data[i] != 0x0A:  # a NodeDef starts with its name (field 1)
                    return False
                nodes += 1
            i += length
    except ValueError:
        return False
    return nodes > 0


def is_text_graphdef(head: bytes) -> bool:
    """The file starts as a text GraphDef does (comments allowed); the parser decides the rest."""
    return bool(_TEXT_START.match(head))


def kind(path: str | Path) -> str | None:
    """The kind of model ``path`` holds (see the module docstring); None when it is none of them."""
    path = Path(path)
    if path.is_dir():
        return "savedmodel" if any((path / f).is_file() for f in SAVED_MODEL_FILES) else None
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(HDF5_MAGIC):
        return "hdf5"
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if is_text_graphdef(head):
        return "graph_text"
    if head[:1] == b"\x0a" and _binary_graphdef_file(path):
        return "graph"
    return None


def keras2_archive(path: str | Path) -> bool:
    """A ``.keras`` zip written by tf.keras 2.13-2.15 or tf_keras (Keras 2's flavour of the format): its
    metadata.json names a 2.x keras_version, or its config.json names a Keras 2 module
    (``keras.src.engine.functional``, ``tf_keras.src...``). Keras 3 cannot read these; tf_keras can."""
    import json
    import zipfile

    path = Path(path)
    if kind(path) != "zip":
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "metadata.json" in names and archive.getinfo("metadata.json").file_size < 2**20:
                version = str(json.loads(archive.read("metadata.json")).get("keras_version", ""))
                if version:
                    return version.split(".")[0] == "2"
            if "config.json" in names and archive.getinfo("config.json").file_size < 64 * 2**20:
                module = str(json.loads(archive.read("config.json")).get("module", ""))
                return module.startswith(("tf_keras.", "keras.src.engine."))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, AttributeError):
        return False  # the loader's archive checks say what is wrong
    return False


def _binary_graphdef_file(path: Path) -> bool:
    """``is_binary_graphdef`` walked on the file, seeking over each field: a sparse 100 GiB file that starts
    with 0x0a costs a few reads, not its size in memory (``read_bytes()`` held all of it)."""
    size = path.stat().st_size
    nodes = 0
    with open(path, "rb") as f:
        def varint() -> int:
            value = shift = 0
            while True:
                byte = f.read(1)
                if not byte or shift > 63:
                    raise ValueError("truncated varint")
                value |= (byte[0] & 0x7F) << shift
                shift += 7
                if not byte[0] & 0x80:
                    return value
        try:
            while f.tell() < size:
                key = varint()
                field, wire = key >> 3, key & 7
                if _GRAPHDEF_FIELDS.get(field) != wire:
                    return False
                if wire == 0:
                    varint()
                    continue
                length = varint()
                start = f.tell()
                if start + length > size:
                    return False
                if field == 1:
                    if length == 0 or f.read(1) != b"\x0a":  # a NodeDef starts with its name (field 1)
                        return False
                    nodes += 1
                f.seek(start + length)
        except ValueError:
            return False
    return nodes > 0


def describe(found: str | None) -> str:
    return {"hdf5": "an HDF5 file", "zip": "a zip archive", "savedmodel": "a SavedModel folder",
            "graph": "a binary GraphDef", "graph_text": "a text GraphDef", None: "no model file kfreeze reads"}[found]
