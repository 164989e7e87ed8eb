"""Image sources inside archives, read in place (never unpacked to disk): .zip and .tar /
.tar.gz / .tgz / .tar.bz2 / .tar.xz. Same ``Source`` interface as ``vitgan.data.sources``.

Nothing silently lost: the type comes from the first bytes (``sniff``), a tar is verified end to
end as it is listed (``list_tar``), and a zip member is CRC-checked as it is read; a damaged
archive raises one UserError naming it, where, and the fix, rather than yield fewer images."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import tarfile
import zipfile

from vitgan.data.image import is_image_name
from vitgan.data.sources import (ARCHIVE_ERRORS, LAZY_ARCHIVE_LIMIT, Source, _strip_suffix, one_line,
                                 split_names)
from vitgan.errors import UserError


FIX = "re-download or re-create it (or unpack it and pass the folder)"
_TAR_KINDS = {"gzip": "gzip-compressed tar", "bzip2": "bzip2-compressed tar", "xz": "xz-compressed tar",
              "tar": "tar"}


def sniff(path: str) -> str:
    """What a file is, by its first bytes (not its name): "gzip", "bzip2", "xz", "zip", "tar", or
    a few words describing something else ("empty", "text", "a PNG image", ...)."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:3] == b"BZh":
        return "bzip2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[257:262] == b"ustar" or _v7_tar_header(head):
        return "tar"
    if zipfile.is_zipfile(path):  # a zip behind a prefix (self-extracting)
        return "zip"
    for magic, what in _OTHER_MAGIC:
        if head.startswith(magic):
            return what
    if not head:
        return "empty"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "a web page (HTML), probably an error page saved by a failed download"
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return f"unknown data (first bytes {head[:8].hex(' ')})"


_OTHER_MAGIC = ((b"7z\xbc\xaf\x27\x1c", "a 7z archive"), (b"Rar!", "a RAR archive"),
                (b"\x28\xb5\x2f\xfd", "a zstd-compressed file"), (b"\x89PNG", "a PNG image"),
                (b"\xff\xd8\xff", "a JPEG image"), (b"\x80\x02", "a Python pickle"),
                (b"\x80\x04", "a Python pickle"), (b"\x80\x05", "a Python pickle"))


def _v7_tar_header(block: bytes) -> bool:
    """An old-style tar header without the ustar magic: its checksum adds up."""
    if len(block) < 512 or not block[0]:
        return False
    try:
        return int(block[148:156].split(b"\0")[0].strip() or b"-1", 8) == sum(block[:148]) + 256 + sum(block[156:512])
    except ValueError:
        return False


def not_an_archive(path: str, kind: str, expected: str) -> UserError:
    """A file whose bytes are not the archive its name promises."""
    what = _TAR_KINDS.get(kind, "a zip archive" if kind == "zip" else kind)
    what = f"a {what}" if kind in _TAR_KINDS else what
    return UserError(f"cannot read archive {path}: it is {what}, not {expected}; the file is corrupt, "
                     f"incomplete or misnamed: {FIX}")


def _archive_error(path: str, err: BaseException) -> UserError:
    if "could not be opened successfully" in str(err) or "File is not a zip file" in str(err):
        expected = "a zip archive" if "zip" in str(err) else "a tar archive"
        return not_an_archive(path, sniff(path), expected)
    return UserError(one_line(
        f"cannot read archive {path}: {type(err).__name__}: {str(err) or 'truncated'}; the file is "
        f"corrupt or incomplete: {FIX}"
    ))


def _member_error(path: str, member: str, err: BaseException) -> UserError:
    return UserError(one_line(
        f"cannot read archive {path}: member {member} is damaged ({type(err).__name__}: {err}); the "
        f"file is corrupt: {FIX}"
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
        try:  # zipfile checks each member's CRC-32 as it is read
            return self._handle()._zip.read(self.names[i])
        except ARCHIVE_ERRORS as err:
            raise _member_error(self.path, self.names[i], err) from None

    def iter_read(self):
        order = sorted(range(len(self)), key=self._offsets.__getitem__)
        for i in order:
            yield i, self.read(i)

    def verify(self) -> None:
        """Read every member once (front to back), so a damaged one stops us now, by name."""
        for _ in self.iter_read():
            pass

    def close(self):
        if self._zip is not None:
            self._zip.close()
        self._zip = None
        super().close()


def _compressed(path: str) -> bool:
    return sniff(path) in ("gzip", "bzip2", "xz")


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
_DECOMPRESS = {"gzip": lambda f: gzip.GzipFile(fileobj=f, mode="rb"), "bzip2": bz2.BZ2File,
               "xz": lzma.LZMAFile}


def list_tar(path: str) -> list[tarfile.TarInfo]:
    """The members of a tar archive, verified end to end (cached per process, so training and
    evaluation opening the same archive list it once). See ``_verified_members``."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _TAR_LISTINGS:
        members = _verified_members(path)
        while len(_TAR_LISTINGS) >= 4:
            _TAR_LISTINGS.pop(next(iter(_TAR_LISTINGS)))
        _TAR_LISTINGS[key] = members
    return _TAR_LISTINGS[key]


class _LastRead:
    """A read-only stream that remembers the last bytes read: after a listing, the block that
    ended it (tarfile stops at the first bad header without an error)."""

    def __init__(self, f):
        self._f, self.last = f, b""

    def read(self, n=-1):
        self.last = self._f.read(n)
        return self.last

    def seek(self, *args):
        return self._f.seek(*args)

    def tell(self):
        return self._f.tell()


def _verified_members(path: str) -> list[tarfile.TarInfo]:
    """List a tar archive in one sequential pass, checking what Python's tarfile does not: the
    listing must end at the end-of-archive block (not at a damaged header), every member's data
    must lie inside the archive, and a compressed stream is read to its end, so that its CRC and
    length (gzip, bzip2, xz) are checked. The type comes from the first bytes, not the name.
    Anything wrong raises one UserError naming the archive, where, and the fix. (Plain tar keeps
    no checksum of member data: damage there is found only when an image fails to decode.)"""
    kind = sniff(path)
    if kind not in _TAR_KINDS:
        raise not_an_archive(path, kind, "a tar archive")
    what = "the tar archive" if kind == "tar" else f"the {_TAR_KINDS[kind]}"
    tf = None
    with open(path, "rb") as raw:
        size = os.fstat(raw.fileno()).st_size

        def where(err):
            done = tf.members if tf is not None else []
            at = [f"after member {done[-1].name}"] if done else []
            if kind != "tar" and not isinstance(err, EOFError):  # where the bad compressed data is
                at.append(f"near byte {raw.tell()} of {size}")
            return ", ".join(at) or "at its start"

        try:
            stream = _DECOMPRESS[kind](raw) if kind != "tar" else raw
            tracked = _LastRead(stream)
            tf = tarfile.TarFile(fileobj=tracked, mode="r")
            members = tf.getmembers()
            end, last = tf.offset, tracked.last
            length = size
            if kind != "tar":
                while stream.read(1 << 20):  # to the end: the compressed stream's CRC and length
                    pass
                length = stream.tell()
        except tarfile.ReadError as err:
            if tf is None and kind != "tar" and "zlib" not in str(err):  # no tar header at the start
                raise UserError(one_line(f"cannot read archive {path}: it is {kind}-compressed data that "
                                         f"holds no tar archive ({err}); {FIX}")) from None
            raise _corrupt(path, what, where(err), err) from None
        except ARCHIVE_ERRORS as err:
            raise _corrupt(path, what, where(err), err) from None
    if last and last.count(0) != len(last):
        problem = (f"a damaged tar header at byte {end}" if len(last) == tarfile.BLOCKSIZE
                   else f"a tar header cut short at byte {end} (truncated)")
        raise _corrupt(path, what, f"after member {members[-1].name}" if members else "at its start", problem)
    for m in members:
        if m.offset_data + m.size > length:
            raise _corrupt(path, what, f"in member {m.name}", f"truncated: the member ends at byte "
                           f"{m.offset_data + m.size}, the {'archive' if kind == 'tar' else 'data'} at {length}")
    return members


def _corrupt(path: str, what: str, where: str, err) -> UserError:
    if isinstance(err, BaseException):
        text = str(err)
        if isinstance(err, EOFError) or "unexpected end" in text:
            err = "truncated: the data ends early"
        elif "CRC check failed" in text or "Bad CRC" in text:
            err = f"the data fails its checksum ({text})"
        else:
            err = f"{type(err).__name__}: {text or 'truncated'}"
    if "checksum" in err:  # found at the end of the stream: the damage can lie anywhere before
        where = "(the damage can lie anywhere in it)"
    return UserError(one_line(f"cannot read archive {path}: {what} is corrupt {where}: {err}; {FIX}"))
