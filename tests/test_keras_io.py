import zipfile

import numpy as np
import pytest

from kfreeze import keras_io
from kfreeze.errors import KfreezeError


def test_canonical_bytes_do_not_depend_on_save_time(tiny_path, tmp_path):
    a = keras_io.canonical_bytes(keras_io.load_model(tiny_path))
    b = keras_io.canonical_bytes(keras_io.load_model(tiny_path))
    assert a == b
    with zipfile.ZipFile(tiny_path) as z:  # the source itself carries a save date
        assert "date_saved" in z.read("metadata.json").decode()
    out = tmp_path / "c.keras"
    keras_io.save_canonical(keras_io.load_model(tiny_path), out)
    with zipfile.ZipFile(out) as z:
        assert "date_saved" not in z.read("metadata.json").decode()
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_canonical_model_computes_the_same(tiny_path, tmp_path):
    out = tmp_path / "c.keras"
    source = keras_io.load_model(tiny_path)
    keras_io.save_canonical(source, out)
    x = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)
    np.testing.assert_array_equal(keras_io.load_model(out)(x), source(x))


@pytest.mark.parametrize("name, content, message", [
    ("m.keras", b"", "model file is empty"),
    ("m.keras", b"PK\x03\x04 truncated", "not a .keras archive"),
    ("m.pb", b"\x08\x01", "not a Keras model file"),
    ("m.h5", b"\x89HDF\r\n\x1a\n" + b"\x00" * 40, "Keras cannot load this model"),
])
def test_bad_model_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(KfreezeError, match=message):
        keras_io.load_model(path)


def test_truncated_keras_archive(tiny_path, tmp_path):
    data = tiny_path.read_bytes()
    path = tmp_path / "cut.keras"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(KfreezeError, match="cut.keras"):
        keras_io.load_model(path)
