"""An endless, resumable stream of uint8 batches, sharded across ranks.

Order: epoch e visits a permutation of the dataset drawn from (seed, e), the same on every rank;
rank r takes every world_size-th entry of it from position r (the first
``len(ds) // world_size * world_size`` entries, so all ranks see equally many images and no image
twice in an epoch). Batches run on across epoch ends, so a dataset smaller than a batch works.
Batch b of the stream is a pure function of (seed, rank, world_size, b): a run resumed with
``start=b`` sees exactly the batches it would have seen. Horizontal flips (``hflip=True``) flip
each image with probability 1/2, drawn from (seed, rank, b) as well. With ``labels=True`` (a
dataset with ``ds.labels``) each batch is ``(images, class indices (B,) int64)``: the labels are
taken by the same indices, so they travel with their images through every shard and epoch.

In-memory datasets are batched by tensor indexing (moved once to ``device`` when the images fit
in ``DEVICE_CACHE_LIMIT`` bytes); lazy ones through a DataLoader with worker processes. Nothing
in ``__next__`` makes the host wait for a CUDA device: the small per-step tensors (indices, flip
masks) and host-side batches go over from pinned memory with ``non_blocking=True``.
"""

from __future__ import annotations

import hashlib
import os

import torch

from vitgan.errors import UserError

DEVICE_CACHE_LIMIT = 2 << 30  # bytes of in-memory images copied once to an accelerator


def _seed(*parts) -> int:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class BatchStream:
    """Iterator of uint8 (B, C, H, W) batches on ``device``; see the module docstring.

    ``position`` is the number of batches produced (counting ``start``); save it in a checkpoint
    and pass it back as ``start`` to resume.
    """

    def __init__(self, ds, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1,
                 hflip: bool = False, device="cpu", start: int = 0, num_workers: int | None = None,
                 labels: bool = False):
        if batch_size < 1:
            raise UserError(f"batch size must be positive, not {batch_size}")
        if not 0 <= rank < world_size:
            raise UserError(f"rank {rank} is outside world size {world_size}")
        self.ds, self.batch_size, self.seed = ds, int(batch_size), int(seed)
        self.rank, self.world_size, self.hflip = int(rank), int(world_size), bool(hflip)
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None and torch.cuda.is_available():
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.position = int(start)
        self.shard_len = len(ds) // self.world_size
        if self.shard_len == 0:
            raise UserError(f"the dataset has {len(ds)} images, fewer than the {world_size} processes reading it")
        self._epoch, self._shard = None, None
        self._loader = None
        self._images = self._labels = None
        self.labels = bool(labels)
        if self.labels and getattr(ds, "labels", None) is None:
            raise UserError(f"{getattr(ds, 'path', 'the dataset')} has no class labels to batch")
        if getattr(ds, "images", None) is not None:
            images = ds.images
            if self.device.type != "cpu" and images.numel() <= DEVICE_CACHE_LIMIT:
                images = images.to(self.device)
            self._images = images
            self._labels = ds.labels.to(images.device) if self.labels else None
        else:
            if num_workers is None:
                try:
                    cpus = len(os.sched_getaffinity(0))
                except AttributeError:
                    cpus = os.cpu_count() or 1
                num_workers = max(1, min(8, cpus - 1))
            self.num_workers = num_workers

    # ------------------------------------------------------------------ order
    def shard(self, epoch: int) -> torch.Tensor:
        """This rank's dataset indices for ``epoch``, in visiting order."""
        if self._epoch != epoch:
            g = torch.Generator().manual_seed(_seed(self.seed, "epoch", epoch))
            perm = torch.randperm(len(self.ds), generator=g)
            self._shard = perm[self.rank :: self.world_size][: self.shard_len]
            self._epoch = epoch
        return self._shard

    def indices(self, b: int) -> torch.Tensor:
        """Dataset indices of batch ``b`` (0-based) of this rank's stream."""
        out, pos, end = [], b * self.batch_size, (b + 1) * self.batch_size
        while pos < end:
            epoch, offset = divmod(pos, self.shard_len)
            take = min(end - pos, self.shard_len - offset)
            out.append(self.shard(epoch)[offset : offset + take])
            pos += take
        return torch.cat(out) if len(out) > 1 else out[0]

    def flips(self, b: int) -> torch.Tensor:
        """Boolean (B,) mask: which images of batch ``b`` are flipped."""
        g = torch.Generator().manual_seed(_seed(self.seed, "flip", self.rank, b))
        return torch.rand(self.batch_size, generator=g) < 0.5

    # ------------------------------------------------------------------ iteration
    def __iter__(self):
        return self

    def __next__(self):
        b = self.position
        c = None
        if self._images is not None:
            idx = self.indices(b)
            if self.labels:
                c = self._labels[self._to_device(idx, self._labels.device)]
            if self._images.device.type == "cpu" and self.device.type == "cuda":
                # too big for the device cache: gather straight into pinned memory, copy async
                out = torch.empty((len(idx), *self._images.shape[1:]), dtype=self._images.dtype,
                                  pin_memory=True)
                x = torch.index_select(self._images, 0, idx, out=out)
            else:
                x = self._images[self._to_device(idx, self._images.device)]
        else:
            x = next(self._lazy_iter())  # pinned by the DataLoader when the device is CUDA
            if self.labels:
                x, c = x
        x = self._to_device(x, self.device)
        if self.hflip:
            mask = self._to_device(self.flips(b), x.device)
            x = torch.where(mask[:, None, None, None], x.flip(3), x)
        self.position = b + 1
        return x if c is None else (x, self._to_device(c, self.device))

    @staticmethod
    def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Host tensor -> ``device`` without making the host wait: to CUDA through pinned memory
        with ``non_blocking=True`` (a copy from pageable memory is synchronous). The pinned block
        is not reused before the copy is done (the caching host allocator records the copy)."""
        if t.device == device:
            return t
        if device.type == "cuda" and t.device.type == "cpu":
            if not t.is_pinned():
                t = t.pin_memory()
            return t.to(device, non_blocking=True)
        return t.to(device)

    def _lazy_iter(self):
        if self._loader is None:
            sampler = _BatchIndices(self, self.position)
            loader = torch.utils.data.DataLoader(
                _Labelled(self.ds) if self.labels else self.ds, batch_sampler=sampler, num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda", persistent_workers=self.num_workers > 0,
                prefetch_factor=4 if self.num_workers > 0 else None,
            )
            self._loader = iter(loader)
        return self._loader

    def close(self) -> None:
        """Stop DataLoader workers (lazy datasets); iteration may continue afterwards."""
        if self._loader is not None:
            shutdown = getattr(self._loader, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
            self._loader = None


class _Labelled(torch.utils.data.Dataset):
    """(image, label) items of a lazy dataset, for the DataLoader (``ImageDataset.labelled``)."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds.labelled(i) if hasattr(self.ds, "labelled") else (self.ds[i], int(self.ds.labels[i]))


class _BatchIndices(torch.utils.data.Sampler):
    def __init__(self, stream: BatchStream, start: int):
        self.stream, self.start = stream, start

    def __iter__(self):
        b = self.start
        while True:
            yield self.stream.indices(b).tolist()
            b += 1


def infinite_batches(ds, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1,
                     hflip: bool = False, device="cpu", start: int = 0,
                     num_workers: int | None = None, labels: bool = False) -> BatchStream:
    """Endless uint8 (B, C, H, W) batches of ``ds``: shuffled per epoch from ``seed``, rank
    ``rank`` of ``world_size`` reading its own disjoint shard, optionally flipped; ``start``
    skips that many batches (resume); ``labels``: batches are (images, class indices). Returns a
    ``BatchStream`` (an iterator)."""
    return BatchStream(ds, batch_size, seed=seed, rank=rank, world_size=world_size, hflip=hflip,
                       device=device, start=start, num_workers=num_workers, labels=labels)
