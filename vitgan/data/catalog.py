"""Turn a ``--data`` string into a Source: a named dataset or a path, detected by its type.

Named datasets (their local copies live under the data root: ``root=``, else ``$VITGAN_DATA``,
else ``~/.cache/vitgan/data``; ``NAME:PATH`` sets the root inline):

- ``cifar10``: torchvision's CIFAR-10 (``cifar-10-batches-py/`` or ``cifar-10-python.tar.gz``),
  downloaded into the root when missing and the machine is online.
- ``celeba``: aligned CelebA, torchvision's layout (``<root>/celeba/img_align_celeba/`` and
  ``list_eval_partition.txt``), or ``img_align_celeba/`` / ``img_align_celeba.zip`` directly;
  the 108x108 centre face crop, then resized. Splits follow list_eval_partition (train = 0,
  test = 2, all = everything); without that file, train = all images.
- ``lsun-<category>`` (e.g. ``lsun-bedroom``): ``<category>_train_lmdb`` (test: ``_val_lmdb``)
  as LSUN distributes it and torchvision's LSUN class reads it. Not downloaded (43 GB).

Paths: a folder of images; .zip; .tar/.tar.gz/.tgz/.tar.bz2/.tar.xz; .npz; an LMDB folder
(holding data.mdb) or .mdb file; a CIFAR-10 batches folder or archive (found by its members).
An archive's type is read from its first bytes (a zip named .tar.gz is read as the zip it is), and
a tar archive is verified end to end as it is listed (``vitgan.data.archives.list_tar``).
"""

from __future__ import annotations

import os
import socket
import tarfile
import zipfile

from vitgan.data import cifar
from vitgan.data.image import is_image_name
from vitgan.data.archives import (TarSource, ZipSource, _archive_error, _member_error, list_tar,
                                  not_an_archive, sniff)
from vitgan.data.labels import LABEL_FILE, apply_label_file
from vitgan.data.sources import (
    ARCHIVE_ERRORS,
    TAR_SUFFIXES,
    FolderSource,
    LmdbSource,
    Source,
    one_line,
    open_npz,
)
from vitgan.errors import UserError

NAMED = ("cifar10", "celeba", "lsun-bedroom")
PATH_FORMATS = (
    "a folder of images (class sub-folders allowed), a .zip / .tar / .tar.gz / .tgz archive of "
    "images, a .npz of uint8 arrays, an LMDB (folder with data.mdb) or a CIFAR-10 copy "
    "(cifar-10-batches-py/ or cifar-10-python.tar.gz)"
)
FORMATS = f"{PATH_FORMATS}, or one of: {', '.join(NAMED)}"
CELEBA_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"


def data_root(root: str | None) -> str:
    root = root or os.environ.get("VITGAN_DATA") or os.path.join("~", ".cache", "vitgan", "data")
    return os.path.abspath(os.path.expanduser(root))


def open_source(source: str, *, split: str, download: bool = True, root: str | None = None, log=print) -> Source:
    """Resolve ``source`` (a dataset name, ``NAME:ROOT`` or a path) into a Source."""
    text = str(source).strip()
    key, _, inline = text.partition(":")
    name = key.lower().replace("_", "-")
    if inline and (name in ("cifar10", "cifar-10", "celeba") or name.startswith("lsun-")):
        root = inline
    elif inline:
        name = ""
    if name in ("cifar10", "cifar-10"):
        return cifar.open_cifar10(data_root(root), split, download, log)
    if name == "celeba":
        return open_celeba(data_root(root), split, download, log)
    if name.startswith("lsun-") and not os.path.exists(text):
        return open_lsun(name[len("lsun-"):], data_root(root), split)
    return open_path(text, split)


def open_path(path: str, split: str) -> Source:
    """A Source for a path, by what the path is."""
    path = os.path.expanduser(path)
    if not os.path.exists(path):
        looks_named = os.sep not in path and "." not in os.path.basename(path)
        hint = f"name a dataset ({', '.join(NAMED)}) or " if looks_named else ""
        raise UserError(f"{path} does not exist; {hint}pass the path of {PATH_FORMATS}")
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "data.mdb")):
            return LmdbSource(path)
        if cifar.is_cifar_dir(path):
            return cifar.read_cifar(path, split, name="cifar10")
        if cifar.is_cifar_dir(os.path.join(path, cifar.FOLDER)):
            return cifar.read_cifar(os.path.join(path, cifar.FOLDER), split, name="cifar10")
        if _celeba_images(path) is not None:
            return open_celeba(path, split, False, print)
        src = FolderSource(path, split)
        label_file = os.path.join(path, LABEL_FILE)
        if os.path.isfile(label_file):
            with open(label_file, "rb") as f:
                apply_label_file(src, f.read(), label_file)
        return src
    if not os.path.isfile(path):
        raise UserError(f"{path} is not a regular file or folder; pass the path of {FORMATS}")
    if not os.access(path, os.R_OK):
        raise UserError(f"{path} is not readable (permission denied); fix its permissions or copy it")
    low = path.lower()
    base = os.path.basename(low)
    if low.endswith(".npz"):
        return open_npz(path, split)
    if low.endswith(".mdb"):
        return LmdbSource(path, name=os.path.basename(os.path.dirname(os.path.abspath(path))))
    kind = sniff(path)  # archives by their first bytes, whatever their name says
    if kind == "zip":
        return _open_zip(path, split)
    if kind in ("gzip", "bzip2", "xz", "tar"):
        return _open_tar(path, split)
    if low.endswith(TAR_SUFFIXES) or low.endswith(".zip"):
        raise not_an_archive(path, kind, "a zip archive" if low.endswith(".zip") else "a tar archive")
    if is_image_name(base):
        raise UserError(f"{path} is a single image; pass the folder that holds the images")
    raise UserError(f"{path}: unknown data format (neither its name nor its content, {kind}, is one "
                    f"vitgan reads); pass {FORMATS}")


def _open_zip(path: str, split: str) -> Source:
    if os.path.basename(path).lower().startswith("img_align_celeba"):
        return open_celeba(path, split, False, print)
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except Exception as err:
        raise _archive_error(path, err) from None
    if any(cifar.is_cifar_member(n) for n in names):
        return cifar.read_cifar(path, split, name="cifar10")
    src = ZipSource(path, split)
    if LABEL_FILE in names:
        try:
            with zipfile.ZipFile(path) as zf:
                labels = zf.read(LABEL_FILE)
        except ARCHIVE_ERRORS as err:
            raise _member_error(path, LABEL_FILE, err) from None
        apply_label_file(src, labels, f"{path}:{LABEL_FILE}")
    return src


def _open_tar(path: str, split: str) -> Source:
    members = list_tar(path)
    if any(m.isfile() and cifar.is_cifar_member(m.name) for m in members):
        return cifar.read_cifar(path, split, name="cifar10")
    src = TarSource(path, split, members=members)
    label_member = next((m for m in members if m.isfile()
                         and m.name in (LABEL_FILE, f"./{LABEL_FILE}")), None)
    if label_member is not None:
        apply_label_file(src, _read_tar_member(path, label_member), f"{path}:{LABEL_FILE}")
    return src


def _read_tar_member(path: str, member) -> bytes:
    try:
        with tarfile.open(path, "r:*") as tf:
            return tf.extractfile(member).read()
    except ARCHIVE_ERRORS as err:
        raise _archive_error(path, err) from None


# ---------------------------------------------------------------------------------- CelebA


def _celeba_images(root: str, lenient: bool = False) -> str | None:
    """The img_align_celeba folder or zip at or under ``root``, if any; ``lenient``: or ``root``
    itself when it is a zip or a folder holding images (named CelebA by the user)."""
    base = os.path.basename(os.path.normpath(root)).lower()
    if base.startswith("img_align_celeba"):
        return root
    for sub in ("", "celeba"):
        for name in ("img_align_celeba", "img_align_celeba.zip"):
            p = os.path.join(root, sub, name)
            if os.path.exists(p):
                return p
    if not lenient:
        return None
    if os.path.isfile(root) and root.lower().endswith(".zip"):
        return root  # a zip of faces under another name
    if os.path.isdir(root) and any(is_image_name(e.name) for e in os.scandir(root) if e.is_file()):
        return root  # a folder of faces under another name
    return None


def _partitions(images: str) -> dict[str, int] | None:
    """image file name -> partition (0 train, 1 valid, 2 test) from list_eval_partition."""
    here = os.path.dirname(os.path.abspath(os.path.normpath(images)))
    for folder in (here, os.path.dirname(here)):
        for name in ("list_eval_partition.txt", "list_eval_partition.csv"):
            p = os.path.join(folder, name)
            if os.path.isfile(p):
                out = {}
                with open(p, encoding="utf-8", errors="replace") as f:
                    for line in f:
                        fields = line.replace(",", " ").split()
                        if len(fields) == 2 and fields[1].isdigit():
                            out[fields[0]] = int(fields[1])
                return out
    return None


def _download_celeba(root: str, log) -> None:
    import torchvision

    log(f"downloading CelebA (1.4 GB, from Google Drive) to {root}")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(60)
    try:
        torchvision.datasets.CelebA(root, split="all", target_type=[], download=True)
    finally:
        socket.setdefaulttimeout(previous)


def open_celeba(root: str, split: str, download: bool, log=print) -> Source:
    images = _celeba_images(root, lenient=True)
    reason = "download disabled"
    if images is None and download:
        try:
            _download_celeba(root, log)
            images = _celeba_images(root)
        except Exception as err:
            reason = one_line(f"download failed: {type(err).__name__}: {err}")
    if images is None:
        raise UserError(
            f"CelebA is not in {root} ({reason}); download img_align_celeba.zip and "
            f"list_eval_partition.txt from {CELEBA_URL} and pass --data /path/to/img_align_celeba.zip "
            "(or the unzipped img_align_celeba/ folder)"
        )
    parts = _partitions(images)
    keep = None
    if split != "all" and parts is not None:
        wanted = 0 if split == "train" else 2
        keep = lambda n: parts.get(n.rsplit("/", 1)[-1]) == wanted  # noqa: E731
    elif split == "test":
        raise UserError(
            f"{images}: the CelebA test split needs list_eval_partition.txt next to the images; "
            "add it (from the CelebA site) or use split 'train' (all images)"
        )
    cls = ZipSource if os.path.isfile(images) else FolderSource
    src = cls(images, "all", name="celeba", filter_names=keep)
    src.crop = "celeba"
    src.classes = src.labels = None
    return src


# ------------------------------------------------------------------------------------ LSUN


def open_lsun(category: str, root: str, split: str) -> Source:
    sub = "val" if split == "test" else "train"
    folder = f"{category}_{sub}_lmdb"
    candidates = [root, os.path.join(root, folder), os.path.join(root, "lsun", folder)]
    for p in candidates:
        if os.path.isfile(os.path.join(p, "data.mdb")):
            return LmdbSource(p, name=f"lsun-{category}")
    raise UserError(
        f"LSUN {category} ({sub}) is not in {root} (looked for {folder}/data.mdb); it is not downloaded "
        f"automatically: get {folder}.zip from http://dl.yf.io/lsun/scenes/ (LSUN's download.py -c "
        f"{category}), unzip it and pass --data /path/to/{folder}"
    )
