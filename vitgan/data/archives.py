"""Image sources inside archives, read in place (never unpacked to disk): .zip and .tar /
.tar.gz / .tgz / .tar.bz2 / .tar.xz. Same ``Source`` interface as ``vitgan.data.sources``."""

from __future__ import annotations

import os
import tarfile
import zipfile

from vitgan.data.image import is_image_name
from vitgan.data.sources import (ARCHIVE_ERRORS, LAZY_ARCHIVE_LIMIT, Source, _strip_suffix, one_line,
                                 split_names)
from vitgan.errors import UserError


def _archive_error(path: str, err: BaseException) -> UserError:
    if "could not be opened successfully" in str(err) or "File is not a zip file" in str(err):
        return UserError(
            f"cannot read archive {path}: not a valid {'zip' if 'zip' in str(err) else 'tar'} archive; "
            "the file is corrupt or incomplete: download or copy it again (or unpack it and pass the folder)"
        )
    return UserError(one_line(
        f"cannot read archive {path}: {type(err).__name__}: {str(err) or 'truncated'}; the file is "
        "corrupt or incomplete: download or copy it again (or unpack it and pass the folder)"
    ))


class ZipSource(Source):
    """Images inside a .zip, read in place."""

    kind = "zip"
    _handles = ("_zip",)

    def __init__(self, path: str, split: str, name: str | None = None, filter_names=None):
        super().__init__(path, name or _strip_suffix(os.path.basename(path)))
        self._zip = None
        try:
            with zipfile.ZipFile(path) as zf:
                infos = {i.filename: i for i in zf.infolist() if not i.is_dir()}
        except ARCHIVE_ERRORS as err:
            raise _archive_error(path, err) from None
        found = [n for n in infos if is_image_name(n) and (filter_names is None or filter_names(n))]
        if not found:
            raise UserError(f"{path}: no images found in the zip archive; point --data at an archive of images")
        self.names, self.labels, self.classes = split_names(found, split, path)
        self._offsets = [infos[n].header_offset for n in self.names]

    def _subset(self, indices):
        self._offsets = [self._offsets[i] for i in indices]

    def _open(self):
        self._zip = zipfile.ZipFile(self.path)

    def read(self, i: int):
        return self._handle()._zip.read(self.names[i])

    def iter_read(self):
        order = sorted(range(len(self)), key=self._offsets.__getitem__)
        for i in order:
            yield i, self.read(i)

    def close(self):
        if self._zip is not None:
            self._zip.close()
        self._zip = None
        super().close()


def _compressed(path: str) -> bool:
    with open(path, "rb") as f:
        magic = f.read(6)
    return magic[:2] == b"\x1f\x8b" or magic[:3] == b"BZh" or magic == b"\xfd7zXZ\x00"


class TarSource(Source):
    """Images inside a .tar (optionally gzip / bzip2 / xz compressed), read in place.

    Plain .tar members are read by offset. A compressed tar cannot be read at random cheaply,
    so it is read front to back once; for lazy (per-item) access its members' bytes are kept in
    memory (up to LAZY_ARCHIVE_LIMIT, beyond which you are asked to unpack it or use .tar/.zip).
    """

    kind = "tar"
    _handles = ("_file",)

    def __init__(self, path: str, split: str, name: str | None = None, members=None):
        super().__init__(path, name or _strip_suffix(os.path.basename(path)))
        self._file = None
        self._blobs = None
        self.compressed = _compressed(path)
        if members is None:
            members = list_tar(path)
        infos = {m.name: m for m in members if m.isfile() and is_image_name(m.name)}
        if not infos:
            raise UserError(f"{path}: no images found in the tar archive; point --data at an archive of images")
        self.names, self.labels, self.classes = split_names(list(infos), split, path)
        self._members = [infos[n] for n in self.names]

    def _subset(self, indices):
        self._members = [self._members[i] for i in indices]

    def _open(self):
        if not self.compressed:
            self._file = open(self.path, "rb")

    def preload(self, log=None) -> None:
        """Hold every member's bytes in memory (for lazy access to a compressed tar)."""
        total = sum(m.size for m in self._members)
        if total > LAZY_ARCHIVE_LIMIT:
            raise UserError(
                f"{self.path} is a compressed tar of {total / 2**30:.1f} GiB that cannot be read at "
                "random; unpack it and pass the folder, or repack it as .zip or uncompressed .tar"
            )
        blobs = [None] * len(self)
        for i, data in self.iter_read():
            blobs[i] = data
        self._blobs = blobs

    def read(self, i: int):
        if self._blobs is not None:
            return self._blobs[i]
        m = self._members[i]
        if self.compressed:  # random access into a compressed stream: slow, but correct
            return b"".join(data for _, data in self._read_members([i]))
        f = self._handle()._file
        f.seek(m.offset_data)
        return f.read(m.size)

    def iter_read(self):
        if self._blobs is not None:
            yield from enumerate(self._blobs)
            return
        order = sorted(range(len(self)), key=lambda i: self._members[i].offset_data)
        yield from zip(order, (data for _, data in self._read_members(order)))

    def _read_members(self, order):
        try:
            with tarfile.open(self.path, "r:*") as tf:
                for i in order:
                    f = tf.extractfile(self._members[i])
                    yield i, f.read() if f is not None else b""
        except ARCHIVE_ERRORS as err:
            raise _archive_error(self.path, err) from None

    def close(self):
        if self._file is not None:
            self._file.close()
        self._file = None
        super().close()


_TAR_LISTINGS: dict[tuple, list[tarfile.TarInfo]] = {}  # a few recent listings, by file identity


def list_tar(path: str) -> list[tarfile.TarInfo]:
    """The members of a tar archive (a full pass over a compressed one: cached per process, so
    training and evaluation opening the same archive list it once)."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _TAR_LISTINGS:
        try:
            with tarfile.open(path, "r:*") as tf:
                members = tf.getmembers()
        except ARCHIVE_ERRORS as err:
            raise _archive_error(path, err) from None
        while len(_TAR_LISTINGS) >= 4:
            _TAR_LISTINGS.pop(next(iter(_TAR_LISTINGS)))
        _TAR_LISTINGS[key] = members
    return _TAR_LISTINGS[key]
