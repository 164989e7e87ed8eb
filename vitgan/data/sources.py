"""Where images come from: one small class per storage format, all with the same interface.

A ``Source`` is an ordered list of items. ``read(i)`` returns item ``i``'s payload (encoded image
bytes, a file path, or a HWC uint8 array) for ``vitgan.data.image.decode``; ``iter_read()``
yields ``(i, payload)`` for every item in the order cheapest for the storage (archive order for
tar files, key order for LMDB). Handles (zip, tar, LMDB) are opened lazily and reopened after a
fork, so a source can be handed to DataLoader worker processes.

Formats: a folder of images (recursive; class sub-folders allowed), .zip, .tar / .tar.gz / .tgz /
.tar.bz2 / .tar.xz (read in place, never unpacked to disk; ``vitgan.data.archives``), an LMDB of encoded images (LSUN's
format: key -> webp/jpeg bytes), and uint8 arrays (.npz files, CIFAR-10 pickle batches).

Errors that concern the whole source (missing, empty, corrupt archive, unreadable LMDB) raise
``UserError`` when the source is opened; a single unreadable image is the caller's to skip.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import tarfile
import zipfile
import zlib

import numpy as np

from vitgan.data.image import is_image_name
from vitgan.data.labels import check_labels
from vitgan.errors import UserError, one_line

SPLITS = ("train", "test", "all")
_SPLIT_DIRS = {"train": ("train",), "test": ("test", "val", "valid", "validation")}
_ALL_SPLIT_DIRS = {d for dirs in _SPLIT_DIRS.values() for d in dirs}
ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz")
LAZY_ARCHIVE_LIMIT = 4 << 30  # bytes of a compressed tar's members held in memory when lazy


def file_identity(path: str, sample: int = 1 << 20) -> dict:
    """What a file holds, not where it lies or when it was touched (a copy or a remount keeps it):
    its size and a digest of five ``sample``-byte pieces (start, quarters, end)."""
    size, digest = os.stat(path).st_size, hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for at in sorted({0, size // 4, size // 2, 3 * size // 4, max(size - sample, 0)}):
            f.seek(at)
            digest.update(f.read(sample))
    return {"size": size, "sample": digest.hexdigest()}


def split_names(names: list[str], split: str, where: str) -> tuple[list[str], list[int] | None, list[str] | None]:
    """Pick a split from relative image paths; return (sorted names, labels, class names).

    A single folder wrapping everything (``archive/...``) is looked through. If the top level
    holds ``train/`` or ``test/`` (``val/`` counts as test), those folders are the splits;
    otherwise "train" is everything and "test" is an error. The first folder level below the
    split (or below the top) names the class when every image lies in one.
    """
    parts = [n.split("/") for n in sorted(names)]
    depth = 0
    while (
        parts
        and all(len(p) > depth + 1 for p in parts)
        and len({p[depth] for p in parts}) == 1
        and parts[0][depth].lower() not in _ALL_SPLIT_DIRS
    ):
        depth += 1
    tops = {p[depth].lower() for p in parts if len(p) > depth + 1}
    found = sorted(tops & _ALL_SPLIT_DIRS)
    if not found:
        if split == "test":
            raise UserError(
                f"{where} has no test/ (or val/) sub-folder, so it has no test split; "
                "use split 'train' (all its images) or give it train/ and test/ sub-folders"
            )
        chosen, base = parts, depth
    elif split == "all":
        chosen = [p for p in parts if len(p) > depth + 1 and p[depth].lower() in _ALL_SPLIT_DIRS]
        base = depth + 1
    else:
        wanted = next((d for d in _SPLIT_DIRS[split] if d in tops), None)
        if wanted is None:
            raise UserError(
                f"{where} has no {split}/ sub-folder (it has {', '.join(f + '/' for f in found)}); "
                f"use split '{'train' if split == 'test' else 'test'}' or add a {split}/ sub-folder"
            )
        chosen = [p for p in parts if len(p) > depth + 1 and p[depth].lower() == wanted]
        base = depth + 1
    labels = classes = None
    if chosen and all(len(p) > base + 1 for p in chosen):
        classes = sorted({p[base] for p in chosen})
        index = {c: k for k, c in enumerate(classes)}
        labels = [index[p[base]] for p in chosen]
    return ["/".join(p) for p in chosen], labels, classes


class Source:
    """Base class: an ordered list of image payloads."""

    kind = "source"
    crop: str | None = None  # "celeba" for the CelebA face crop

    def __init__(self, path: str, name: str):
        self.path = path
        self.name = name
        self.names: list[str] = []  # one identifier per item, for messages
        self.labels: list[int] | None = None
        self.classes: list[str] | None = None
        self._pid = None

    def __len__(self) -> int:
        return len(self.names)

    def identity(self) -> dict:
        return {"kind": self.kind, **file_identity(self.path)}

    def subset(self, indices) -> None:
        """Keep only ``indices`` (increasing), in place."""
        indices = list(indices)
        self.names = [self.names[i] for i in indices]
        if self.labels is not None:
            self.labels = [self.labels[i] for i in indices]
        self._subset(indices)

    def _subset(self, indices) -> None:
        pass

    def read(self, i: int):
        raise NotImplementedError

    def iter_read(self):
        for i in range(len(self)):
            yield i, self.read(i)

    def as_array(self):
        """The items as one uint8 NHWC array, when the source already holds them so."""
        return None

    # handles are per process: dropped when pickled, reopened after fork
    def _handle(self):
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._open()
        return self

    def _open(self) -> None:
        pass

    def close(self) -> None:
        self._pid = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_pid"] = None
        for key in getattr(self, "_handles", ()):
            state[key] = None
        return state


class FolderSource(Source):
    """A folder of images, searched recursively; hidden files and non-image files are ignored."""

    kind = "folder"

    def __init__(self, path: str, split: str, name: str | None = None, filter_names=None):
        super().__init__(path, name or os.path.basename(os.path.normpath(path)))
        found, seen = [], set()
        self.special: list[str] = []  # image-named entries that are not regular files: skipped, said
        for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:  # a symlink loop
                dirnames[:] = []
                continue
            seen.add(real)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = os.path.relpath(dirpath, path).replace(os.sep, "/")
            for f in filenames:
                name_ = f if rel == "." else f"{rel}/{f}"
                if is_image_name(name_) and (filter_names is None or filter_names(name_)):
                    if _regular(os.path.join(dirpath, f)):
                        found.append(name_)
                    else:  # a FIFO would block the reader forever; a device or socket is no image
                        self.special.append(name_)
        if not found:
            raise UserError(
                f"{path}: no images found (looked for {', '.join(sorted(_EXT_SHOWN))} files, "
                "recursively); point --data at a folder that contains images"
            )
        self.names, self.labels, self.classes = split_names(found, split, path)

    def identity(self) -> dict:
        digest = hashlib.sha256()
        for n in self.names:
            try:
                digest.update(f"{n}\0{os.stat(os.path.join(self.path, n)).st_size}\n".encode())
            except OSError:
                digest.update(f"{n}\0missing\n".encode())
        # names and sizes, not mtimes or the path (in memory: pixels, ImageDataset._fingerprint)
        return {"kind": self.kind, "files": digest.hexdigest()}

    def read(self, i: int):
        return os.path.join(self.path, self.names[i])


def _regular(path: str) -> bool:
    """A regular file (through symlinks); False for FIFOs, devices, sockets and broken links."""
    import stat

    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


_EXT_SHOWN = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif")


def _strip_suffix(base: str) -> str:
    low = base.lower()
    for suffix in TAR_SUFFIXES + (".zip", ".npz", ".mdb", ".lmdb", "_lmdb"):
        if low.endswith(suffix):
            return base[: -len(suffix)]
    return base


_LMDB_ENVS: dict[str, tuple[int, object]] = {}  # real path -> (pid, environment)


def lmdb_env(path: str, subdir: bool):
    """One read-only environment per LMDB per process (LMDB forbids opening one twice in a process).

    An environment inherited through fork (DataLoader workers) is closed in the child and opened
    afresh, as LMDB requires.
    """
    import lmdb

    key = os.path.realpath(os.path.join(path, "data.mdb") if subdir else path)
    pid = os.getpid()
    entry = _LMDB_ENVS.get(key)
    if entry is not None and entry[0] == pid:
        return entry[1]
    if entry is not None:
        try:
            entry[1].close()
        except Exception:
            pass
    env = lmdb.open(path, subdir=subdir, readonly=True, lock=False, readahead=False, meminit=False, max_readers=512)
    _LMDB_ENVS[key] = (pid, env)
    return env


class LmdbSource(Source):
    """An LMDB whose values are encoded images (LSUN's format, as torchvision's LSUN reads it).

    ``path`` is the LMDB directory (holding data.mdb) or the data file itself. Items are in key
    order; keys starting with ``__`` (metadata by convention) are ignored.
    """

    kind = "lmdb"

    def __init__(self, path: str, name: str | None = None):
        if os.path.basename(path) == "data.mdb":  # the data file of an LMDB folder: open the folder
            path = os.path.dirname(os.path.abspath(path))
        super().__init__(path, name or _strip_suffix(os.path.basename(os.path.normpath(path))))
        self._subdir = os.path.isdir(path)
        try:
            with self._env().begin(write=False) as txn:
                keys = [bytes(k) for k in txn.cursor().iternext(keys=True, values=False)]
        except Exception as err:  # lmdb.Error and its many subclasses, OSError
            raise UserError(one_line(
                f"cannot read LMDB {path}: {type(err).__name__}: {err}; the database is corrupt or "
                "incomplete: copy or download it again (LSUN: the unzipped <category>_train_lmdb folder)"
            )) from None
        self._keys = [k for k in keys if not k.startswith(b"__")]
        if not self._keys:
            raise UserError(f"LMDB {path} is empty (no image entries); point --data at an LMDB of encoded images")
        base = os.path.basename(os.path.normpath(path))
        self.names = [f"{base}[{k.decode('latin1')}]" for k in self._keys]

    def _env(self):
        return lmdb_env(self.path, self._subdir)

    def identity(self) -> dict:
        data = os.path.join(self.path, "data.mdb") if self._subdir else self.path
        return {"kind": self.kind, **file_identity(data), "entries": len(self._keys)}

    def _subset(self, indices):
        self._keys = [self._keys[i] for i in indices]

    def read(self, i: int):
        with self._env().begin(write=False) as txn:
            value = txn.get(self._keys[i])
        if value is None:
            raise KeyError(f"key {self._keys[i]!r} vanished")
        return bytes(value)

    def iter_read(self):
        with self._env().begin(write=False) as txn:
            for i, key in enumerate(self._keys):
                value = txn.get(key)
                yield i, b"" if value is None else bytes(value)


class ArraySource(Source):
    """Images already decoded into a uint8 NHWC array (from .npz files or CIFAR-10 batches)."""

    kind = "array"

    def __init__(self, path: str, name: str, array: np.ndarray, identity: dict, labels=None, classes=None,
                 label_where: str | None = None):
        super().__init__(path, name)
        self.array = array
        self._identity = identity
        self.names = [f"{name}[{i}]" for i in range(len(array))]
        self.labels = None if labels is None else check_labels(
            labels, label_where or path, classes=classes,
            fix="fix them, or leave them out (a run without cond=true needs no labels)")
        self.classes = classes

    def identity(self) -> dict:
        return self._identity

    def _subset(self, indices):
        self.array = self.array[np.asarray(indices, dtype=np.int64)]

    def read(self, i: int):
        return self.array[i]

    def as_array(self):
        return self.array


_NPZ_IMAGE_KEYS = ("x", "images", "image", "imgs", "data", "arr_0", "x_train", "train")


def open_npz(path: str, split: str) -> ArraySource:
    """A .npz file holding uint8 images, NHWC, NCHW or NHW (grey).

    With several arrays, the split is picked by name (``x_train`` / ``x_test``, ``train`` /
    ``test``, ...); labels come from ``y`` / ``labels`` (``y_<split>``) when present.
    """
    if not zipfile.is_zipfile(path):
        raise UserError(
            f"cannot read .npz {path}: not a numpy .npz archive (corrupt or another format); "
            "write it again with np.savez(path, x=images)"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as err:
        raise UserError(one_line(
            f"cannot read {path}: {err}; save the images as a plain uint8 array with np.savez(path, x=images)"
        )) from None
    except Exception as err:
        raise UserError(one_line(
            f"cannot read .npz {path}: {type(err).__name__}: {err}; the file is corrupt or not a numpy "
            "archive: write it again with np.savez(path, x=images)"
        )) from None
    images = {k: a for k, a in arrays.items() if a.ndim in (3, 4) and len(a)}
    if not images:
        shapes = ", ".join(f"{k}{tuple(a.shape)}" for k, a in arrays.items()) or "nothing"
        raise UserError(
            f"{path} holds no image array ({shapes}); save uint8 images of shape (N, H, W, C) or "
            "(N, C, H, W) with np.savez(path, x=images)"
        )
    named = {k: a for k, a in images.items() if any(s in k.lower() for s in ("train", "test"))}
    if named and split != "all":
        keys = [k for k in named if split in k.lower()]
        if not keys:
            raise UserError(f"{path} has no {split} array (it has {', '.join(sorted(named))}); use another split")
        key = sorted(keys, key=len)[0]
    else:
        if split == "test":
            raise UserError(
                f"{path} has no test array (name one x_test, or pass a separate file); use split 'train'"
            )
        key = next((k for k in _NPZ_IMAGE_KEYS if k in images), sorted(images)[0])
    a = images[key]
    if a.dtype != np.uint8:
        raise UserError(
            f"{path}: array '{key}' has dtype {a.dtype}; vitgan reads uint8 images (0..255): save "
            "np.clip(x * 255, 0, 255).round().astype(np.uint8) instead"
        )
    if a.ndim == 3:
        a = a[..., None]
    elif a.shape[-1] not in (1, 3, 4) and a.shape[1] in (1, 3, 4):
        a = a.transpose(0, 2, 3, 1)  # NCHW -> NHWC (a view)
    if a.shape[-1] not in (1, 3, 4):
        raise UserError(
            f"{path}: array '{key}' of shape {tuple(images[key].shape)} is neither NHWC nor NCHW with "
            "1, 3 or 4 channels; save images as (N, H, W, C) uint8"
        )
    labels = None
    for k in ([key.replace("x", "y", 1)] if key.startswith("x") else []) + ["y", "labels", f"y_{split}"]:
        if k in arrays and arrays[k].ndim == 1 and len(arrays[k]) == len(a) and k != key:
            labels, label_key = arrays[k], k
            break
    identity = {"kind": "npz", **file_identity(path), "key": key}
    return ArraySource(path, _strip_suffix(os.path.basename(path)), a, identity, labels=labels,
                       label_where=f"{path}: array '{label_key}'" if labels is not None else None)
