"""FID, KID and Inception Score with the standard Inception network, as StyleGAN2-ADA computes them.

- ``inception``: finding and loading the network (``load_inception``) and the ``FeatureExtractor``
  that feeds it uint8 images with NVIDIA's pre-processing.
- ``formulas``: the math (Frechet distance, KID, IS) in float64.
- ``features``: features of a generator or a dataset, split across ranks (``vitgan.distributed``).
- ``stats_cache``: feature statistics of datasets cached on disk.
- ``registry``: the metric registry (``register_metric``), ``compute_metrics``, and ``evaluate``,
  the one pipeline that ``vitgan eval`` and training (``evaluate_generator``) call.

See docs/metrics.md for the protocol and measured reference numbers.
"""

from vitgan.metrics.registry import (METRICS, Evaluation, compute_metrics, evaluate, evaluate_generator,
                                     parse_metrics, register_metric)
from vitgan.metrics.features import (
    dataset_feature_set,
    dataset_features,
    generator_features,
    subset_indices,
    to_uint8,
)
from vitgan.metrics.formulas import (
    feature_stats,
    fid_from_features,
    frechet_distance,
    frechet_distance_low_rank,
    inception_score,
    kernel_inception_distance,
)
from vitgan.metrics.inception import FeatureExtractor, load_inception, resolve_inception_path
from vitgan.metrics.stats_cache import FeatureSet, StatsCache, stats_key

__all__ = [
    "METRICS", "Evaluation", "compute_metrics", "evaluate", "evaluate_generator", "parse_metrics",
    "register_metric",
    "dataset_feature_set", "dataset_features", "generator_features", "subset_indices", "to_uint8",
    "feature_stats", "fid_from_features", "frechet_distance", "frechet_distance_low_rank", "inception_score",
    "kernel_inception_distance",
    "FeatureExtractor", "load_inception", "resolve_inception_path",
    "FeatureSet", "StatsCache", "stats_key",
]
