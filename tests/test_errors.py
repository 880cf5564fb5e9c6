"""kfreeze.errors.reading: a reader's error is a damaged file; kfreeze's own bug stays a bug."""

import zipfile

import pytest

from kfreeze.errors import KfreezeError, reading


def test_a_reader_error_is_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "m.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(KfreezeError, match=r"m.keras: cannot be read \(BadZipFile: .*re-save it"):
        with reading(bad):
            zipfile.ZipFile(bad)
    with pytest.raises(KfreezeError, match="cannot be read"):
        with reading(bad):
            int("x")  # a library's ValueError


def test_kfreeze_bugs_are_not_reported_as_a_damaged_file():
    with pytest.raises(AttributeError):
        with reading("m.keras"):
            None.missing  # noqa: B018
    from kfreeze.errors import printable
    with pytest.raises(TypeError):  # raised inside kfreeze: a bug, though Keras' deserializers raise TypeError too
        with reading("m.keras"):
            printable(None)
    with pytest.raises(KfreezeError, match=r"cannot be read \(TypeError"):
        with reading("m.keras"):
            len(3)  # raised outside kfreeze, as by a reader library
