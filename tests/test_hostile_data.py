"""Hostile data (issue 15): damaged archives stop before anything is written, in one line naming
the archive, where, and the fix; an intact archive loads every image; reals.png is a random draw.

Each row of the table makes its own input in tmp_path and runs `vitgan train` in this process.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image
from test_train_helpers import main, small_args

N = 40  # images per archive: class folders a/ (red) and b/ (blue), 20 each, sorted


def png(k: int, colour) -> bytes:
    """A 16x16 PNG of one colour plus incompressible noise in its low bits (so damage to a
    compressed archive lands in image data as often as in headers)."""
    rng = np.random.default_rng(k)
    a = (np.array(colour, np.uint8) & 0xF0) | rng.integers(0, 16, (16, 16, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def members() -> list[tuple[str, bytes]]:
    return [(f"{'ab'[i // (N // 2)]}/{i:03d}.png", png(i, (255, 0, 0) if i < N // 2 else (0, 0, 255)))
            for i in range(N)]


def tar_bytes(compression: str = "") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compression}") as tf:
        for name, data in members():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members():
            zf.writestr(name, data)
    return buf.getvalue()


def flip_middle(data: bytes, n: int = 16) -> bytes:
    out = bytearray(data)
    for k in range(len(out) // 2, len(out) // 2 + n):
        out[k] ^= 0xFF
    return bytes(out)


def damage_zip_member(data: bytes) -> bytes:
    """Overwrite bytes inside the 4th member's data (its CRC-32 then fails)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.infolist()[3]
    start = info.header_offset + 30 + len(info.filename.encode()) + 20
    return data[:start] + b"X" * 16 + data[start + 16:]


def damage_tar_header(data: bytes) -> bytes:
    """Flip a byte in the name field of the 11th member's header (its checksum then fails)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        offset = tf.getmembers()[10].offset
    out = bytearray(data)
    out[offset + 3] ^= 0x20
    return bytes(out)


# name, file name, bytes to write, expected substrings of the one line
BAD = [
    ("gzip-flipped-middle", "d.tar.gz", lambda: flip_middle(tar_bytes("gz")),
     ["gzip-compressed tar is corrupt", "fails its checksum", "re-download or re-create it"]),
    ("gzip-truncated", "d.tar.gz", lambda: tar_bytes("gz")[: len(tar_bytes("gz")) * 2 // 3],
     ["gzip-compressed tar is corrupt after member", "truncated", "re-download"]),
    ("bzip2-truncated", "d.tar.bz2", lambda: bz2.compress(tar_bytes())[:-100],
     ["bzip2-compressed tar is corrupt", "truncated"]),
    ("xz-flipped-middle", "d.tar.xz", lambda: flip_middle(lzma.compress(tar_bytes())),
     ["xz-compressed tar is corrupt", "near byte", "re-download"]),
    ("tar-damaged-header", "d.tar", lambda: damage_tar_header(tar_bytes()),
     ["the tar archive is corrupt after member a/009.png", "damaged tar header at byte"]),
    ("tar-truncated", "d.tar", lambda: tar_bytes()[: len(tar_bytes()) // 2 + 100],
     ["the tar archive is corrupt", "truncated"]),
    ("text-named-tar.gz", "d.tar.gz", lambda: b"<html><body>404 Not Found</body></html>\n",
     ["it is a web page (HTML)", "not a tar archive", "misnamed"]),
    ("text-named-zip", "d.zip", lambda: b"just some text\n" * 20, ["it is text, not a zip archive"]),
    ("gzip-not-tar", "d.tar.gz", lambda: gzip.compress(b"hello " * 1000),
     ["gzip-compressed data that holds no tar archive"]),
    ("zip-damaged-member", "d.zip", lambda: damage_zip_member(zip_bytes()),
     ["member a/003.png is damaged", "Bad CRC-32", "re-download"]),
    ("zip-deflated-damaged-member", "d.zip", lambda: damage_zip_member(zip_bytes(zipfile.ZIP_DEFLATED)),
     ["member a/003.png is damaged"]),
]


def train(data, out, capsys, *extra):
    return main(["train", "--preset", "tiny", "--data", data, "--kimg", "0.016", "--out", out,
                 *small_args(), *extra], capsys)


@pytest.mark.parametrize("name,filename,make,expected", BAD, ids=[row[0] for row in BAD])
def test_damaged_archive_stops_before_anything_is_written(tmp_path, capsys, name, filename, make, expected):
    data = tmp_path / filename
    data.write_bytes(make())
    out = tmp_path / "R"
    rc, stdout, err = train(data, out, capsys)
    assert rc == 1, (stdout, err)
    assert "Traceback" not in err + stdout
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("vitgan: error: cannot read archive ") and str(data) in lines[0], lines[0]
    for text in expected:
        assert text in lines[0], lines[0]
    assert not out.exists() or not any(out.iterdir())  # nothing written: the same command may run again
    data.write_bytes(tar_bytes("gz"))  # repaired (a tar.gz whatever the name): the same command trains
    rc, _, err = train(data, out, capsys)
    assert rc == 0, err


def read_grid(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# name, file name, bytes: intact archives, each loads all N images (any name: read by content)
GOOD = [
    ("tar.gz", "d.tar.gz", lambda: tar_bytes("gz")),
    ("zip-named-tar.gz", "d.tar.gz", zip_bytes),
    ("xz-named-zip", "d.zip", lambda: lzma.compress(tar_bytes())),
]


@pytest.mark.parametrize("name,filename,make", GOOD, ids=[row[0] for row in GOOD])
def test_intact_archive_loads_every_image_and_reals_mix_classes(tmp_path, capsys, name, filename, make):
    data = tmp_path / filename
    data.write_bytes(make())
    out = tmp_path / "R"
    rc, stdout, err = train(data, out, capsys, "--set", "grid=4")
    assert rc == 0, err
    log = (out / "log.txt").read_text()
    assert f"({N} images)" in log and "warning" not in log
    grid = read_grid(out / "reals.png").reshape(4, 16, 4, 16, 3).transpose(0, 2, 1, 3, 4).reshape(16, -1, 3)
    reds = int((grid.mean(1)[:, 0] > 128).sum())
    assert 0 < reds < 16  # both classes are shown (the first 16 images are all red)


def test_reals_indices_are_a_seeded_random_draw():
    from vitgan.train.state import reals_indices

    first = reals_indices(200, 64, seed=0)
    assert first == reals_indices(200, 64, seed=0)  # deterministic for a seed
    assert first != reals_indices(200, 64, seed=1)
    assert len(set(first)) == 64 and first == sorted(first) and 0 <= first[0] and first[-1] < 200
    assert first != list(range(64))
    assert 10 < sum(i < 100 for i in first) < 54  # both halves of a two-class sorted set
    assert reals_indices(5, 64, seed=0) == [0, 1, 2, 3, 4]


def test_undecodable_images_in_an_intact_archive_are_counted_loudly(tmp_path, capsys):
    data = tmp_path / "d.tar.gz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for i, (name, payload) in enumerate(members()):
            payload = b"not a png" if i in (5, 30) else payload
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    data.write_bytes(buf.getvalue())
    out = tmp_path / "R"
    rc, stdout, err = train(data, out, capsys)
    assert rc == 0, err
    assert f"warning: skipped 2 unreadable images of {N} in {data}, {N - 2} left" in stdout
    log = (out / "log.txt").read_text()
    assert f"warning: 2 of {N} images in {data} were unreadable and skipped; training on {N - 2}" in log


def test_damaged_zip_member_stops_a_lazy_dataset_at_open(tmp_path):
    from vitgan.data import open_dataset
    from vitgan.errors import UserError

    data = tmp_path / "d.zip"
    data.write_bytes(damage_zip_member(zip_bytes()))
    with pytest.raises(UserError, match="member a/003.png is damaged"):
        open_dataset(str(data), resolution=16, in_memory=False, log=lambda *_: None)


def test_truncated_cifar_pickle_tarball_stops_with_one_line(tmp_path):
    """`--data cifar10:ROOT` with a damaged cifar-10-python.tar.gz: the same verified listing."""
    import pickle

    from vitgan.data import open_dataset
    from vitgan.errors import UserError

    batch = pickle.dumps({"data": np.random.default_rng(0).integers(0, 255, (50, 3072), dtype=np.uint8),
                          "labels": [0, 1] * 25}, protocol=2)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(batch)
            tf.addfile(info, io.BytesIO(batch))
    data = buf.getvalue()
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(data)
    assert len(open_dataset(f"cifar10:{tmp_path}", resolution=32, download=False, log=lambda *_: None)) == 250
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(data[: len(data) * 3 // 4])
    with pytest.raises(UserError, match="gzip-compressed tar is corrupt .*truncated"):
        open_dataset(f"cifar10:{tmp_path}", resolution=32, download=False, log=lambda *_: None)
