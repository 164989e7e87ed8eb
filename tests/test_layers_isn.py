"""Improved spectral normalisation: W_ISN = sigma(W_init) * W / sigma(W)."""

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vitgan.layers.isn import apply_weight_norm, normalise_weight, spectral_parts


def _layers():
    return [nn.Linear(48, 24), nn.Linear(24, 96), nn.Conv2d(3, 16, 4, stride=2, padding=1),
            nn.Conv2d(8, 8, 3, groups=8, bias=False)]


def _sigma_svd(w: torch.Tensor) -> torch.Tensor:
    return torch.linalg.matrix_norm(w.detach().flatten(1), ord=2)


@pytest.mark.parametrize("layer", _layers(), ids=lambda m: type(m).__name__)
def test_isn_at_construction_equals_raw_weight(layer):
    raw = layer.weight.detach().clone()
    normalise_weight(layer, "isn")
    layer.train()
    for _ in range(3):  # stays equal while training steps advance the power iteration
        torch.testing.assert_close(layer.weight, raw, rtol=1e-4, atol=1e-6)
    sn, scale = spectral_parts(layer)
    torch.testing.assert_close(scale.sigma_init, _sigma_svd(raw).reshape(1), rtol=1e-5, atol=0)


@pytest.mark.parametrize("layer", _layers(), ids=lambda m: type(m).__name__)
def test_sn_has_unit_spectral_norm(layer):
    normalise_weight(layer, "sn")
    torch.testing.assert_close(_sigma_svd(layer.weight), torch.tensor(1.0), rtol=1e-4, atol=0)
    assert len(layer.parametrizations.weight) == 1


def test_scaling_raw_weight_leaves_normalised_weight_unchanged():
    layer = normalise_weight(nn.Linear(40, 30), "isn").train()
    before = layer.weight.detach().clone()
    with torch.no_grad():
        layer.parametrizations.weight.original.mul_(7.5)
    torch.testing.assert_close(layer.weight, before, rtol=1e-5, atol=1e-6)
    # also for a direction change of the raw weight: sigma(W_ISN) stays sigma(W_init) once converged
    with torch.no_grad():
        layer.parametrizations.weight.original.add_(torch.randn(30, 40))
    for _ in range(300):
        w = layer.weight
    torch.testing.assert_close(_sigma_svd(w), _sigma_svd(before), rtol=1e-3, atol=0)


def test_power_iteration_estimate_approaches_svd_sigma():
    layer = normalise_weight(nn.Linear(64, 32), "sn").train()
    sn, _ = spectral_parts(layer)
    with torch.no_grad():  # restart the iteration from random vectors
        sn.u.copy_(F.normalize(torch.randn(32), dim=0))
        sn.v.copy_(F.normalize(torch.randn(64), dim=0))
    raw = layer.parametrizations.weight.original
    exact = _sigma_svd(raw)
    errors = []
    for step in range(200):
        layer.weight  # one power-iteration step per training forward
        with torch.no_grad():
            errors.append((exact - sn.u @ raw @ sn.v).item() / exact.item())
    assert errors[0] > 1e-3          # the random start was not already converged
    assert errors[-1] < 1e-5         # ... and it converges to the SVD value
    assert errors[-1] <= errors[10] <= errors[0]
    assert min(errors) > -1e-6       # u^T W v never over-estimates sigma


def test_iteration_vector_in_state_dict_and_survives_save_load():
    layer = normalise_weight(nn.Linear(20, 10), "isn").train()
    with torch.no_grad():
        layer.parametrizations.weight.original.add_(torch.randn(10, 20))
    for _ in range(3):
        layer(torch.randn(4, 20))
    sd = layer.state_dict()
    assert {"parametrizations.weight.0.u", "parametrizations.weight.0.v",
            "parametrizations.weight.1.sigma_init", "parametrizations.weight.original"} <= set(sd)
    buf = io.BytesIO()
    torch.save(sd, buf)
    torch.manual_seed(123)
    other = normalise_weight(nn.Linear(20, 10), "isn").train()
    other.load_state_dict(torch.load(io.BytesIO(buf.getvalue())))
    sn_a, _ = spectral_parts(layer)
    sn_b, _ = spectral_parts(other)
    assert torch.equal(sn_a.u, sn_b.u) and torch.equal(sn_a.v, sn_b.v)
    x = torch.randn(4, 20)
    assert torch.equal(layer(x), other(x))  # same next power-iteration step, same output
    assert torch.equal(sn_a.u, sn_b.u)


def test_eval_mode_does_not_advance_the_iteration():
    layer = normalise_weight(nn.Linear(20, 10), "isn")
    sn, _ = spectral_parts(layer)
    with torch.no_grad():
        layer.parametrizations.weight.original.add_(torch.randn(10, 20))  # u is no longer converged
    layer.eval()
    u = sn.u.clone()
    w1 = layer.weight.detach().clone()
    layer(torch.randn(3, 20))
    assert torch.equal(sn.u, u) and torch.equal(layer.weight, w1)
    layer.train()
    layer(torch.randn(3, 20))
    assert not torch.equal(sn.u, u)


def test_gradient_flows_through_sigma():
    layer = normalise_weight(nn.Linear(6, 5), "sn").train()
    raw = layer.parametrizations.weight.original
    (g,) = torch.autograd.grad(layer.weight.sum(), raw)
    # d/dW sum(W / sigma(W)) with sigma = u^T W v: 1/sigma - sum(W) u v^T / sigma^2
    sn, _ = spectral_parts(layer)
    sigma = (sn.u @ raw @ sn.v).detach()
    expected = torch.ones_like(raw) / sigma - raw.detach().sum() * torch.outer(sn.u, sn.v) / sigma ** 2
    torch.testing.assert_close(g, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["isn", "sn", "none"])
def test_apply_weight_norm_covers_every_linear_and_conv(kind):
    model = nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.Conv2d(2, 2, 3), nn.LayerNorm(8)),
                          nn.Linear(8, 1))
    apply_weight_norm(model, kind)
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            assert hasattr(m, "parametrizations") == (kind != "none")
    clone = copy.deepcopy(model)  # deepcopy works and copies buffers independently
    if kind != "none":
        sn, _ = spectral_parts(clone[0])
        sn.u.add_(1.0)
        assert not torch.equal(sn.u, spectral_parts(model[0])[0].u)


def test_sigma_stays_fp32_under_autocast():
    layer = normalise_weight(nn.Linear(16, 8), "isn").train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(torch.randn(2, 16))
    assert y.dtype == torch.bfloat16
    sn, _ = spectral_parts(layer)
    assert sn.u.dtype == torch.float32
    torch.testing.assert_close(layer.weight, layer.parametrizations.weight.original, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["isn", "sn"])
def test_discriminator_in_float64(kind):
    """Discriminator(cfg).double() runs (the power iteration follows the weights to fp64; it
    used to fail with 'addmv input tensors must have the same dtype') and agrees with fp32."""
    from vitgan import model_config
    from vitgan.models.vit_discriminator import Discriminator

    torch.manual_seed(0)
    D = Discriminator(model_config("tiny").replace(d_norm=kind))
    D64 = copy.deepcopy(D).double()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    for train in (True, False):
        D.train(train), D64.train(train)
        out, out64 = D(x), D64(x.double())
        assert out64.dtype == torch.float64
        torch.testing.assert_close(out64.float(), out, rtol=1e-4, atol=1e-4)
    sn, _ = spectral_parts(next(m for m in D64.modules() if hasattr(m, "parametrizations")))
    assert sn.u.dtype == sn.v.dtype == torch.float64
    D64.train()
    D64(x.double()).sum().backward()
    assert all(p.grad.dtype == torch.float64 for p in D64.parameters() if p.grad is not None)
