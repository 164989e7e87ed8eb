"""Metrics of a class-conditional generator: which classes to generate, and intra-class FID.

FID / KID of a conditional G compare its samples with the real images as a whole, so the fakes
are generated in the real data's class proportions: ``class_shares`` gives class k
round(n * p_k) of the n samples (largest remainder, so the counts add up to n and each is within
one of n * p_k), and ``generation_labels`` shuffles them with a seeded generator (the same labels
for the same seed, on every rank). p is the proportion of each class among the real images when
they carry the generator's class names, else uniform.

Intra-class FID (``--per-class``; Miyato & Koyama 2018): FID of the class-k fakes against the
class-k reals, for each class, averaged over the classes. It reuses the features of the overall
evaluation, split by label (no extra network passes): class k has about n * p_k images on each
side, so it is noisier and more biased than the overall FID at the same n.
"""

from __future__ import annotations

import numpy as np
import torch

from vitgan.data.labels import class_counts, dataset_classes
from vitgan.metrics import formulas


def real_proportions(real, classes: list[str]) -> np.ndarray:
    """Class proportions of ``real`` (a dataset with labels and the same class names), else
    uniform over ``classes``."""
    k = len(classes)
    if real is not None and dataset_classes(real) == list(classes):
        counts = np.asarray(class_counts(real, k), dtype=np.float64)
        if counts.sum() > 0:
            return counts / counts.sum()
    return np.full(k, 1.0 / k)


def class_shares(n: int, proportions) -> np.ndarray:
    """Integer counts per class summing to n, each within 1 of n * p_k (largest remainder)."""
    p = np.asarray(proportions, dtype=np.float64)
    exact = n * p / p.sum()
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - int(counts.sum())]] += 1
    return counts


def generation_labels(n: int, proportions, *, seed: int = 0) -> torch.Tensor:
    """n class indices (int64), ``class_shares`` of each class, in a seeded random order."""
    counts = class_shares(n, proportions)
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.as_tensor(counts))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919))
    return labels[perm]


def intra_class_fid(fake_features, fake_labels, real_features, real_labels, classes: list[str]) -> dict:
    """{"fid_per_class": {name: FID}, "intra_fid": mean over classes, "per_class_n": {name:
    [n_fake, n_real]}}; a class with fewer than 2 images on either side gets None (left out of
    the mean)."""
    fake_labels, real_labels = np.asarray(fake_labels), np.asarray(real_labels)
    per, sizes = {}, {}
    for k, name in enumerate(classes):
        f, r = fake_features[fake_labels == k], real_features[real_labels == k]
        sizes[name] = [int(len(f)), int(len(r))]
        per[name] = formulas.fid_from_features(f, r) if min(len(f), len(r)) >= 2 else None
    values = [v for v in per.values() if v is not None]
    return {"intra_fid": float(np.mean(values)) if values else None, "fid_per_class": per,
            "per_class_n": sizes}


__all__ = ["dataset_classes", "real_proportions", "class_shares", "generation_labels", "intra_class_fid"]
