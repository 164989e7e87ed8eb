"""Datasets: every format, built here as small real files, read back pixel for pixel."""

import io
import os
import pickle
import tarfile
import zipfile

import lmdb
import numpy as np
import pytest
import torch
from PIL import Image

from vitgan.data import ImageDataset, open_dataset
from vitgan.data import cifar as cifar_mod

QUIET = dict(log=lambda *_: None)
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255), (10, 20, 30)]


def solid(colour, size=(32, 32), mode="RGB"):
    return Image.new(mode, size, colour)


def encode(img, fmt="PNG", **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def write(path, data: bytes):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def assert_colour(x, colour, tol=0):
    """Every pixel of uint8 (C, H, W) ``x`` equals ``colour`` within ``tol``."""
    want = torch.tensor(colour, dtype=torch.int16).view(-1, 1, 1)
    diff = (x.to(torch.int16) - want).abs().max().item()
    assert diff <= tol, f"max difference {diff} from {colour}"


# ------------------------------------------------------------------------------- CIFAR-10


def cifar_images(n, offset=0):
    """n distinct 32x32 RGB images with a marker pixel that reveals any axis mix-up."""
    x = np.zeros((n, 32, 32, 3), np.uint8)
    for i in range(n):
        x[i] = (offset + i, 3 * (offset + i) % 256, 200)
        x[i, 0, 1] = (255, 254, 253)  # row 0, column 1
        x[i, 5, 0, 0] = 7  # row 5, column 0, red
    return x


def make_cifar(root, per_batch=3, n_test=4, bytes_keys=False):
    """torchvision's cifar-10-batches-py: pickled dicts, 'data' uint8 (N, 3072) in CHW order."""
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    images, labels = [], []
    k = lambda s: s.encode() if bytes_keys else s  # noqa: E731

    def dump(name, x, y):
        entry = {
            k("batch_label"): f"batch {name}",
            k("labels"): y,
            k("data"): x.transpose(0, 3, 1, 2).reshape(len(x), 3072).copy(),
            k("filenames"): [f"img_{i}.png" for i in range(len(x))],
        }
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(entry, f, protocol=2)

    for b in range(5):
        x = cifar_images(per_batch, offset=b * per_batch)
        y = [(b * per_batch + i) % 10 for i in range(per_batch)]
        dump(f"data_batch_{b + 1}", x, y)
        images.append(x)
        labels += y
    xt = cifar_images(n_test, offset=100)
    dump("test_batch", xt, [9 - i for i in range(n_test)])
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({"num_cases_per_batch": per_batch, "label_names": names, "num_vis": 3072}, f, protocol=2)
    return folder, np.concatenate(images), labels, xt


def nhwc(ds):
    return ds.images.permute(0, 2, 3, 1).numpy()


def test_cifar_batches_folder_matches_torchvision(tmp_path, monkeypatch):
    folder, x, y, xt = make_cifar(tmp_path)
    ds = open_dataset(folder, resolution=32, **QUIET)
    assert isinstance(ds, ImageDataset) and ds.name == "cifar10" and len(ds) == 15
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (15, 3, 32, 32)
    np.testing.assert_array_equal(nhwc(ds), x)
    assert ds[0][:, 0, 1].tolist() == [255, 254, 253] and ds[0][0, 5, 0] == 7
    assert ds.labels.tolist() == y and ds.classes[0] == "airplane" and ds.skipped == 0
    test = open_dataset(folder, resolution=32, split="test", **QUIET)
    np.testing.assert_array_equal(nhwc(test), xt)
    assert len(open_dataset(folder, resolution=32, split="all", **QUIET)) == 19
    # torchvision reads the very same files to the very same arrays (its md5 check aside)
    from torchvision.datasets import CIFAR10

    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *a, **k: True)
    tv = CIFAR10(str(tmp_path), train=True)
    np.testing.assert_array_equal(tv.data, nhwc(ds))
    assert tv.targets == y and tv.classes == ds.classes


def test_cifar_archive_name_and_bytes_keys(tmp_path):
    folder, x, y, xt = make_cifar(tmp_path / "src", bytes_keys=True)
    archive = tmp_path / "dl" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder, arcname="cifar-10-batches-py")
    by_path = open_dataset(str(archive), resolution=32, **QUIET)
    np.testing.assert_array_equal(nhwc(by_path), x)
    assert by_path.labels.tolist() == y
    # the named source finds either copy under its root, without downloading
    by_name = open_dataset("cifar10", resolution=32, root=str(archive.parent), download=False, **QUIET)
    assert torch.equal(by_name.images, by_path.images) and by_name.name == "cifar10"
    by_root = open_dataset("cifar10", resolution=32, split="test", root=str(tmp_path / "src"), **QUIET)
    np.testing.assert_array_equal(nhwc(by_root), xt)
    inline = open_dataset(f"cifar10:{tmp_path / 'src'}", resolution=32, split="test", **QUIET)
    assert torch.equal(inline.images, by_root.images)


def test_cifar_download_used_when_online(tmp_path, monkeypatch):
    src = tmp_path / "mirror"
    make_cifar(src)

    def fake_download(root, log=print):  # what torchvision's download leaves behind
        os.rename(src / "cifar-10-batches-py", os.path.join(root, "cifar-10-batches-py"))
        return os.path.join(root, "cifar-10-batches-py")

    monkeypatch.setattr(cifar_mod, "download", fake_download)
    monkeypatch.setenv("VITGAN_DATA", str(tmp_path / "cache"))
    os.makedirs(tmp_path / "cache")
    ds = open_dataset("cifar10", resolution=32, **QUIET)
    assert len(ds) == 15 and os.path.isdir(tmp_path / "cache" / "cifar-10-batches-py")


def test_cifar_resized_and_grey(tmp_path):
    folder, x, _, _ = make_cifar(tmp_path)
    big = open_dataset(folder, resolution=64, **QUIET)
    assert big.images.shape == (15, 3, 64, 64)
    assert_colour(big[3][:, 20:40, 20:40], tuple(int(v) for v in x[3, 16, 16]), tol=1)
    grey = open_dataset(folder, resolution=32, channels=1, **QUIET)
    r, g, b = (x[..., c].astype(np.int64) for c in range(3))
    luma = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16  # ITU-R 601, as PIL computes it
    np.testing.assert_array_equal(grey.images[:, 0].numpy(), luma)


# --------------------------------------------------------------------- folders and archives


def make_folder(root):
    """Class sub-folders, mixed formats and sizes, every image a solid colour."""
    files = {
        "cat/a.png": solid(COLOURS[0]),
        "cat/b.jpg": solid(COLOURS[1], (48, 40)),
        "cat/sub/c.bmp": solid(COLOURS[2], (20, 30)),
        "dog/d.webp": solid(COLOURS[3], (64, 64)),
        "dog/e.gif": solid(COLOURS[4]).convert("P"),
        "dog/f.tiff": solid(COLOURS[5], (33, 31)),
    }
    for name, img in files.items():
        fmt = {"jpg": "JPEG", "webp": "WEBP", "bmp": "BMP", "gif": "GIF", "tiff": "TIFF"}.get(name[-4:].lstrip("."), "PNG")
        kw = {"quality": 95} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
        write(os.path.join(root, name), encode(img, fmt, **kw))
    write(os.path.join(root, "dog", "notes.txt"), b"not an image, ignored")
    write(os.path.join(root, ".hidden.png"), encode(solid((1, 2, 3))))
    return sorted(files), [COLOURS[i] for i in range(6)]


def check_folder_dataset(ds, names):
    assert len(ds) == 6 and ds.skipped == 0
    assert ds.classes == ["cat", "dog"] and ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.images.shape == (6, 3, 32, 32) and ds.images.dtype == torch.uint8
    colours = dict(zip(names, COLOURS))
    for i, name in enumerate(sorted(names)):  # sorted path order
        assert_colour(ds[i], colours[name], tol=3 if name.endswith(".jpg") else 0)


def test_image_folder(tmp_path):
    names, _ = make_folder(tmp_path / "imgs")
    ds = open_dataset(str(tmp_path / "imgs"), resolution=32, **QUIET)
    check_folder_dataset(ds, names)
    assert ds.name == "imgs"


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tgz", ".zip"])
def test_archives_read_in_place(tmp_path, suffix):
    names, _ = make_folder(tmp_path / "imgs")
    archive = tmp_path / f"pics{suffix}"
    if suffix == ".zip":
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for root, _, files in os.walk(tmp_path / "imgs"):
                for f in files:
                    p = os.path.join(root, f)
                    zf.write(p, "pics/" + os.path.relpath(p, tmp_path / "imgs"))  # one wrapping folder
    else:
        with tarfile.open(archive, "w:gz" if "gz" in suffix else "w") as tf:
            tf.add(tmp_path / "imgs", arcname="pics")
    before = set(os.listdir(tmp_path))
    ds = open_dataset(str(archive), resolution=32, **QUIET)
    check_folder_dataset(ds, names)
    assert ds.name == "pics" and set(os.listdir(tmp_path)) == before  # nothing unpacked
    lazy = open_dataset(str(archive), resolution=32, in_memory=False, **QUIET)
    assert lazy.images is None and len(lazy) == 6
    for i in range(6):
        assert torch.equal(lazy[i], ds[i])


def test_train_test_subfolders(tmp_path):
    for split, n in (("train", 4), ("test", 2)):
        for i in range(n):
            c = "a" if i % 2 else "b"
            write(str(tmp_path / "d" / split / c / f"{i:04d}.png"), encode(solid((i, 50 if split == "test" else 0, 0))))
    train = open_dataset(str(tmp_path / "d"), resolution=32, **QUIET)
    test = open_dataset(str(tmp_path / "d"), resolution=32, split="test", **QUIET)
    both = open_dataset(str(tmp_path / "d"), resolution=32, split="all", **QUIET)
    assert (len(train), len(test), len(both)) == (4, 2, 6)
    assert train.classes == test.classes == ["a", "b"]
    assert [int(x[0, 0, 0]) for x in train] == [1, 3, 0, 2]  # a/0001, a/0003, b/0000, b/0002
    assert [int(x[1, 0, 0]) for x in test] == [50, 50] and train.labels.tolist() == [0, 0, 1, 1]
    assert len({train.fingerprint, test.fingerprint, both.fingerprint}) == 3


# ----------------------------------------------------------------------------- conversions


def test_geometry_centre_crop_and_resize(tmp_path):
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)  # H=32, W=64
    tall = rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)
    quad = np.zeros((64, 64, 3), np.uint8)
    quad[:32, :32], quad[:32, 32:], quad[32:, :32], quad[32:, 32:] = (255, 0, 0), (0, 255, 0), (0, 0, 255), 255
    for name, a in (("wide", wide), ("tall", tall), ("quad", quad)):
        write(str(tmp_path / "g" / f"{name}.png"), encode(Image.fromarray(a)))
    ds = open_dataset(str(tmp_path / "g"), resolution=32, **QUIET)
    quad_x, tall_x, wide_x = ds[0], ds[1], ds[2]
    # the shorter side already is the resolution: the centre crop, untouched
    np.testing.assert_array_equal(wide_x.permute(1, 2, 0).numpy(), wide[:, 16:48])
    np.testing.assert_array_equal(tall_x.permute(1, 2, 0).numpy(), tall[16:48])
    # 64 -> 32 keeps the quadrants where they were (no transpose, no flip)
    assert_colour(quad_x[:, 2:14, 2:14], (255, 0, 0), tol=2)
    assert_colour(quad_x[:, 2:14, 18:30], (0, 255, 0), tol=2)
    assert_colour(quad_x[:, 18:30, 2:14], (0, 0, 255), tol=2)
    assert_colour(quad_x[:, 18:30, 18:30], (255, 255, 255), tol=2)
    up = open_dataset(str(tmp_path / "g"), resolution=128, max_images=3, **QUIET)
    assert up.images.shape == (3, 3, 128, 128)
    assert_colour(up[0][:, 8:56, 8:56], (255, 0, 0), tol=1)


def test_colour_conversions(tmp_path):
    d = tmp_path / "c"
    write(str(d / "01_grey.png"), encode(solid(77, mode="L")))
    rgba = Image.new("RGBA", (32, 32), (0, 0, 255, 255))
    rgba.paste((255, 0, 0, 0), (0, 0, 32, 16))  # top half fully transparent: white
    write(str(d / "02_rgba.png"), encode(rgba))
    write(str(d / "03_half.png"), encode(Image.new("LA", (32, 32), (0, 128))))
    write(str(d / "04_16bit.png"), encode(Image.fromarray(np.full((32, 32), 65535, np.uint16))))
    write(str(d / "05_16bit_mid.tif"), encode(Image.fromarray(np.full((32, 32), 32896, np.uint16)), "TIFF"))
    pal = Image.new("P", (32, 32), 1)
    pal.putpalette([0, 0, 0, 12, 34, 56] + [0] * 762)
    write(str(d / "06_palette.png"), encode(pal))
    write(str(d / "07_palette_transparent.png"), encode(pal, transparency=1))
    write(str(d / "08_bilevel.png"), encode(Image.new("1", (32, 32), 1)))
    write(str(d / "09_cmyk.jpg"), encode(Image.new("CMYK", (32, 32), (0, 0, 0, 0)), "JPEG", quality=95))
    ds = open_dataset(str(d), resolution=32, **QUIET)
    assert ds.skipped == 0 and len(ds) == 9
    assert_colour(ds[0], (77, 77, 77))
    assert_colour(ds[1][:, :16], (255, 255, 255)) and assert_colour(ds[1][:, 16:], (0, 0, 255)) is None
    assert_colour(ds[2], (127, 127, 127), tol=1)  # black at alpha 128 over white
    assert_colour(ds[3], (255, 255, 255))
    assert_colour(ds[4], (128, 128, 128))  # 32896 / 257 = 128
    assert_colour(ds[5], (12, 34, 56))
    assert_colour(ds[6], (255, 255, 255))
    assert_colour(ds[7], (255, 255, 255))
    assert_colour(ds[8], (255, 255, 255), tol=2)
    grey = open_dataset(str(d), resolution=32, channels=1, **QUIET)
    assert grey.images.shape == (9, 1, 32, 32)
    assert_colour(grey[0], (77,)) is None and assert_colour(grey[1][:, 16:], (29,)) is None  # 0.114 * 255


def test_exif_orientation(tmp_path):
    img = Image.new("RGB", (64, 32), (255, 0, 0))
    img.paste((0, 0, 255), (32, 0, 64, 32))  # stored: left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: top red, bottom blue
    write(str(tmp_path / "e" / "a.jpg"), encode(img, "JPEG", quality=95, exif=exif))
    x = open_dataset(str(tmp_path / "e"), resolution=32, **QUIET)[0]
    assert_colour(x[:, 2:12, 4:28], (255, 0, 0), tol=6)
    assert_colour(x[:, 20:30, 4:28], (0, 0, 255), tol=6)


def test_npz_layouts_and_splits(tmp_path):
    x = cifar_images(5)
    np.savez(tmp_path / "nhwc.npz", x=x, y=np.arange(5))
    np.savez_compressed(tmp_path / "nchw.npz", images=x.transpose(0, 3, 1, 2))
    np.savez(tmp_path / "grey.npz", x[..., 0])
    np.savez(tmp_path / "split.npz", x_train=x[:3], y_train=np.array([4, 5, 6]), x_test=x[3:], y_test=np.array([1, 2]))
    a = open_dataset(str(tmp_path / "nhwc.npz"), resolution=32, **QUIET)
    b = open_dataset(str(tmp_path / "nchw.npz"), resolution=32, **QUIET)
    np.testing.assert_array_equal(nhwc(a), x)
    assert torch.equal(a.images, b.images) and a.labels.tolist() == [0, 1, 2, 3, 4] and b.labels is None
    g = open_dataset(str(tmp_path / "grey.npz"), resolution=32, **QUIET)
    np.testing.assert_array_equal(nhwc(g), np.repeat(x[..., :1], 3, axis=3))
    tr = open_dataset(str(tmp_path / "split.npz"), resolution=32, **QUIET)
    te = open_dataset(str(tmp_path / "split.npz"), resolution=32, split="test", **QUIET)
    np.testing.assert_array_equal(nhwc(te), x[3:])
    assert tr.labels.tolist() == [4, 5, 6] and te.labels.tolist() == [1, 2]
    lazy = open_dataset(str(tmp_path / "nchw.npz"), resolution=16, in_memory=False, **QUIET)
    mem = open_dataset(str(tmp_path / "nchw.npz"), resolution=16, **QUIET)
    assert lazy.images is None and all(torch.equal(lazy[i], mem[i]) for i in range(5))


# ---------------------------------------------------------------------------- LMDB (LSUN)


def make_lmdb(path, images, fmt="WEBP"):
    """LSUN's layout: key (hex id) -> encoded image bytes."""
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i, img in enumerate(images):
            kw = {"lossless": True} if fmt == "WEBP" else {"quality": 95}
            txn.put(f"{i:04x}{'ab' * 4}".encode(), encode(img, fmt, **kw))
    env.close()


def test_lmdb_lsun_style(tmp_path):
    imgs = [solid(c, (48 + 8 * i, 40)) for i, c in enumerate(COLOURS[:5])]
    make_lmdb(tmp_path / "bedroom_train_lmdb", imgs)
    make_lmdb(tmp_path / "bedroom_val_lmdb", imgs[:2], fmt="JPEG")
    ds = open_dataset(str(tmp_path / "bedroom_train_lmdb"), resolution=32, **QUIET)
    assert len(ds) == 5 and ds.name == "bedroom_train"
    for i in range(5):  # key order
        assert_colour(ds[i], COLOURS[i])
    named = open_dataset("lsun-bedroom", resolution=32, root=str(tmp_path), **QUIET)
    assert torch.equal(named.images, ds.images) and named.name == "lsun-bedroom"
    val = open_dataset("lsun-bedroom", resolution=32, split="test", root=str(tmp_path), **QUIET)
    assert len(val) == 2 and val.labels is None
    assert_colour(val[1], COLOURS[1], tol=3)
    data_file = open_dataset(str(tmp_path / "bedroom_train_lmdb" / "data.mdb"), resolution=32, **QUIET)
    assert torch.equal(data_file.images, ds.images)
    lazy = open_dataset(str(tmp_path / "bedroom_train_lmdb"), resolution=32, in_memory=False, **QUIET)
    assert all(torch.equal(lazy[i], ds[i]) for i in range(5))
    # worker processes inherit this process's open LMDB environment and must open their own
    loader = torch.utils.data.DataLoader(lazy, batch_size=2, num_workers=2)
    assert torch.equal(torch.cat(list(loader)), ds.images)


# ------------------------------------------------------------------------------- CelebA


def face(colour):
    """178x218 like aligned CelebA: ``colour`` in the 108x108 centre crop, grey around it."""
    img = Image.new("RGB", (178, 218), (128, 128, 128))
    img.paste(colour, (35, 55, 143, 163))
    return img


def test_celeba_layout_crop_and_partition(tmp_path):
    folder = tmp_path / "celeba" / "img_align_celeba"
    for i, c in enumerate(COLOURS[:5]):
        write(str(folder / f"{i + 1:06d}.jpg"), encode(face(c), "JPEG", quality=100, subsampling=0))
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text(
        "000001.jpg 0\n000002.jpg 0\n000003.jpg 1\n000004.jpg 2\n000005.jpg 0\n"
    )
    train = open_dataset("celeba", resolution=16, root=str(tmp_path), download=False, **QUIET)
    assert train.name == "celeba" and len(train) == 3 and train.images.shape == (3, 3, 16, 16)
    for x, c in zip(train, (COLOURS[0], COLOURS[1], COLOURS[4])):
        assert_colour(x, c, tol=4)  # only the face crop: no grey border
    test = open_dataset("celeba", resolution=16, split="test", root=str(tmp_path), **QUIET)
    assert len(test) == 1 and assert_colour(test[0], COLOURS[3], tol=4) is None
    # the img_align_celeba folder itself, and its zip, are recognised by name
    by_folder = open_dataset(str(folder), resolution=16, **QUIET)
    assert torch.equal(by_folder.images, train.images)
    with zipfile.ZipFile(tmp_path / "img_align_celeba.zip", "w") as zf:
        for f in sorted(os.listdir(folder)):
            zf.write(folder / f, f"img_align_celeba/{f}")
    by_zip = open_dataset(str(tmp_path / "img_align_celeba.zip"), resolution=16, split="all", **QUIET)
    assert len(by_zip) == 5 and torch.equal(by_zip.images[[0, 1, 4]], train.images)


# ------------------------------------------------------------------ memory, fingerprints


def test_max_images_subset_and_fingerprint(tmp_path):
    d = tmp_path / "many"
    for i in range(20):
        write(str(d / f"{i:03d}.png"), encode(solid((i, 0, 0), (8, 8))))
    full = open_dataset(str(d), resolution=8, **QUIET)
    sub = open_dataset(str(d), resolution=8, max_images=6, **QUIET)
    reds = [int(x[0, 0, 0]) for x in sub]
    assert len(sub) == 6 and reds == sorted(reds) and len(set(reds)) == 6  # a subset, in order
    again = open_dataset(str(d), resolution=8, max_images=6, **QUIET)
    assert torch.equal(again.images, sub.images) and again.fingerprint == sub.fingerprint
    prints = {full.fingerprint, sub.fingerprint, open_dataset(str(d), resolution=16, **QUIET).fingerprint,
              open_dataset(str(d), resolution=8, channels=1, **QUIET).fingerprint}
    assert len(prints) == 4
    assert open_dataset(str(d), resolution=8, **QUIET).fingerprint == full.fingerprint
    write(str(d / "005.png"), encode(solid((200, 1, 1), (9, 9))))  # content changed
    assert open_dataset(str(d), resolution=8, **QUIET).fingerprint != full.fingerprint


def test_lazy_dataset_in_dataloader_workers(tmp_path):
    names, _ = make_folder(tmp_path / "imgs")
    with tarfile.open(tmp_path / "p.tar", "w") as tf:
        tf.add(tmp_path / "imgs", arcname=".")
    mem = open_dataset(str(tmp_path / "p.tar"), resolution=32, **QUIET)
    lazy = open_dataset(str(tmp_path / "p.tar"), resolution=32, in_memory=False, **QUIET)
    loader = torch.utils.data.DataLoader(lazy, batch_size=3, num_workers=2)
    got = torch.cat(list(loader))
    assert torch.equal(got, mem.images)


def test_real_cifar_jpeg_archive_test_split(cifar_archive):
    ds = open_dataset(str(cifar_archive), resolution=32, split="test", max_images=200, **QUIET)
    assert len(ds) == 200 and ds.images.shape == (200, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.skipped == 0 and ds.name == "cifar10-yk-jpeg"
    assert ds.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert ds.labels.tolist() == sorted(ds.labels.tolist()) and len(set(ds.labels.tolist())) == 10
    assert ds.images.float().std() > 30  # real pictures, not blanks
    again = open_dataset(str(cifar_archive), resolution=32, split="test", max_images=200, **QUIET)
    assert torch.equal(again.images, ds.images) and torch.equal(again.labels, ds.labels)
    assert again.fingerprint == ds.fingerprint


def test_fingerprint_follows_content_not_place_or_time(tmp_path, cifar_archive):
    """A copy elsewhere with new file times is the same data (a resumed run, a stats cache);
    the same path and file times with other pixels is not, in memory or read lazily."""
    import os
    import shutil

    copy = tmp_path / "elsewhere" / cifar_archive.name
    copy.parent.mkdir()
    shutil.copyfile(cifar_archive, copy)
    os.utime(copy, (1, 1))
    for in_memory in (True, False):
        a = open_dataset(str(cifar_archive), resolution=32, max_images=50, in_memory=in_memory, **QUIET)
        b = open_dataset(str(copy), resolution=32, max_images=50, in_memory=in_memory, **QUIET)
        assert a.fingerprint == b.fingerprint
    tar = tmp_path / "t.tar"
    prints = []
    for colour in ((10, 20, 30), (10, 20, 31)):
        for i in range(3):
            write(str(tmp_path / "img" / f"{i}.png"), encode(solid(colour, (8, 8))))
        with tarfile.open(tar, "w") as tf:
            tf.add(tmp_path / "img", arcname=".")
        os.utime(tar, (1, 1))
        prints.append([open_dataset(str(tar), resolution=8, in_memory=m, **QUIET).fingerprint
                       for m in (True, False)])
    assert prints[0][0] != prints[1][0] and prints[0][1] != prints[1][1]
