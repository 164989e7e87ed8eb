"""Files at the bottom of the house: the one atomic write, fsync, sha256.

Everything that must never be seen half-written (checkpoints, training_options.json, sample
grids, curves.png, cached feature statistics, a downloaded Inception network) goes through
``atomic_write``: the content is written to a temporary file in the same folder
(``.<name>.tmp-<pid>``), flushed, fsynced and renamed over its final name, then the folder is
fsynced. Readers see the old file or the new one, never a part; a failure (disk full, a killed
process) leaves the old file and removes the temporary one (a killed process leaves one that
``is_temporary`` recognises, for clean-up).

Imports nothing else of vitgan: any module may use it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import BinaryIO, Callable

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_link_or_copy",
           "fsync_dir", "sha256_file", "sha256_bytes", "temporary_name", "is_temporary"]


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


def atomic_link_or_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """``dst`` becomes a hard link to ``src`` (a copy where links are not possible), atomically."""
    src, dst = Path(src), Path(dst)
    tmp = temporary_name(dst)
    try:
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(dst.parent)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
