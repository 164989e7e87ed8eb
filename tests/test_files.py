"""vitgan.files: the one atomic write (whole or not at all), sha256."""

import hashlib
import os

import pytest

from vitgan import files


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    files.atomic_write_bytes(path, b"old")
    files.atomic_write_bytes(path, b"new contents")
    assert path.read_bytes() == b"new contents"

    def boom(*a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        files.atomic_write_bytes(path, b"half")
    assert path.read_bytes() == b"new contents"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temporary file left behind


def test_a_refused_check_keeps_the_old_file(tmp_path):
    path = tmp_path / "net.pt"
    files.atomic_write_text(path, "good")

    def refuse(tmp):
        assert tmp.read_bytes() == b"bad" and files.is_temporary(tmp.name)
        raise OSError("not the network")

    with pytest.raises(OSError):
        files.atomic_write(path, lambda f: f.write(b"bad"), check=refuse)
    assert path.read_text() == "good" and [p.name for p in tmp_path.iterdir()] == ["net.pt"]


def test_sha256_and_link_or_copy(tmp_path):
    src = tmp_path / "a"
    files.atomic_write_bytes(src, b"x" * 3_000_000)
    assert files.sha256_file(src) == hashlib.sha256(b"x" * 3_000_000).hexdigest() == files.sha256_bytes(b"x" * 3_000_000)
    files.atomic_link_or_copy(src, tmp_path / "b")
    assert (tmp_path / "b").read_bytes() == src.read_bytes()
