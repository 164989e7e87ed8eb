"""k-nearest-neighbour manifold metrics on feature vectors, in float64 NumPy.

- Precision and recall (Kynkaanniemi et al., NeurIPS 2019), as StyleGAN2-ADA's ``pr50k3``
  (``metrics/precision_recall.py``): the manifold of a set is the union of balls around each of
  its points, of radius the distance to the point's k-th nearest neighbour in the set (k = 3; the
  point itself does not count, so the radius is the (k+1)-th smallest distance of its row, the
  first being 0). Precision = the fraction of fake points inside the real manifold
  (``dist <= radius``), recall = the fraction of real points inside the fake manifold.
- Density and coverage (Naeem et al., ICML 2020), as their ``prdc`` package computes them, with
  the real set's k-NN radii only (k = 5, the paper's choice) and a strict ``<``:
  density = (1 / kN) sum_j #{i : d(fake_j, real_i) < r_i}, coverage = the fraction of real points
  whose nearest fake point lies inside their ball.

The distances are Euclidean, ||x - y|| = sqrt(|x|^2 + |y|^2 - 2 x.y), computed in row blocks so
that 50k x 50k stays within a few hundred MB at a time. StyleGAN2-ADA measures precision and
recall on VGG16 features; we use the Inception features FID uses (docs/metrics.md says why), so
the numbers are comparable with each other, not with published pr50k3 values.
"""

from __future__ import annotations

import numpy as np

BLOCK_ELEMENTS = 1 << 24  # a distance block of at most 16M float64s (128 MB)


def _f64(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 1:
        raise ValueError(f"{name}: need (N >= 1, D) features, got shape {a.shape}")
    return a


def _blocks(rows: np.ndarray, cols: np.ndarray):
    """Yield (start, distances of rows[start:start + b] to every col) in row blocks."""
    sq_cols = (cols * cols).sum(axis=1)
    step = max(1, BLOCK_ELEMENTS // max(1, cols.shape[0]))
    for start in range(0, rows.shape[0], step):
        r = rows[start:start + step]
        d2 = (r * r).sum(axis=1)[:, None] + sq_cols[None, :] - 2.0 * (r @ cols.T)
        yield start, np.sqrt(np.maximum(d2, 0.0))


def knn_radii(features, k: int) -> np.ndarray:
    """(N,) distance of each point to its k-th nearest other point of the same set."""
    x = _f64(features, "features")
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"k = {k} nearest neighbours need more than {k} points, got {x.shape[0]}")
    out = np.empty(x.shape[0])
    for start, d in _blocks(x, x):
        out[start:start + d.shape[0]] = np.partition(d, k, axis=1)[:, k]  # index 0: the point itself
    return out


def _inside(probes: np.ndarray, manifold: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """(P,) bool: probe j lies in some ball ||probe_j - manifold_i|| <= radii_i."""
    out = np.empty(probes.shape[0], dtype=bool)
    for start, d in _blocks(probes, manifold):
        out[start:start + d.shape[0]] = (d <= radii[None, :]).any(axis=1)
    return out


def precision_recall(fake, real, *, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of ``fake`` against ``real``."""
    x, y = _f64(fake, "fake"), _f64(real, "real")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature widths differ: {x.shape[1]} and {y.shape[1]}")
    precision = _inside(x, y, knn_radii(y, k)).mean()
    recall = _inside(y, x, knn_radii(x, k)).mean()
    return float(precision), float(recall)


def density_coverage(fake, real, *, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020) of ``fake`` against ``real``."""
    x, y = _f64(fake, "fake"), _f64(real, "real")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature widths differ: {x.shape[1]} and {y.shape[1]}")
    radii = knn_radii(y, k)
    hits = 0
    nearest_fake = np.empty(y.shape[0])
    for start, d in _blocks(y, x):  # rows: real points, columns: fake points
        hits += int((d < radii[start:start + d.shape[0], None]).sum())
        nearest_fake[start:start + d.shape[0]] = d.min(axis=1)
    density = hits / (k * x.shape[0])
    coverage = (nearest_fake < radii).mean()
    return float(density), float(coverage)


__all__ = ["knn_radii", "precision_recall", "density_coverage", "BLOCK_ELEMENTS"]
