"""The metric registry shared by ``vitgan eval`` and the training loop.

``evaluate_generator`` is the in-training hook: it samples the generator, extracts features
(split across ranks under torchrun, gathered on every rank), takes the real side's statistics
from the disk cache (computing them once), and returns ``{"fid": ...}`` etc. on every rank.
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import torch
import torch.distributed

from vitgan.errors import OptionError
from vitgan.metrics import formulas
from vitgan.metrics.features import dataset_feature_set, dist_info, generator_features
from vitgan.metrics.stats_cache import FeatureSet, StatsCache


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str
    keys: tuple[str, ...]   # what it reports
    needs_real: bool
    needs_logits: bool
    help: str


METRICS: dict[str, Metric] = {
    "fid": Metric("fid", ("fid",), True, False, "Frechet Inception Distance (lower is better)"),
    "kid": Metric("kid", ("kid_mean", "kid_std"), True, False,
                  "Kernel Inception Distance, mean and std over 100 subsets (lower is better)"),
    "is": Metric("is", ("is_mean", "is_std"), False, True, "Inception Score over 10 splits (higher is better)"),
}

IS_UNAVAILABLE = ("Inception Score is not available with this network (it has no classifier); "
                  "give NVIDIA's inception-2015-12-05.pt with --inception or VITGAN_INCEPTION")


def parse_metrics(spec) -> tuple[str, ...]:
    """``"fid,kid"`` or ``("fid", "kid")`` -> validated, de-duplicated names in order."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        if name not in METRICS:
            raise OptionError(f"unknown metric {raw!r}; choose from {', '.join(METRICS)}")
        if name not in out:
            out.append(name)
    if not out:
        raise OptionError(f"no metric given; choose from {', '.join(METRICS)}")
    return tuple(out)


def compute_metrics(fake: FeatureSet, real: FeatureSet | None, metrics, *, seed: int = 0,
                    kid_subsets: int = 100, kid_subset_size: int = 1000,
                    is_splits: int = 10) -> dict:
    """Numbers for ``metrics`` from the two feature sets. IS without logits -> None + ``is_note``."""
    out: dict = {}
    for name in parse_metrics(metrics):
        if name == "fid":
            if max(fake.n, real.n) <= fake.features.shape[1]:  # fewer samples than features
                out["fid"] = formulas.frechet_distance_low_rank(fake.features, real.features)
            else:
                out["fid"] = formulas.frechet_distance(fake.mu, fake.sigma, real.mu, real.sigma)
        elif name == "kid":
            out["kid_mean"], out["kid_std"] = formulas.kernel_inception_distance(
                fake.features, real.features, num_subsets=kid_subsets,
                max_subset_size=kid_subset_size, seed=seed)
        elif name == "is":
            if fake.logits is None:
                out["is_mean"] = out["is_std"] = None
                out["is_note"] = IS_UNAVAILABLE
            else:
                out["is_mean"], out["is_std"] = formulas.inception_score(
                    fake.logits, splits=min(is_splits, fake.n))
    return out


def evaluate_generator(G, real_dataset, *, metrics=("fid",), n: int, batch: int = 64, device="cpu",
                       cache_dir=None, seed: int = 0, truncation_psi: float = 1.0,
                       inception=None) -> dict[str, float]:
    """Metrics of ``G`` (the EMA generator) against ``real_dataset``: ``{"fid": 23.4, ...}``.

    ``n`` samples from fixed latents (``seed``) against ``min(n, len(real_dataset))`` real images
    (a fixed random subset, whose statistics are cached under ``cache_dir``, default
    ``~/.cache/vitgan/stats``). ``inception``: a ``FeatureExtractor``, a path, or None for the
    usual search. Under torch.distributed every rank must call this; sampling and feature
    extraction are split across ranks, features are all-gathered, rank 0 computes the numbers
    and broadcasts them, so every rank returns the same dict. IS is left out (with a
    warning) when the network has no classifier.
    """
    from vitgan.metrics.inception import load_inception

    names = parse_metrics(metrics)
    if inception is None or isinstance(inception, (str, os.PathLike)):
        extractor = load_inception(inception, device)
    else:  # a FeatureExtractor (or anything with its interface)
        extractor = inception
    want_logits = "is" in names and extractor.has_logits
    if "is" in names and not extractor.has_logits:
        warnings.warn(IS_UNAVAILABLE, stacklevel=2)
        names = tuple(m for m in names if m != "is")
        if not names:
            return {}
    feats, logits = generator_features(extractor, G, n, batch=batch, device=device, seed=seed,
                                       truncation_psi=truncation_psi, want_logits=want_logits)
    fake = FeatureSet.from_features(feats.numpy(), None if logits is None else logits.numpy())
    real = None
    if any(METRICS[m].needs_real for m in names):
        real = dataset_feature_set(extractor, real_dataset, n, batch=batch, cache=StatsCache(cache_dir))
    rank, world = dist_info()
    result = None
    if rank == 0:
        result = {k: v for k, v in compute_metrics(fake, real, names, seed=seed).items() if k != "is_note"}
    if world > 1:  # rank 0 computes (the 2048x2048 eigendecompositions once), every rank returns it
        box = [result]
        torch.distributed.broadcast_object_list(box, src=0)
        result = box[0]
    return result
