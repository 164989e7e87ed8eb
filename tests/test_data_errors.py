"""Bad data: unreadable images are skipped and counted; a bad dataset stops at open, in one line."""

import io
import os
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from vitgan.data import cifar as cifar_mod
from vitgan.data import open_dataset
from vitgan.errors import OptionError, UserError


def png(colour, size=(16, 16)):
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def jpeg(colour, size=(64, 64)):
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def write(path, data: bytes):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def user_error(fn, *args, **kwargs) -> str:
    """Call; it must raise a one-line UserError; return the message."""
    with pytest.raises(UserError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and len(message) < 600, message
    return message


def open_quiet(source, **kw):
    kw.setdefault("resolution", 16)
    return open_dataset(str(source), log=lambda *_: None, **kw)


def bad_folder(root):
    """Three good images, a truncated JPEG, a garbage .png and an empty .jpg."""
    write(str(root / "a" / "1.png"), png((255, 0, 0)))
    write(str(root / "a" / "2_truncated.jpg"), jpeg((0, 255, 0))[:300])
    write(str(root / "b" / "3.png"), png((0, 255, 0)))
    write(str(root / "b" / "4_garbage.png"), os.urandom(500))
    write(str(root / "b" / "5_empty.jpg"), b"")
    write(str(root / "b" / "6.png"), png((0, 0, 255)))
    return root


def check_skipped(ds, lines):
    assert len(ds) == 3 and ds.skipped == 3
    assert [tuple(int(v) for v in x[:, 0, 0]) for x in ds] == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    assert ds.labels.tolist() == [0, 1, 1]
    assert any("skipped 3 unreadable images" in line for line in lines), lines


def test_bad_images_in_folder_are_skipped_and_counted(tmp_path):
    lines = []
    ds = open_dataset(str(bad_folder(tmp_path / "d")), resolution=16, log=lines.append)
    check_skipped(ds, lines)


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_bad_images_in_archives_are_skipped(tmp_path, kind):
    root = bad_folder(tmp_path / "d")
    archive = tmp_path / f"d.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for dirpath, _, files in os.walk(root):
                for f in files:
                    zf.write(os.path.join(dirpath, f), os.path.relpath(os.path.join(dirpath, f), root))
    else:
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(root, arcname="d")
    lines = []
    check_skipped(open_dataset(str(archive), resolution=16, log=lines.append), lines)


def test_lazy_dataset_never_crashes_on_a_bad_image(tmp_path):
    root = tmp_path / "d"
    for i in range(20):
        write(str(root / f"{i:02d}.png"), png((i, 0, 0)))
    write(str(root / "01.png"), os.urandom(100))  # found when opening (the probe)
    write(str(root / "17.png"), b"\x89PNG\r\n\x1a\n broken")  # found only when read
    lines = []
    ds = open_dataset(str(root), resolution=16, in_memory=False, log=lines.append)
    assert len(ds) == 19 and ds.skipped == 1 and "skipped 1 unreadable images" in lines[0]
    reds = [int(ds[i][0, 0, 0]) for i in range(len(ds))]
    assert reds[16] == 18 and reds[17] == 18  # the bad one is replaced by the next readable one
    assert ds.skipped == 2 and any("17.png" in line for line in lines)


def test_empty_missing_and_unknown(tmp_path):
    (tmp_path / "empty").mkdir()
    msg = user_error(open_quiet, tmp_path / "empty")
    assert str(tmp_path / "empty") in msg and "no images" in msg
    write(str(tmp_path / "texts" / "a.txt"), b"hello")
    assert "no images" in user_error(open_quiet, tmp_path / "texts")
    msg = user_error(open_quiet, tmp_path / "nope")
    assert str(tmp_path / "nope") in msg and "does not exist" in msg and ".tar.gz" in msg
    assert "cifar10" in user_error(open_quiet, "cifar100")  # probably a dataset name
    write(str(tmp_path / "data.xyz"), b"stuff")
    msg = user_error(open_quiet, tmp_path / "data.xyz")
    assert "unknown data format" in msg and ".npz" in msg and "LMDB" in msg
    write(str(tmp_path / "one.png"), png((1, 2, 3)))
    assert "single image" in user_error(open_quiet, tmp_path / "one.png")


def test_every_image_bad(tmp_path):
    for i in range(3):
        write(str(tmp_path / "d" / f"{i}.jpg"), os.urandom(64))
    msg = user_error(open_quiet, tmp_path / "d")
    assert "none of the 3 images could be read" in msg and str(tmp_path / "d") in msg
    msg = user_error(open_quiet, tmp_path / "d", in_memory=False)
    assert "none of the 3" in msg


@pytest.mark.parametrize("name", ["x.tar.gz", "x.tgz", "x.zip", "x.tar"])
def test_corrupt_archives(tmp_path, name):
    good = tmp_path / ("good." + name.split(".", 1)[1])
    if name.endswith(".zip"):
        with zipfile.ZipFile(good, "w") as zf:
            for i in range(30):
                zf.writestr(f"{i}.png", png((i, 0, 0), (64, 64)))
    else:
        with tarfile.open(good, "w:gz" if "gz" in name else "w") as tf:
            for i in range(30):
                data = png((i, 0, 0), (64, 64)) + os.urandom(2000)  # trailing bytes: incompressible
                info = tarfile.TarInfo(f"{i}.png")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    data = good.read_bytes()
    write(str(tmp_path / "truncated" / name), data[: len(data) // 2])
    write(str(tmp_path / "garbage" / name), os.urandom(5000))
    msg = user_error(open_quiet, tmp_path / "truncated" / name)
    assert str(tmp_path / "truncated" / name) in msg and "corrupt" in msg
    msg = user_error(open_quiet, tmp_path / "garbage" / name)
    assert str(tmp_path / "garbage" / name) in msg and ("corrupt" in msg or "no images" in msg)


def test_corrupt_and_empty_lmdb(tmp_path):
    write(str(tmp_path / "bad_lmdb" / "data.mdb"), os.urandom(8192))
    msg = user_error(open_quiet, tmp_path / "bad_lmdb")
    assert "cannot read LMDB" in msg and str(tmp_path / "bad_lmdb") in msg
    import lmdb

    lmdb.open(str(tmp_path / "empty_lmdb"), map_size=1 << 20).close()
    assert "empty" in user_error(open_quiet, tmp_path / "empty_lmdb")
    env = lmdb.open(str(tmp_path / "junk_lmdb"), map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(b"a", b"not an image")
    env.close()
    assert "its only image is unreadable" in user_error(open_quiet, tmp_path / "junk_lmdb")


def test_bad_npz(tmp_path):
    np.savez(tmp_path / "f.npz", x=np.zeros((2, 8, 8, 3), np.float32))
    assert "uint8" in user_error(open_quiet, tmp_path / "f.npz")
    np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}], dtype=object))
    assert "plain uint8" in user_error(open_quiet, tmp_path / "o.npz")
    np.savez(tmp_path / "v.npz", x=np.zeros(10, np.uint8))
    assert "no image array" in user_error(open_quiet, tmp_path / "v.npz")
    write(str(tmp_path / "g.npz"), os.urandom(300))
    assert "corrupt" in user_error(open_quiet, tmp_path / "g.npz")
    np.savez(tmp_path / "t.npz", x=np.zeros((2, 8, 8, 3), np.uint8))
    assert "split 'train'" in user_error(open_quiet, tmp_path / "t.npz", split="test")


def test_missing_split_and_bad_options(tmp_path):
    write(str(tmp_path / "d" / "a.png"), png((1, 2, 3)))
    msg = user_error(open_quiet, tmp_path / "d", split="test")
    assert "no test/" in msg and "split 'train'" in msg
    write(str(tmp_path / "s" / "train" / "a.png"), png((1, 2, 3)))
    assert "no test/" in user_error(open_quiet, tmp_path / "s", split="test")
    for kw in ({"channels": 2}, {"resolution": 0}, {"split": "val"}, {"max_images": 0}):
        with pytest.raises(OptionError) as info:
            open_quiet(tmp_path / "d", **kw)
        assert info.value.exit_code == 2


def test_named_datasets_offline(tmp_path, monkeypatch):
    def offline(root, log=print):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(cifar_mod, "download", offline)
    msg = user_error(open_quiet, "cifar10", root=str(tmp_path), resolution=32)
    assert "download failed" in msg and "--data" in msg and "cifar-10-python.tar.gz" in msg
    assert "cifar-10-batches-py" in msg and str(tmp_path) in msg
    msg = user_error(open_quiet, "cifar10", root=str(tmp_path), download=False, resolution=32)
    assert "download disabled" in msg
    msg = user_error(open_quiet, "lsun-bedroom", root=str(tmp_path))
    assert "bedroom_train_lmdb" in msg and "--data" in msg
    msg = user_error(open_quiet, "celeba", root=str(tmp_path), download=False)
    assert "img_align_celeba.zip" in msg and "--data" in msg


def test_cifar_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    entry = {"data": np.zeros((1, 3072), np.uint8), "labels": [0], "x": Evil()}
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    msg = user_error(open_quiet, folder, resolution=32)
    assert "refusing" in msg and "system" in msg
    assert not marker.exists()
    entry = {"data": torch.zeros(1, 3072, dtype=torch.uint8), "labels": [0]}  # any other class
    (folder / "data_batch_1").write_bytes(pickle.dumps(entry, protocol=2))
    assert "refusing" in user_error(open_quiet, folder, resolution=32)


def test_cifar_missing_batch(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(
        pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}, protocol=2)
    )
    assert len(open_quiet(folder, resolution=32, split="test")) == 2
    msg = user_error(open_quiet, folder, resolution=32)
    assert "data_batch_1" in msg and "lacks" in msg
