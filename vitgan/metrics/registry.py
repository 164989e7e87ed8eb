"""The metric registry, and the one entry point that ``vitgan eval`` and the training loop share.

A metric is a function ``fn(fake, real, *, seed) -> {key: value}`` of two ``FeatureSet``s,
registered under its name with ``@register_metric(name, keys=..., needs_real=...,
needs_logits=...)``; ``compute_metrics`` dispatches to the registered functions and
``parse_metrics`` validates names against the registry. To add a metric, register a function.

``evaluate(metrics, fake=G_or_images, real=images, n=N, ...)`` is the whole pipeline: the fake
side's features (``n`` samples of a generator from latents seeded with ``seed``, or ``n`` images
of a dataset), the real side's statistics from the disk cache (computed once), split across
ranks under torchrun and gathered on every rank; rank 0 computes the numbers and broadcasts
them, so every rank returns the same ``Evaluation``. ``evaluate_generator`` is the training
hook around it (it drops IS, with a warning, when the network has no classifier).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Callable

import torch

from vitgan import distributed
from vitgan.errors import OptionError
from vitgan.metrics import conditional as cond
from vitgan.metrics import formulas, manifold
from vitgan.metrics.features import dataset_feature_set, generator_features, subset_indices
from vitgan.metrics.stats_cache import FeatureSet, StatsCache

IS_UNAVAILABLE = ("Inception Score is not available with this network (it has no classifier); "
                  "give NVIDIA's inception-2015-12-05.pt with --inception or VITGAN_INCEPTION")


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str
    keys: tuple[str, ...]   # what it reports
    needs_real: bool
    needs_logits: bool
    help: str
    fn: Callable[..., dict]
    min_n: int = 2          # images it needs a side (a covariance needs 2; k-NN metrics k + 1)


METRICS: dict[str, Metric] = {}


def register_metric(name: str, *, keys: tuple[str, ...], needs_real: bool = True,
                    needs_logits: bool = False, help: str = "", min_n: int = 2):
    """Decorator: register ``fn(fake, real, *, seed) -> dict`` as metric ``name``."""
    def register(fn):
        if name in METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        METRICS[name] = Metric(name, tuple(keys), needs_real, needs_logits, help, fn, min_n)
        return fn
    return register


# ------------------------------------------------------------------------------ the metrics
@register_metric("fid", keys=("fid",), help="Frechet Inception Distance (lower is better)")
def fid(fake: FeatureSet, real: FeatureSet, *, seed: int = 0) -> dict:
    if max(fake.n, real.n) <= fake.features.shape[1]:  # fewer samples than features
        return {"fid": formulas.frechet_distance_low_rank(fake.features, real.features)}
    return {"fid": formulas.frechet_distance(fake.mu, fake.sigma, real.mu, real.sigma)}


@register_metric("kid", keys=("kid_mean", "kid_std"),
                 help="Kernel Inception Distance, mean and std over 100 subsets (lower is better)")
def kid(fake: FeatureSet, real: FeatureSet, *, seed: int = 0, subsets: int = 100,
        subset_size: int = 1000) -> dict:
    mean, std = formulas.kernel_inception_distance(fake.features, real.features, num_subsets=subsets,
                                                   max_subset_size=subset_size, seed=seed)
    return {"kid_mean": mean, "kid_std": std}


@register_metric("is", keys=("is_mean", "is_std"), needs_real=False, needs_logits=True,
                 help="Inception Score over 10 splits (higher is better)")
def inception_score(fake: FeatureSet, real: FeatureSet | None, *, seed: int = 0, splits: int = 10) -> dict:
    if fake.logits is None:
        return {"is_mean": None, "is_std": None, "is_note": IS_UNAVAILABLE}
    mean, std = formulas.inception_score(fake.logits, splits=min(splits, fake.n))
    return {"is_mean": mean, "is_std": std}


def _knn_metric(name: str, keys: tuple[str, str], k: int, formula, help: str) -> None:
    """Register ``formula(fake_features, real_features, k=k) -> (a, b)`` (vitgan.metrics.manifold)."""
    def metric(fake: FeatureSet, real: FeatureSet, *, seed: int = 0) -> dict:
        if min(fake.n, real.n) <= k:
            raise OptionError(f"{name} uses each point's {k} nearest neighbours, so it needs more than {k} "
                              f"images a side (got {fake.n} fake, {real.n} real); raise --n")
        return dict(zip(keys, formula(fake.features, real.features, k=k)))
    register_metric(name, keys=keys, help=help, min_n=k + 1)(metric)


_knn_metric("pr", ("precision", "recall"), 3, manifold.precision_recall,
            "improved precision and recall, k = 3 (Kynkaanniemi et al. 2019; higher is better)")
_knn_metric("dc", ("density", "coverage"), 5, manifold.density_coverage,
            "density and coverage, k = 5 (Naeem et al. 2020; higher is better)")


# ------------------------------------------------------------------------------ dispatch
@register_metric("div", keys=("div_fake", "div_real", "div_ratio"),
                 help="diversity: mean pairwise distance between the Inception features of 256 "
                      "samples, of the fakes and of the reals, and their ratio (a collapsed G: << 1)")
def diversity(fake: FeatureSet, real: FeatureSet, *, seed: int = 0, n: int = 256) -> dict:
    f = formulas.mean_pairwise_distance(fake.features, n=n, seed=seed)
    r = formulas.mean_pairwise_distance(real.features, n=n, seed=seed)
    return {"div_fake": f, "div_real": r, "div_ratio": f / r if r > 0 else float("nan")}


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


def check_n(metrics, n: int, what: str, fix: str) -> None:
    """Refuse ``n`` images a side when a metric of ``metrics`` needs more: the one check (and the
    one sentence) of `vitgan eval -n` and of training's metrics_n, made before any work."""
    names = parse_metrics(metrics)
    worst = max(names, key=lambda m: METRICS[m].min_n)
    if n < METRICS[worst].min_n:
        raise OptionError(f"{what}: {worst} needs at least {METRICS[worst].min_n} images a side; {fix}")


def needs_real(metrics) -> tuple[str, ...]:
    """The metrics of ``metrics`` that compare against real images."""
    return tuple(m for m in parse_metrics(metrics) if METRICS[m].needs_real)


def compute_metrics(fake: FeatureSet, real: FeatureSet | None, metrics, *, seed: int = 0) -> dict:
    """Numbers for ``metrics`` from the two feature sets. IS without logits -> None + ``is_note``."""
    out: dict = {}
    for name in parse_metrics(metrics):
        out.update(METRICS[name].fn(fake, real, seed=seed))
    return out


# ------------------------------------------------------------------------------ the pipeline
@dataclasses.dataclass
class Evaluation:
    values: dict          # {"fid": ..., "kid_mean": ..., ...} (IS unavailable: None + "is_note")
    n_fake: int
    n_real: int | None    # None when no metric needed the real side
    network: str          # the feature network's name and sha256
    network_sha256: str
    class_counts: list[int] | None = None  # a conditional G: samples generated per class


def evaluate(metrics, *, fake, real=None, n: int, batch: int = 64, device="cpu", seed: int = 0,
             truncation_psi: float = 1.0, inception=None, cache_dir=None,
             fake_split: str | None = None, real_split: str | None = None,
             progress: bool = False, per_class: bool = False, precision: str = "auto") -> Evaluation:
    """Compute ``metrics`` of ``fake`` (a generator, ``fake.cfg.z_dim``, or an image dataset)
    against the image dataset ``real`` (only needed by metrics that compare).

    Generator: ``n`` samples ``G(z, truncation_psi)`` from latents seeded with ``seed``. Datasets:
    ``min(n, len)`` images (a fixed random subset when larger), their statistics cached under
    ``cache_dir`` (default ``~/.cache/vitgan/stats``). ``inception``: a ``FeatureExtractor``, a
    path, or None for the usual search; ``precision``: the network's (fp32, bf16, auto:
    ``vitgan.metrics.inception``) when it is loaded here. Under torchrun every rank must call this.

    A class-conditional G generates its classes in ``real``'s proportions (``metrics.conditional``);
    ``per_class``: also intra-class FID (``intra_fid``, ``fid_per_class``) from the same features."""
    from vitgan.metrics.inception import load_inception

    names = parse_metrics(metrics)
    if needs_real(names) and real is None:
        raise OptionError(f"{', '.join(needs_real(names))} need(s) real images")
    if inception is None or isinstance(inception, (str, os.PathLike)):
        extractor = load_inception(inception, device, precision=precision)
    else:  # a FeatureExtractor (or anything with its interface)
        extractor = inception
    want_logits = any(METRICS[m].needs_logits for m in names) and extractor.has_logits
    cache = StatsCache(cache_dir)
    classes = list(getattr(getattr(fake, "cfg", None), "classes", None) or [])
    labels = None
    if per_class and not (classes and isinstance(fake, torch.nn.Module) and real is not None):
        raise OptionError("intra-class FID needs a class-conditional generator and real images")
    if per_class and cond.dataset_classes(real) != classes:  # checked on every rank, before any work
        raise OptionError(f"intra-class FID needs real images labelled with the generator's classes "
                          f"({', '.join(classes)}); {getattr(real, 'path', 'the real set')} has "
                          f"{', '.join(cond.dataset_classes(real) or ['no labels'])}")
    if classes and isinstance(fake, torch.nn.Module):
        labels = cond.generation_labels(n, cond.real_proportions(real, classes), seed=seed)
    if isinstance(fake, torch.nn.Module):
        feats, logits = generator_features(extractor, fake, n, batch=batch, device=device, seed=seed,
                                           truncation_psi=truncation_psi, want_logits=want_logits,
                                           desc="fake (generator)" if progress else None, labels=labels)
        fake_set = FeatureSet.from_features(feats.numpy(), None if logits is None else logits.numpy())
    else:
        fake_set = dataset_feature_set(extractor, fake, n, batch=batch, split=fake_split, cache=cache,
                                       want_logits=want_logits, desc="fake (images)" if progress else None)
    real_set = None
    if needs_real(names) or per_class:
        real_set = dataset_feature_set(extractor, real, n, batch=batch, split=real_split, cache=cache,
                                       desc="real" if progress else None)
    d = distributed.current()
    values = compute_metrics(fake_set, real_set, names, seed=seed) if d.is_main else None
    if per_class and d.is_main:
        real_labels = real.labels[torch.as_tensor(subset_indices(len(real), n), dtype=torch.long)]
        values.update(cond.intra_class_fid(fake_set.features, labels, real_set.features, real_labels, classes))
    # rank 0 computes (the 2048x2048 eigendecompositions once), every rank returns it
    values = distributed.broadcast_object(d, values)
    return Evaluation(values=values, n_fake=fake_set.n, n_real=None if real_set is None else real_set.n,
                      network=extractor.name, network_sha256=extractor.sha,
                      class_counts=None if labels is None else torch.bincount(labels, minlength=len(classes)).tolist())


def evaluate_generator(G, real_dataset, *, metrics=("fid",), n: int, batch: int = 64, device="cpu",
                       cache_dir=None, seed: int = 0, truncation_psi: float = 1.0,
                       inception=None, precision: str = "auto") -> dict[str, float]:
    """Metrics of ``G`` (the EMA generator) against ``real_dataset``: ``{"fid": 23.4, ...}``, the
    training hook around ``evaluate``. IS is left out (with a warning) when the network has no
    classifier. Under torchrun every rank must call this; every rank returns the same dict."""
    result = evaluate(metrics, fake=G, real=real_dataset, n=n, batch=batch, device=device, seed=seed,
                      truncation_psi=truncation_psi, inception=inception, cache_dir=cache_dir,
                      precision=precision)
    if "is_note" in result.values:
        warnings.warn(result.values["is_note"], stacklevel=2)
    return {k: v for k, v in result.values.items() if k != "is_note" and v is not None}


__all__ = ["METRICS", "Metric", "register_metric", "parse_metrics", "needs_real", "compute_metrics",
           "Evaluation", "evaluate", "evaluate_generator", "IS_UNAVAILABLE"]
