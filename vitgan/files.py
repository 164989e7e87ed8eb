"""Files at the bottom of the house: the one atomic write, fsync, sha256, and write errors.

Everything that must never be seen half-written (checkpoints, training_options.json, sample
grids, curves.png, cached feature statistics, a downloaded Inception network or CIFAR-10
archive, an export folder) goes through ``atomic_write`` or, for content another library wrote
to a temporary name, ``publish``: the content is flushed and fsynced, renamed over its final
name, then the folder is fsynced. ``atomic_write`` writes to a temporary file in the same
folder (``.<name>.tmp-<pid>``). Readers see the old file or the new one, never a part; a
failure (disk full, a killed process) leaves the old file and removes the temporary one (a
killed process leaves one that ``is_temporary`` recognises, for clean-up). ``set_aside`` renames
a file out of the way (``*.damaged``) durably.

``writing(what)`` turns an ``OSError`` raised while writing into one ``OutputError`` line
(read-only folder, full disk). Imports nothing of vitgan but ``vitgan.errors``: any module may
use it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from pathlib import Path
from typing import BinaryIO, Callable

from vitgan.errors import UserError

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "publish", "set_aside",
           "fsync_dir", "sha256_file", "sha256_bytes", "temporary_name", "is_temporary",
           "OutputError", "writing"]


class OutputError(UserError):
    """A file or folder cannot be written (permissions, full disk)."""


@contextlib.contextmanager
def writing(what: str | os.PathLike, hint: str = ""):
    """Turn an OSError raised while writing ``what`` into one clear UserError line."""
    try:
        yield
    except OSError as err:
        reason = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                  errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                  errno.EROFS: "the file system is read-only"}.get(err.errno, err.strerror or str(err))
        raise OutputError(f"cannot write {what}: {reason}{'; ' + hint if hint else ''}") from None


def temporary_name(path: str | os.PathLike) -> Path:
    """Where ``atomic_write`` puts ``path``'s content before the rename."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def is_temporary(name: str) -> bool:
    """True for a leftover of an ``atomic_write`` that was killed."""
    return name.startswith(".") and ".tmp-" in name


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a folder (the rename inside it becomes durable); silently skipped where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Rename the finished ``tmp`` (a file, or a folder) over ``path`` durably: ``tmp`` is fsynced
    first (a folder: its entries), the folder holding ``path`` after. Returns ``path``."""
    tmp, path = Path(tmp), Path(path)
    if tmp.is_dir():
        fsync_dir(tmp)
    else:
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.absolute().parent)
    return path


def set_aside(path: str | os.PathLike, suffix: str) -> Path:
    """Rename ``path`` to ``<path><suffix>`` (kept for inspection, never read again), durably."""
    path = Path(path)
    aside = path.with_name(path.name + suffix)
    os.replace(path, aside)
    fsync_dir(path.parent)
    return aside


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object], *,
                 check: Callable[[Path], object] | None = None) -> Path:
    """Write ``path`` atomically: ``write(f)`` fills a binary file object, ``check(tmp_path)``
    (optional) may raise to refuse the content before it replaces anything. Returns ``path``."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
