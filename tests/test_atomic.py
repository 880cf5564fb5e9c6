import os

import pytest

from kfreeze import atomic


def test_write_bytes_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out" / "a.pb"
    atomic.write_bytes(target, b"one")
    atomic.write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(target.parent) == ["a.pb"]


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "a.pb"
    atomic.write_bytes(target, b"old")

    def boom(*args):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic.write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.pb"]


def test_directory_swaps_whole_or_not_at_all(tmp_path):
    target = tmp_path / "ckpt"
    with atomic.directory(target) as tmp:
        (tmp / "x").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic.directory(target) as tmp:
            (tmp / "x").write_text("2")
            raise RuntimeError("interrupted")
    assert (target / "x").read_text() == "1"
    with atomic.directory(target) as tmp:
        (tmp / "y").write_text("3")
    assert sorted(os.listdir(target)) == ["y"]
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]
