"""Inception features of a generator's samples or of a dataset, split across processes.

Under torchrun (a process group joined by training or ``vitgan eval``; ``vitgan.distributed``), sample ``i`` of ``n`` is handled by rank
``i // ceil(n / world)``: each rank extracts a contiguous slice, and ``all_gather`` puts the
features back in order on every rank, so results do not depend on the number of processes.
Latents come from one CPU generator seeded with ``seed`` (``torch.randn(n, z_dim)``), sliced per
rank, for the same reason.

Generator images ([-1, 1] floats) become uint8 as StyleGAN2-ADA does it:
``(x * 127.5 + 128).clamp(0, 255).to(torch.uint8)`` (``to_uint8``).
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from vitgan import distributed
from vitgan.cores import sharing_cores
from vitgan.metrics.stats_cache import FeatureSet, StatsCache, stats_key


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> uint8 in [0, 255] (StyleGAN2-ADA's conversion)."""
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def shard(n: int, rank: int, world: int) -> range:
    """The contiguous slice of ``range(n)`` that ``rank`` handles."""
    return distributed.shard(n, distributed.Dist(rank=rank, world_size=world))


def _progress(total: int, desc: str | None):
    """A bar on a terminal, plain periodic lines into a pipe or log file (``vitgan.progress``)."""
    if desc is None or not distributed.current().is_main:
        return None
    from vitgan.progress import progress

    return progress(total, desc, unit="img")


def _run(extractor, batches, count: int, n: int, want_logits: bool, desc: str | None):
    """Feed uint8 batches of this rank's slice (``count`` images) and gather ``n`` rows."""
    feats, logits = [], []
    bar = _progress(count, desc)
    with sharing_cores(getattr(extractor, "device", "cpu")) as share:  # CPU: threads = free cores
        for images in batches:
            if want_logits:
                f, z = extractor.features_and_logits(images)
                logits.append(z)
            else:
                f = extractor(images)
            feats.append(f)
            if bar is not None:
                bar.update(images.shape[0])
            if share is not None:
                share.poll()
    if bar is not None:
        bar.close()
    f = torch.cat(feats) if feats else torch.zeros((0, 2048), dtype=torch.float64)
    d = distributed.current()
    f = distributed.all_gather_rows(d, f, n)
    z = None
    if want_logits:
        z = torch.cat(logits) if logits else torch.zeros((0, 1008), dtype=torch.float64)
        z = distributed.all_gather_rows(d, z, n)
    return f, z


@torch.inference_mode()
def generator_features(extractor, G, n: int, *, batch: int = 64, device="cpu", seed: int = 0,
                       truncation_psi: float = 1.0, want_logits: bool = False,
                       desc: str | None = None, labels: torch.Tensor | None = None,
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features (n, 2048) float64 (and logits) of ``n`` samples of ``G(z, truncation_psi)``;
    ``labels``: the n class indices of a conditional G's samples (``G(z, c=labels[i])``)."""
    mine = distributed.shard(n, distributed.current())
    z_dim = G.cfg.z_dim
    z_all = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))
    was_training = G.training
    G.eval()  # no w_avg update, no dropout
    try:
        def batches():
            for start in range(mine.start, mine.stop, batch):
                end = min(start + batch, mine.stop)
                z = z_all[start:end].to(device)
                if labels is None:
                    yield to_uint8(G(z, truncation_psi=truncation_psi))
                else:
                    yield to_uint8(G(z, truncation_psi=truncation_psi, c=labels[start:end].to(device)))
        return _run(extractor, batches(), len(mine), n, want_logits, desc)
    finally:
        G.train(was_training)


def subset_indices(length: int, n: int, seed: int = 0) -> np.ndarray:
    """Which images of a dataset to use: all when ``n >= length``, else a seeded random choice.

    Datasets are often stored class by class (CIFAR-10's archive is), so the first ``n`` images
    would cover a few classes only; a fixed random subset (sorted, for sequential reads) keeps
    every class and is the same on every run.
    """
    if n >= length:
        return np.arange(length)
    return np.sort(np.random.default_rng(seed).permutation(length)[:n])


def _dataset_batches(dataset, indices, batch: int):
    images = getattr(dataset, "images", None)
    for start in range(0, len(indices), batch):
        idx = indices[start:start + batch]
        if images is not None:
            yield images[torch.as_tensor(idx, dtype=torch.long)]
        else:
            yield torch.stack([dataset[int(i)] for i in idx])


def dataset_features(extractor, dataset, indices, *, batch: int = 64, want_logits: bool = False,
                     desc: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features (len(indices), 2048) float64 (and logits) of ``dataset[indices]``."""
    indices = np.asarray(indices)
    mine = distributed.shard(len(indices), distributed.current())
    local = indices[mine.start:mine.stop]
    return _run(extractor, _dataset_batches(dataset, local, batch), len(local), len(indices),
                want_logits, desc)


def dataset_resolution(dataset) -> int | None:
    res = getattr(dataset, "resolution", None)
    if res is None and len(dataset):
        res = int(dataset[0].shape[-1])
    return res


def dataset_feature_set(extractor, dataset, n: int, *, batch: int = 64, split: str | None = None,
                        cache: StatsCache | None = None, want_logits: bool = False,
                        selection_seed: int = 0, desc: str | None = None) -> FeatureSet:
    """Features and statistics of ``min(n, len(dataset))`` images, through the disk cache.

    The cache is used when ``cache`` is given and the dataset has a ``fingerprint``; the key is
    (fingerprint, split, resolution, count, selection, network sha256). Only rank 0 writes.
    """
    indices = subset_indices(len(dataset), n, selection_seed)
    fingerprint = getattr(dataset, "fingerprint", None)
    key = None
    if cache is not None and fingerprint:
        split = split or getattr(dataset, "split", None) or "train"
        key = stats_key(fingerprint=fingerprint, split=split, resolution=dataset_resolution(dataset),
                        count=len(indices), network_sha=getattr(extractor, "cache_sha", extractor.sha),
                        selection="all" if len(indices) == len(dataset) else f"random{selection_seed}")
    hit = cache.load(key, need_logits=want_logits) if key is not None else None
    d = distributed.current()
    if key is not None and not distributed.all_reduce_max(d, int(hit is None)):  # a hit on every rank
        return hit
    feats, logits = dataset_features(extractor, dataset, indices, batch=batch,
                                     want_logits=want_logits, desc=desc)
    fs = FeatureSet.from_features(feats.numpy(), None if logits is None else logits.numpy())
    if key is not None and d.is_main:
        try:
            cache.save(key, fs)
        except OSError as err:  # read-only cache folder: the numbers are still right
            print(f"vitgan: warning: could not write statistics cache {cache.dir}: {err}", file=sys.stderr)
    return fs
