"""Precision / recall (k = 3) and density / coverage (k = 5) against a brute-force computation, and
their registration for `vitgan eval` and in-training evaluation (issue 14)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.distance import cdist

import test_metrics_standins as standins
from vitgan.errors import OptionError
from vitgan.metrics import manifold
from vitgan.metrics.registry import METRICS, compute_metrics, parse_metrics
from vitgan.metrics.stats_cache import FeatureSet


# ------------------------------------------------------------------ an independent implementation
def brute_kth(points, k):
    """k-th nearest other point, by sorting every row of scipy's distances, one point at a time."""
    d = cdist(points, points)
    radii = []
    for i in range(len(points)):
        others = sorted(d[i, j] for j in range(len(points)) if j != i)
        radii.append(others[k - 1])
    return np.array(radii)


def brute_pr(fake, real, k=3):
    r_real, r_fake = brute_kth(real, k), brute_kth(fake, k)
    d = cdist(fake, real)  # (fake, real)
    precision = np.mean([any(d[j, i] <= r_real[i] for i in range(len(real))) for j in range(len(fake))])
    recall = np.mean([any(d[j, i] <= r_fake[j] for j in range(len(fake))) for i in range(len(real))])
    return precision, recall


def brute_dc(fake, real, k=5):
    r_real = brute_kth(real, k)
    d = cdist(real, fake)  # (real, fake)
    count = sum(1 for i in range(len(real)) for j in range(len(fake)) if d[i, j] < r_real[i])
    density = count / (k * len(fake))
    coverage = np.mean([min(d[i]) < r_real[i] for i in range(len(real))])
    return density, coverage


def features(n, d=6, shift=0.0, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


# ------------------------------------------------------------------ the formulas
@pytest.mark.parametrize("n_fake,n_real,shift,seed", [(40, 30, 0.0, 0), (25, 50, 0.7, 1), (60, 60, 1.5, 2)])
def test_precision_recall_match_brute_force(n_fake, n_real, shift, seed):
    fake, real = features(n_fake, shift=shift, seed=seed), features(n_real, seed=seed + 10)
    got = manifold.precision_recall(fake, real, k=3)
    want = brute_pr(fake, real, k=3)
    assert got == pytest.approx(want, abs=0)  # fractions of whole counts: exactly equal
    assert 0 < got[0] < 1 or shift == 0.0  # a non-trivial case, not 0 or 1 everywhere
    assert manifold.precision_recall(fake, real, k=1) == pytest.approx(brute_pr(fake, real, k=1), abs=0)


@pytest.mark.parametrize("n_fake,n_real,shift,seed", [(40, 30, 0.0, 3), (25, 50, 0.7, 4), (60, 45, 1.5, 5)])
def test_density_coverage_match_brute_force(n_fake, n_real, shift, seed):
    fake, real = features(n_fake, shift=shift, seed=seed), features(n_real, seed=seed + 10)
    got = manifold.density_coverage(fake, real, k=5)
    want = brute_dc(fake, real, k=5)
    assert got[0] == pytest.approx(want[0], rel=1e-12) and got[1] == want[1]
    assert got[1] < 1 or shift == 0.0


def test_row_blocks_do_not_change_the_answer(monkeypatch):
    fake, real = features(37, shift=0.5, seed=7), features(41, seed=8)
    whole = manifold.precision_recall(fake, real), manifold.density_coverage(fake, real)
    monkeypatch.setattr(manifold, "BLOCK_ELEMENTS", 50)  # one or two rows per block
    assert (manifold.precision_recall(fake, real), manifold.density_coverage(fake, real)) == whole


def test_kth_neighbour_excludes_the_point_itself():
    pts = np.array([[0.0], [1.0], [3.0], [7.0]])
    assert list(manifold.knn_radii(pts, 1)) == [1.0, 1.0, 2.0, 4.0]
    assert list(manifold.knn_radii(pts, 3)) == [7.0, 6.0, 4.0, 7.0]


def test_same_set_and_far_sets():
    x = features(30, seed=9)
    assert manifold.precision_recall(x, x) == (1.0, 1.0)
    assert manifold.density_coverage(x, x)[1] == 1.0
    assert manifold.precision_recall(x + 100, x) == (0.0, 0.0)
    assert manifold.density_coverage(x + 100, x) == (0.0, 0.0)


def test_bad_shapes():
    with pytest.raises(ValueError, match="nearest neighbours need more than 3 points"):
        manifold.knn_radii(features(3), 3)
    with pytest.raises(ValueError, match="feature widths differ"):
        manifold.precision_recall(features(10, d=4), features(10, d=5))


# ------------------------------------------------------------------ the registry, eval and training
def test_registered_for_eval_and_training():
    assert parse_metrics("fid,kid,pr,dc") == ("fid", "kid", "pr", "dc")
    assert METRICS["pr"].keys == ("precision", "recall") and METRICS["pr"].needs_real
    assert METRICS["dc"].keys == ("density", "coverage") and METRICS["dc"].needs_real
    fake, real = FeatureSet.from_features(features(20, seed=1)), FeatureSet.from_features(features(25, seed=2))
    out = compute_metrics(fake, real, "pr,dc")
    assert (out["precision"], out["recall"]) == manifold.precision_recall(fake.features, real.features, k=3)
    assert (out["density"], out["coverage"]) == manifold.density_coverage(fake.features, real.features, k=5)


def test_too_few_images_is_an_option_error():
    small = FeatureSet.from_features(features(3))
    with pytest.raises(OptionError, match="needs more than 3 images a side"):
        compute_metrics(small, FeatureSet.from_features(features(10)), "pr")


def test_vitgan_eval_reports_precision_and_recall(tmp_path, monkeypatch, capsys):
    from vitgan.commands import eval as eval_cmd

    G = standins.TinyGenerator(resolution=8)
    real = standins.TensorDataset(standins.random_images(30, size=8))
    run, parser = standins.stand_in_eval(monkeypatch, tmp_path, G, real)
    common = [str(run), "--real", "x", "--n", "30", "--device", "cpu", "--cache-dir", str(tmp_path / "c")]
    assert eval_cmd.run(parser.parse_args([*common, "--metrics", "fid,kid,pr,dc", "--json"])) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"fid", "kid_mean", "precision", "recall", "density", "coverage"} <= set(out)
    assert all(0 <= out[k] <= 1 for k in ("precision", "recall", "coverage")) and out["density"] >= 0
    assert eval_cmd.run(parser.parse_args([*common, "--metrics", "pr"])) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert float(lines["precision"]) == pytest.approx(out["precision"], abs=1e-4)
    assert float(lines["recall"]) == pytest.approx(out["recall"], abs=1e-4)


def test_training_writes_metric_pr_jsonl(tmp_path, monkeypatch):
    """In-training evaluation through the registry: metric-pr.jsonl holds precision and recall."""
    from test_train_helpers import main, make_images, small_args

    monkeypatch.setenv("VITGAN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("vitgan.metrics.inception.load_inception", lambda path, device, **kw: standins.StandInExtractor())
    data = make_images(tmp_path / "imgs")
    run = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--data", data, "--kimg", "0.016", "--out", run,
                 *small_args(metrics="pr,dc", metrics_kimg=0.016, metrics_n=8)]) == 0
    rows = [json.loads(line) for line in (run / "metric-pr.jsonl").read_text().splitlines()]
    assert rows and {"precision", "recall"} <= set(rows[-1]) and rows[-1]["n"] == 8
    assert 0 <= rows[-1]["precision"] <= 1 and 0 <= rows[-1]["recall"] <= 1
    dc = json.loads((run / "metric-dc.jsonl").read_text().splitlines()[-1])
    assert {"density", "coverage"} <= set(dc)


def test_mean_pairwise_distance_against_brute_force_and_the_div_metric():
    from vitgan.metrics import formulas
    from vitgan.metrics.registry import METRICS, compute_metrics
    from vitgan.metrics.stats_cache import FeatureSet

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 7))
    brute = np.mean([np.linalg.norm(x[i] - x[j]) for i in range(40) for j in range(i + 1, 40)])
    assert formulas.mean_pairwise_distance(x, n=256) == pytest.approx(brute, rel=1e-9)
    sub = formulas.mean_pairwise_distance(rng.normal(size=(1000, 7)), n=256, seed=3)
    assert sub == pytest.approx(np.sqrt(2) * np.sqrt(7) * 0.98, rel=0.05)  # E|a-b| for N(0, I_7)
    assert "div" in METRICS
    real = FeatureSet.from_features(rng.normal(size=(300, 7)))
    collapsed = FeatureSet.from_features(0.05 * rng.normal(size=(300, 7)) + 1.0)
    out = compute_metrics(collapsed, real, ["div"])
    assert out["div_ratio"] == pytest.approx(out["div_fake"] / out["div_real"])
    assert out["div_ratio"] < 0.1
