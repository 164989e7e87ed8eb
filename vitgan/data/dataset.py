"""ImageDataset: uint8 (C, H, W) images at one resolution, decoded once into memory when they fit.

``open_dataset`` resolves a source string (see ``vitgan.data.catalog``), validates it, and either
decodes every image once into one uint8 tensor (``ds.images``, N x C x H x W; decoding runs on a
thread pool, as PIL releases the GIL while decoding and resampling) or, when that tensor would
exceed ``IN_MEMORY_LIMIT`` bytes, decodes per item (for DataLoader workers).

Bad files never stop a run halfway: an unreadable image found while loading is skipped and
counted (``ds.skipped``, and one log line "warning: skipped N unreadable images of M ..."); in
lazy mode one found later is replaced by the next readable image and counted. Problems with the dataset as a
whole (missing, empty, corrupt archive or LMDB, every image unreadable) raise ``UserError`` when
the dataset is opened, before any training: a damaged archive (a tar's compressed stream or
headers, a zip member's CRC) stops us rather than train on a silently smaller dataset.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import itertools
import json
import os
import sys
import time

import numpy as np
import torch

from vitgan.data.catalog import open_source
from vitgan.data.image import decode
from vitgan.data.archives import TarSource, ZipSource
from vitgan.data.sources import SPLITS, Source, one_line
from vitgan.errors import OptionError, UserError

IN_MEMORY_LIMIT = 4 << 30  # bytes of decoded uint8 images held in memory when in_memory=None
PREP_VERSION = 1  # bump when decoding or resizing changes, so fingerprints (metric caches) change
_PROBE = 16  # lazy datasets: images decoded at open time to catch a wholly unreadable source
_CHUNK = 64  # images per decoding task
_THREADED_BYTES = 8192  # mean encoded size from which decoding runs on several threads


def _payload_size(payload) -> int:
    if isinstance(payload, np.ndarray):
        return payload.nbytes
    if isinstance(payload, str):
        try:
            return os.path.getsize(payload)
        except OSError:
            return 0
    return len(payload)


def _threads() -> int:
    env = os.environ.get("VITGAN_DATA_THREADS")
    if env:
        return max(1, int(env))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def _try_decode(payload, resolution, channels, crop):
    try:
        return decode(payload, resolution, channels, crop), None
    except Exception as err:  # corrupt, truncated, not an image, too large: all skipped
        return None, one_line(f"{type(err).__name__}: {err}")


class ImageDataset(torch.utils.data.Dataset):
    """uint8 images (C, resolution, resolution) from a Source.

    Attributes: ``name`` (short label), ``fingerprint`` (changes with the content, the split,
    the resolution, the channels or the count), ``skipped`` (unreadable images skipped),
    ``images`` (the uint8 N x C x H x W tensor when in memory, else None), ``labels`` (int64
    tensor of class indices, or None), ``classes`` (class names, or None), ``resolution``,
    ``channels``, ``split``, ``path``.
    """

    def __init__(
        self,
        source: Source,
        *,
        resolution: int,
        channels: int = 3,
        split: str = "train",
        max_images: int | None = None,
        in_memory: bool | None = None,
        log=print,
    ):
        self.source = source
        self.name = source.name
        self.path = source.path
        self.resolution, self.channels, self.split = int(resolution), int(channels), split
        self.max_images = max_images
        self.skipped = 0
        self.images: torch.Tensor | None = None
        self._log = log or (lambda *_: None)
        special = getattr(source, "special", [])
        if special:
            self._log(f"warning: skipped {len(special)} non-regular file(s) in {source.path} (a FIFO, device, "
                      f"socket or broken link named like an image): {', '.join(special[:3])}"
                      f"{', ...' if len(special) > 3 else ''}")
        n = len(source)
        if n == 0:
            raise UserError(f"{source.path}: no images found; point --data at a non-empty dataset")
        if max_images is not None and n > max_images:  # a fixed random subset, kept in order
            keep = np.sort(np.random.default_rng(0).permutation(n)[:max_images])
            source.subset(keep.tolist())
            n = len(source)
        nbytes = n * self.channels * self.resolution**2
        self.in_memory = nbytes <= IN_MEMORY_LIMIT if in_memory is None else bool(in_memory)
        if self.in_memory:
            self._load_all()
        else:
            self._probe()
        self.labels = None if source.labels is None else torch.tensor(source.labels, dtype=torch.int64)
        self.classes = source.classes
        self.fingerprint = self._fingerprint()

    # ------------------------------------------------------------------ loading
    def _load_all(self) -> None:
        src, r, c, crop = self.source, self.resolution, self.channels, self.source.crop
        n = len(src)
        array = src.as_array()
        if array is not None and crop is None and array.shape[1:] == (r, r, c):
            self.images = torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))
            return
        start = time.perf_counter()
        if n >= 5000:
            self._log(f"decoding {n} images from {src.path} into memory ({n * c * r * r / 2**20:.0f} MB)")
        out = torch.empty((n, c, r, r), dtype=torch.uint8)
        out_np = out.numpy()
        good = np.zeros(n, dtype=bool)
        errors: list[tuple[int, str]] = []

        def work(chunk):
            return [(i, *_try_decode(p, r, c, crop)) for i, p in chunk]

        def collect(results):
            for i, a, err in results:
                if a is None:
                    errors.append((i, err))
                else:
                    out_np[i] = a
                    good[i] = True

        chunks = _chunked(src.iter_read(), _CHUNK)
        first = next(chunks, [])
        # Threads pay off for large images (PIL releases the GIL while decoding and resampling);
        # tiny ones (CIFAR's 1 KB JPEGs) are bound by Python overhead and decode faster serially.
        big = np.mean([_payload_size(p) for _, p in first]) >= _THREADED_BYTES if first else False
        threads = _threads() if n > _CHUNK and big else 1
        chunks = itertools.chain([first], chunks)
        if threads == 1:
            for chunk in chunks:
                collect(work(chunk))
        else:
            with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="vitgan-decode") as pool:
                pending = collections.deque()
                for chunk in chunks:
                    pending.append(pool.submit(work, chunk))
                    while len(pending) > 4 * threads:
                        collect(pending.popleft().result())
                while pending:
                    collect(pending.popleft().result())
        if errors:
            errors.sort()
            keep = np.flatnonzero(good)
            if len(keep) == 0:
                self._all_bad(n, errors)
            for a in range(0, len(keep), 4096):  # compact in place: keep[j] >= j
                idx = keep[a : a + 4096]
                out[a : a + len(idx)] = out[torch.from_numpy(idx)]
            out = out[: len(keep)].clone() if len(keep) < 0.9 * n else out[: len(keep)]
            self._skip(errors, n)
            src.subset(keep.tolist())
        self.images = out
        src.close()  # file handles are reopened if anything reads the source again
        if n >= 5000:
            self._log(f"decoded {len(out)} images in {time.perf_counter() - start:.1f} s")

    def _probe(self) -> None:
        src = self.source
        if isinstance(src, TarSource) and src.compressed:
            src.preload()
        elif isinstance(src, ZipSource):
            src.verify()  # every member's CRC now, so a damaged one cannot surface mid-run
        n = min(len(src), _PROBE)
        errors = []
        for i in range(n):
            _, err = _try_decode(src.read(i), self.resolution, self.channels, src.crop)
            if err is not None:
                errors.append((i, err))
        if len(errors) == n:
            self._all_bad(n, errors, first=n < len(src))
        if errors:
            self._skip(errors, len(src))
            bad = {i for i, _ in errors}
            src.subset([i for i in range(len(src)) if i not in bad])

    def _all_bad(self, n, errors, first=False):
        i, err = errors[0]
        which = f"the first {n}" if first else f"none of the {n}" if n > 1 else "its only"
        verb = "images are unreadable" if first else "images could be read" if n > 1 else "image is unreadable"
        raise UserError(one_line(
            f"{self.source.path}: {which} {verb} (e.g. {self.source.names[i]}: {err}); "
            "the files are corrupt or not images: replace them or point --data elsewhere"
        ))

    def _skip(self, errors, n):
        self.skipped += len(errors)
        i, err = errors[0]
        self._log(one_line(
            f"warning: skipped {len(errors)} unreadable images of {n} in {self.source.path}, "
            f"{n - len(errors)} left (e.g. {self.source.names[i]}: {err}); replace or remove them"
        ))

    def _fingerprint(self) -> str:
        """Names what the model sees: the decoded pixels and labels when they are in memory (exact,
        whatever path or file times), else the source's content identity (sources.file_identity)."""
        if self.in_memory:
            digest = hashlib.blake2b(self.images.contiguous().numpy().data, digest_size=16)
            if self.labels is not None:
                digest.update(self.labels.contiguous().numpy().data)
            content = {"kind": self.source.kind, "pixels": digest.hexdigest()}
        else:
            content = self.source.identity()
        key = {
            "prep": PREP_VERSION,
            "source": content,
            "split": self.split,
            "resolution": self.resolution,
            "channels": self.channels,
            "crop": self.source.crop,
            "max_images": self.max_images,
            "count": len(self),
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.source)

    def __getitem__(self, index) -> torch.Tensor:
        if self.images is not None:
            return self.images[index]
        return self._read(index)[0]

    def labelled(self, index) -> tuple[torch.Tensor, int]:
        """(image, its class index): the label of the image actually returned, also when a lazy
        dataset replaced an unreadable image by the next readable one."""
        if self.labels is None:
            raise UserError(f"{self.path}: the dataset has no class labels")
        if self.images is not None:
            return self.images[index], int(self.labels[index])
        image, j = self._read(index)
        return image, int(self.labels[j])

    def _read(self, index) -> tuple[torch.Tensor, int]:
        n = len(self.source)
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {index} out of range for {n} images")
        for attempt in range(min(n, 64)):
            j = (i + attempt) % n
            a, err = _try_decode(self.source.read(j), self.resolution, self.channels, self.source.crop)
            if a is not None:
                return torch.from_numpy(a), j
            self.skipped += 1
            if self.skipped & (self.skipped - 1) == 0:  # 1, 2, 4, 8, ... lines at most
                log = self._log or (lambda m: print(m, file=sys.stderr))
                log(f"skipped an unreadable image ({self.skipped} so far): {self.source.names[j]}: {err}")
        raise UserError(f"{self.source.path}: 64 images in a row are unreadable near index {i}; check the files")

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_log"] = None  # may not pickle; workers log to stderr
        return state

    def __repr__(self) -> str:
        where = "in memory" if self.images is not None else "lazy"
        return (
            f"ImageDataset({self.name!r}, {len(self)} images, {self.channels}x{self.resolution}x"
            f"{self.resolution}, split={self.split!r}, {where}, skipped={self.skipped})"
        )


def _chunked(iterable, size):
    chunk = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def open_dataset(
    source: str,
    *,
    resolution: int,
    channels: int = 3,
    split: str = "train",
    download: bool = True,
    root: str | None = None,
    max_images: int | None = None,
    in_memory: bool | None = None,
    log=print,
) -> ImageDataset:
    """Open ``source`` (a dataset name or a path) as uint8 images of ``channels`` x resolution^2.

    See ``vitgan.data`` for the accepted sources, the conversions and the errors.
    """
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise OptionError(f"resolution must be a positive integer, not {resolution!r}")
    if channels not in (1, 3) or isinstance(channels, bool):
        raise OptionError(f"channels must be 1 (grey) or 3 (RGB), not {channels!r}")
    if split not in SPLITS:
        raise OptionError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1):
        raise OptionError(f"max_images must be a positive integer or None, not {max_images!r}")
    log = log or (lambda *_: None)
    src = open_source(os.fspath(source), split=split, download=download, root=root, log=log)
    return ImageDataset(
        src, resolution=resolution, channels=channels, split=split, max_images=max_images,
        in_memory=in_memory, log=log,
    )
