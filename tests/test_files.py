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


def test_sha256(tmp_path):
    src = tmp_path / "a"
    files.atomic_write_bytes(src, b"x" * 3_000_000)
    assert files.sha256_file(src) == hashlib.sha256(b"x" * 3_000_000).hexdigest() == files.sha256_bytes(b"x" * 3_000_000)


def test_publish_puts_a_finished_file_or_folder_in_place(tmp_path):
    """What another writer finished under a temporary name (a download, a staged export folder)
    replaces the old file whole; a folder takes the place of a missing one."""
    final = tmp_path / "archive.tar.gz"
    final.write_bytes(b"old")
    part = tmp_path / "archive.tar.gz.part"
    part.write_bytes(b"new archive")
    assert files.publish(part, final) == final
    assert final.read_bytes() == b"new archive" and not part.exists()
    stage = tmp_path / ".out.tmp-1"
    stage.mkdir()
    (stage / "model.onnx").write_bytes(b"onnx")
    files.publish(stage, tmp_path / "out")
    assert (tmp_path / "out" / "model.onnx").read_bytes() == b"onnx" and not stage.exists()


def test_set_aside_keeps_the_file_under_another_name(tmp_path):
    path = tmp_path / "ckpt-000000000016.pt"
    path.write_bytes(b"damaged")
    aside = files.set_aside(path, ".damaged")
    assert aside.name == "ckpt-000000000016.pt.damaged" and aside.read_bytes() == b"damaged"
    assert sorted(p.name for p in tmp_path.iterdir()) == [aside.name]


def test_writing_turns_an_os_error_into_one_line(tmp_path):
    with pytest.raises(files.OutputError, match="^cannot write x.png: the disk is full; free some space$"):
        with files.writing("x.png", "free some space"):
            raise OSError(28, "No space left on device")
