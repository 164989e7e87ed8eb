"""CIFAR-10 in torchvision's format: ``cifar-10-batches-py/`` or ``cifar-10-python.tar.gz``.

The batches are Python pickles (``data_batch_1`` .. ``data_batch_5`` = train, ``test_batch`` =
test, ``batches.meta`` = class names); each holds ``data``, a uint8 (N, 3072) array of
3x32x32 images in CHW order, and ``labels``. A pickle can run code when loaded, so these are
read with an unpickler that only builds plain containers and numpy arrays and refuses anything
else. The ``cifar10`` source finds a local copy under the data root, or downloads the official
archive there (as torchvision's ``CIFAR10(download=True)`` does) when the machine is online.
"""

from __future__ import annotations

import io
import os
import pickle
import socket
import tarfile
import zipfile

import numpy as np

from vitgan.data.archives import _archive_error, list_tar
from vitgan.data.sources import ARCHIVE_ERRORS, ArraySource, file_identity, one_line
from vitgan.errors import UserError
from vitgan.files import publish

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
BATCHES = {
    "train": [f"data_batch_{k}" for k in range(1, 6)],
    "test": ["test_batch"],
    "all": [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"],
}
META = "batches.meta"
HOW_TO = (
    f"download {URL} (163 MB) on a machine that is online and pass --data "
    f"/path/to/{ARCHIVE} or /path/to/{FOLDER}/ (or put either in $VITGAN_DATA)"
)


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as fn
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct as fn
    return fn


def _scalar():
    try:
        from numpy._core.multiarray import scalar as fn
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar as fn
    return fn


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: __import__("codecs").encode,  # how protocol 2 stores bytes
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        make = _ALLOWED.get((module, name))
        if make is None:
            raise pickle.UnpicklingError(f"it asks to load {module}.{name}, which a CIFAR batch never does")
        return make()


def load_batch(data: bytes, where: str) -> dict:
    """Unpickle one CIFAR batch safely; keys are returned as str."""
    try:
        obj = _SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as err:
        raise UserError(one_line(
            f"{where} is not a readable CIFAR-10 batch ({err}); refusing it: download CIFAR-10 again ({URL})"
        )) from None
    if not isinstance(obj, dict):
        raise UserError(f"{where} is not a CIFAR-10 batch (a {type(obj).__name__}, not a dict); download it again")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_files(path: str, wanted: list[str]) -> dict[str, bytes]:
    """Read the named batch files from a folder, a tar (any compression) or a zip."""
    out: dict[str, bytes] = {}
    if os.path.isdir(path):
        for name in wanted:
            p = os.path.join(path, name)
            if os.path.isfile(p):
                with open(p, "rb") as f:
                    out[name] = f.read()
        return out
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    base = info.filename.rsplit("/", 1)[-1]
                    if base in wanted and base not in out:
                        out[base] = zf.read(info)
        else:
            list_tar(path)  # verified end to end (tarfile alone stops at a damaged header silently)
            with tarfile.open(path, "r:*") as tf:
                for m in tf:
                    base = m.name.rsplit("/", 1)[-1]
                    if m.isfile() and base in wanted and base not in out:
                        out[base] = tf.extractfile(m).read()
    except ARCHIVE_ERRORS as err:
        raise _archive_error(path, err) from None
    return out


def is_cifar_dir(path: str) -> bool:
    return os.path.isdir(path) and any(
        os.path.isfile(os.path.join(path, n)) for n in ("data_batch_1", "test_batch", META)
    )


def is_cifar_member(name: str) -> bool:
    return name.rsplit("/", 1)[-1] in ("data_batch_1", "test_batch") and "cifar-10" in name


def read_cifar(path: str, split: str, name: str = "cifar10") -> ArraySource:
    """CIFAR-10 batches from ``path`` (a batches folder or an archive holding one)."""
    wanted = BATCHES[split]
    files = _read_files(path, wanted + [META])
    missing = [n for n in wanted if n not in files]
    if missing:
        raise UserError(
            f"{path} lacks {', '.join(missing)} (a CIFAR-10 copy holds data_batch_1..5, test_batch and "
            f"{META}); {HOW_TO}"
        )
    arrays, labels = [], []
    for batch in wanted:
        where = f"{path}/{batch}" if os.path.isdir(path) else f"{path}:{batch}"
        d = load_batch(files[batch], where)
        data = d.get("data")
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise UserError(f"{where} has no uint8 (N, 3072) 'data' array, so it is not CIFAR-10; download it again")
        arrays.append(data)
        labels.extend(d.get("labels", d.get("fine_labels", [])))
    data = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # NHWC view of NCHW memory
    classes = None
    if META in files:
        meta = load_batch(files[META], f"{path}:{META}")
        names = meta.get("label_names")
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names] if names else None
    if os.path.isdir(path):
        identity = {"kind": "cifar", "files": [file_identity(os.path.join(path, b)) for b in wanted]}
    else:
        identity = {"kind": "cifar", **file_identity(path)}
    return ArraySource(path, name, images, identity,
                       labels=labels if len(labels) == len(images) else None, classes=classes)


def _local_copy(root: str) -> str | None:
    if is_cifar_dir(root) or (os.path.isfile(root) and not os.path.isdir(root)):
        return root
    for candidate in (os.path.join(root, FOLDER), os.path.join(root, ARCHIVE)):
        if is_cifar_dir(candidate) or os.path.isfile(candidate):
            return candidate
    return None


def download(root: str, log=print) -> str:
    """Download and unpack the official archive into ``root``; returns the batches folder."""
    from torchvision.datasets.utils import download_url, extract_archive

    os.makedirs(root, exist_ok=True)
    part, final = os.path.join(root, ARCHIVE + ".part"), os.path.join(root, ARCHIVE)
    log(f"downloading CIFAR-10 from {URL} to {root}")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(60)
    try:
        download_url(URL, root, filename=os.path.basename(part), md5=ARCHIVE_MD5)
        publish(part, final)  # the one atomic write's rename: the archive whole, or not there
        extract_archive(final, root)
    finally:
        socket.setdefaulttimeout(previous)
    return os.path.join(root, FOLDER)


def open_cifar10(root: str, split: str, download_ok: bool, log=print) -> ArraySource:
    """The ``cifar10`` source: a local copy under ``root``, else a download into it."""
    found = _local_copy(root)
    reason = "download disabled"
    if found is None and download_ok:
        try:
            found = download(root, log)
        except Exception as err:  # offline, proxy, disk full, checksum: all end in the same advice
            reason = one_line(f"download failed: {type(err).__name__}: {err}")
    if found is None:
        raise UserError(f"CIFAR-10 is not in {root} ({reason}); {HOW_TO}")
    return read_cifar(found, split)
