"""The metric formulas, in float64 NumPy, as NVIDIA's StyleGAN2-ADA ``metrics/`` computes them.

- FID (Heusel et al. 2017): ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), with the feature
  covariance normalised by N (``ddof=0``, as StyleGAN2-ADA's ``FeatureStats``; pytorch-fid and
  torchmetrics use N - 1, a relative difference of 1/N). The trace of the matrix square root is
  computed from symmetric eigendecompositions,
  Tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i(S1^(1/2) S2 S1^(1/2))),
  which equals ``scipy.linalg.sqrtm``'s answer (tested) and stays real and finite when the
  covariances are singular (fewer samples than 2048 features). With at most 2048 samples a side,
  ``frechet_distance_low_rank`` gets the same number from the features through one small SVD.
- KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3, averaged
  over ``num_subsets`` random subsets of size min(``max_subset_size``, n_fake, n_real) drawn
  without replacement (StyleGAN2-ADA, clean-fid, torchmetrics: 100 subsets of 1000). We report
  the mean and the (population) standard deviation over subsets, as torchmetrics does.
- IS (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) per split, mean and std over ``splits``
  consecutive splits (10), from the classifier's logits (softmax taken here).
"""

from __future__ import annotations

import numpy as np


def feature_stats(features, ddof: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of (N, D) features, in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need (N >= 2, D) features, got shape {f.shape}")
    mu = f.mean(axis=0)
    centred = f - mu
    sigma = centred.T @ centred / (f.shape[0] - ddof)
    return mu, sigma


def _clean(eigenvalues: np.ndarray) -> np.ndarray:
    """Eigenvalues below eigh's rounding level (d * eps * largest) are zeros of a PSD matrix.

    Without this, the round-off "eigenvalues" (~1e-13 relative) of the null space that covariances
    of N < 2048 samples have would each add their square root (~1e-7) to the trace below.
    """
    cutoff = eigenvalues.size * np.finfo(np.float64).eps * max(float(np.abs(eigenvalues).max()), 0.0)
    return np.where(eigenvalues > cutoff, eigenvalues, 0.0)


def _sym_sqrt(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(_clean(w))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (both covariances PSD)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    root1 = _sym_sqrt(s1)
    inner = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = np.sqrt(_clean(eig)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def frechet_distance_low_rank(fake, real, ddof: int = 0) -> float:
    """The same Frechet distance from the (N, D) features themselves, for N <= D.

    With centred features C1, C2 and S_i = C_i^T C_i / (N_i - ddof), the non-zero eigenvalues of
    S1 S2 are the squared singular values of M = C1 C2^T / sqrt((N1 - ddof)(N2 - ddof)), so
    Tr((S1 S2)^(1/2)) is M's nuclear norm: an N1 x N2 SVD instead of two D x D
    eigendecompositions (500 samples: milliseconds instead of seconds), and exact where the
    covariances are singular.
    """
    x = np.asarray(fake, dtype=np.float64)
    y = np.asarray(real, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(x.shape[0], y.shape[0]) < 2:
        raise ValueError(f"need (N >= 2, D) features of one D, got {x.shape} and {y.shape}")
    mx, my = x.mean(axis=0), y.mean(axis=0)
    cx, cy = x - mx, y - my
    nx, ny = x.shape[0] - ddof, y.shape[0] - ddof
    nuclear = np.linalg.svd(cx @ cy.T / np.sqrt(nx * ny), compute_uv=False).sum()
    diff = mx - my
    return float(diff @ diff + (cx * cx).sum() / nx + (cy * cy).sum() / ny - 2 * nuclear)


def fid_from_features(fake, real, ddof: int = 0) -> float:
    """FID of two feature sets: the low-rank form when both have at most D rows, else via S1, S2."""
    fake, real = np.asarray(fake), np.asarray(real)
    if max(fake.shape[0], real.shape[0]) <= fake.shape[1]:
        return frechet_distance_low_rank(fake, real, ddof)
    return frechet_distance(*feature_stats(fake, ddof), *feature_stats(real, ddof))


def kid_subset_values(fake, real, *, num_subsets: int = 100, max_subset_size: int = 1000,
                      seed: int = 0) -> np.ndarray:
    """Unbiased polynomial-kernel MMD^2 on each of ``num_subsets`` random subset pairs."""
    x_all = np.asarray(fake, dtype=np.float64)
    y_all = np.asarray(real, dtype=np.float64)
    d = x_all.shape[1]
    m = min(x_all.shape[0], y_all.shape[0], max_subset_size)
    if m < 2:
        raise ValueError("KID needs at least 2 fake and 2 real samples")
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for i in range(num_subsets):
        x = x_all[rng.choice(x_all.shape[0], m, replace=False)]
        y = y_all[rng.choice(y_all.shape[0], m, replace=False)]
        k_xx = (x @ x.T / d + 1) ** 3
        k_yy = (y @ y.T / d + 1) ** 3
        k_xy = (x @ y.T / d + 1) ** 3
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        values[i] = within - 2 * k_xy.sum() / (m * m)
    return values


def kernel_inception_distance(fake, real, *, num_subsets: int = 100, max_subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """(mean, std) of KID over subsets."""
    v = kid_subset_values(fake, real, num_subsets=num_subsets, max_subset_size=max_subset_size, seed=seed)
    return float(v.mean()), float(v.std())


def inception_score(logits, splits: int = 10) -> tuple[float, float]:
    """(mean, std) of the Inception Score over ``splits`` consecutive parts of (N, C) logits."""
    z = np.asarray(logits, dtype=np.float64)
    n = z.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"Inception Score with {splits} splits needs at least {splits} samples, got {n}")
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        part_p = p[i * n // splits:(i + 1) * n // splits]
        part_log_p = log_p[i * n // splits:(i + 1) * n // splits]
        log_marginal = np.log(part_p.mean(axis=0, keepdims=True))
        kl = (part_p * (part_log_p - log_marginal)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def mean_pairwise_distance(features, *, n: int = 256, seed: int = 0) -> float:
    """Mean Euclidean distance over the pairs i < j of ``n`` rows (a seeded draw without
    replacement; all rows when there are fewer) of ``features`` (N, F)."""
    from scipy.spatial.distance import pdist

    x = np.asarray(features, dtype=np.float64)
    if x.shape[0] > n:
        x = x[np.random.default_rng(seed).choice(x.shape[0], n, replace=False)]
    if x.shape[0] < 2:
        raise ValueError(f"mean pairwise distance needs at least 2 samples, got {x.shape[0]}")
    return float(pdist(x).mean())
