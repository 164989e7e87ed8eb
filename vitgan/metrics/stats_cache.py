"""Feature statistics of image sets, cached on disk.

A cache entry holds what every metric needs from one side: the Inception features (float32, for
KID), their mean and covariance (float64, for FID) and, when the network has a classifier, the
logits (for IS). Entries are ``.npz`` files under ``<cache dir>/stats/`` (default
``~/.cache/vitgan/stats``), named by a hash of everything that produced them: the dataset's
fingerprint, split, resolution, the image count and how the images were chosen, and the
network's sha256. A different dataset, split, size, count or network is a different file; a file
that does not load, or whose recorded key differs, counts as a miss and is rewritten.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from vitgan.metrics.formulas import feature_stats
from vitgan.metrics.inception import cache_root
from vitgan.files import atomic_write

FORMAT_VERSION = 1


@dataclasses.dataclass
class FeatureSet:
    """Features of one image set and their statistics (``ddof=0``, as StyleGAN2-ADA)."""

    features: np.ndarray            # (N, 2048) float32: the network's own precision
    mu: np.ndarray                  # (2048,) float64
    sigma: np.ndarray               # (2048, 2048) float64
    logits: np.ndarray | None = None  # (N, C) float32 when the network has a classifier

    @classmethod
    def from_features(cls, features, logits=None) -> "FeatureSet":
        f = np.asarray(features, dtype=np.float32)
        mu, sigma = feature_stats(f)
        return cls(f, mu, sigma, None if logits is None else np.asarray(logits, dtype=np.float32))

    @property
    def n(self) -> int:
        return int(self.features.shape[0])


def stats_key(*, fingerprint: str, split: str, resolution: int | None, count: int,
              network_sha: str, selection: str = "") -> dict:
    """The fields that identify a cache entry (all of them go into its file name hash)."""
    return {
        "version": FORMAT_VERSION,
        "fingerprint": str(fingerprint),
        "split": str(split),
        "resolution": None if resolution is None else int(resolution),
        "count": int(count),
        "selection": str(selection),
        "network_sha256": str(network_sha),
    }


class StatsCache:
    """``load(key) -> FeatureSet | None`` and ``save(key, feature_set)`` under one folder."""

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        self.dir = Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "stats"

    def path(self, key: dict) -> Path:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        split = "".join(c if c.isalnum() else "_" for c in key["split"])
        return self.dir / f"{split}-{key['resolution']}px-{key['count']}-{digest}.npz"

    def load(self, key: dict, *, need_logits: bool = False) -> FeatureSet | None:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                if json.loads(str(z["key"])) != key:
                    return None
                logits = z["logits"] if "logits" in z.files else None
                fs = FeatureSet(z["features"], z["mu"], z["sigma"], logits)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):
            return None  # truncated or foreign file: recompute and overwrite
        if need_logits and fs.logits is None:
            return None
        return fs

    def save(self, key: dict, fs: FeatureSet) -> Path:
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        arrays = dict(key=np.array(json.dumps(key, sort_keys=True)), features=fs.features,
                      mu=fs.mu, sigma=fs.sigma)
        if fs.logits is not None:
            arrays["logits"] = fs.logits
        return atomic_write(p, lambda f: np.savez(f, **arrays))  # readers never see half a file
