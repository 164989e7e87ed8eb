"""SLN and the mapping network."""

import dataclasses
import math

import torch
import torch.nn.functional as F

from vitgan.config import model_config
from vitgan.models.vit_generator import Generator
import pytest

from vitgan.layers.equalized import EqualizedLinear, effective_weight
from vitgan.layers.mapping import MappingNetwork, pixel_norm
from vitgan.layers.sln import SLN


def test_sln_with_unit_gamma_zero_beta_is_layernorm_without_affine():
    sln = SLN(dim=24, w_dim=10, init_std=0.1, equalized=True)
    with torch.no_grad():
        sln.affine.weight.zero_()
        sln.affine.bias.copy_(torch.cat([torch.ones(24), torch.zeros(24)]))
    h, w = torch.randn(3, 7, 24) * 5 + 2, torch.randn(3, 10)
    torch.testing.assert_close(sln(h, w), F.layer_norm(h, (24,)))


@pytest.mark.parametrize("equalized", [True, False])
def test_sln_is_affine_map_of_w_applied_to_normalised_tokens(equalized):
    sln = SLN(dim=16, w_dim=8, init_std=0.3, equalized=equalized)
    h, w = torch.randn(2, 5, 16), torch.randn(2, 8)
    gamma, beta = (w @ effective_weight(sln.affine).t() + sln.affine.bias).chunk(2, dim=-1)
    mean, var = h.mean(-1, keepdim=True), h.var(-1, unbiased=False, keepdim=True)
    expected = gamma[:, None] * (h - mean) / torch.sqrt(var + 1e-5) + beta[:, None]
    torch.testing.assert_close(sln(h, w), expected, rtol=1e-5, atol=1e-5)
    # at init gamma ~ 1, beta ~ 0 (for unit-RMS w)
    g0, b0 = sln.affine(pixel_norm(torch.randn(256, 8))).chunk(2, dim=-1)
    assert abs(g0.mean() - 1) < 0.05 and abs(b0.mean()) < 0.05
    assert 0.25 < g0.std() < 0.35 and 0.25 < b0.std() < 0.35  # 1 +- init_std, 0 +- init_std


def test_sln_different_w_give_different_outputs():
    sln = SLN(dim=16, w_dim=8, init_std=0.1, equalized=True)
    h = torch.randn(1, 5, 16).expand(2, -1, -1)
    out = sln(h, torch.randn(2, 8))
    assert (out[0] - out[1]).abs().max() > 1e-3


def test_gradients_reach_the_mapping_network_through_sln():
    G = Generator(model_config("tiny"))
    G(torch.randn(2, G.cfg.z_dim)).square().mean().backward()
    for name, p in G.mapping.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_generator_has_a_separate_sln_per_sublayer_and_a_final_one():
    G = Generator(model_config("tiny"))
    slns = [m for m in G.modules() if isinstance(m, SLN)]
    assert len(slns) == 2 * G.cfg.g_depth + 1
    assert len({id(m.affine.weight) for m in slns}) == len(slns)
    assert isinstance(G.norm, SLN)


def test_pixel_norm_and_equalised_lr():
    z = torch.randn(5, 32) * 3
    torch.testing.assert_close(pixel_norm(z).square().mean(-1), torch.ones(5), rtol=1e-5, atol=1e-6)
    fc = EqualizedLinear(64, 32, lr_mult=0.01)
    # stored weight is N(0, 1/lr^2); the effective weight lr/sqrt(in) * W has std 1/sqrt(in)
    eff = fc.weight * fc.weight_gain
    assert abs(eff.std().item() * math.sqrt(64) - 1) < 0.1
    x = torch.randn(3, 64)
    torch.testing.assert_close(fc(x), x @ eff.t() + fc.bias * 0.01)


def test_mapping_network_shape_depth_and_unit_rms():
    m = MappingNetwork(z_dim=32, w_dim=48, layers=4, lr_mult=0.01)
    assert len(m.layers) == 4
    w = m(torch.randn(512, 32))
    assert w.shape == (512, 48)
    assert 0.5 < w.square().mean().sqrt() < 2.0  # leaky ReLU gain sqrt(2) keeps unit RMS
    # the network is pixel norm, then per layer leaky_relu(z W_eff^T + b_eff, 0.2) * sqrt(2)
    z = torch.randn(5, 32)
    h = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
    for layer in m.layers:
        h = F.leaky_relu(h @ (layer.weight * layer.weight_gain).t() + layer.bias * 0.01, 0.2) * math.sqrt(2)
    torch.testing.assert_close(m(z), h)
    ident = MappingNetwork(z_dim=16, w_dim=16, layers=0)
    z = torch.randn(3, 16)
    torch.testing.assert_close(ident(z), pixel_norm(z))


def test_w_avg_tracks_w_in_training_and_truncation_pulls_to_it():
    G = Generator(model_config("tiny"))
    z = torch.randn(4, G.cfg.z_dim)
    G.train()
    G(z)
    w = G.mapping(z)
    torch.testing.assert_close(G.w_avg, 0.005 * w.mean(0).detach(), rtol=1e-4, atol=1e-7)
    G.eval()
    before = G.w_avg.clone()
    x0 = G(torch.randn(3, G.cfg.z_dim), truncation_psi=0.0)
    assert torch.equal(G.w_avg, before)  # not updated in eval mode
    torch.testing.assert_close(x0, G.synthesis(G.w_avg.expand(3, -1)))
    torch.testing.assert_close(x0[0], x0[2])
    xh = G(z, truncation_psi=0.5)
    torch.testing.assert_close(xh, G.synthesis(G.w_avg + 0.5 * (w - G.w_avg)))


def test_sln_init_std_has_one_default_the_model_config():
    import inspect

    from vitgan.config import ModelConfig

    assert inspect.signature(SLN).parameters["init_std"].default is inspect.Parameter.empty
    G = Generator(ModelConfig(z_dim=8, w_dim=8, mapping_layers=1, g_dim=8, g_depth=1, g_heads=2,
                              g_mlp_dim=8, fourier_dim=8, inr_hidden=8, sln_init_std=0.0))
    sln = next(m for m in G.modules() if isinstance(m, SLN))
    assert float(sln.affine.weight.detach().abs().max()) == 0.0  # the config's value reached the layer


@pytest.mark.parametrize("g_block", ["paper", "official"])
def test_generator_block_equations(g_block):
    """paper: h' = MSA(SLN1(h, w)) + h, h'' = MLP(SLN2(h', w)) + h'; official (the authors'
    PyTorch port): s = SLN1(h, w), h' = MSA(s) + s, s' = SLN2(h', w), h'' = MLP(s') + s'.
    Recomputed from the block's parts, with SLN written out by hand."""
    torch.manual_seed(0)
    G = Generator(dataclasses.replace(model_config("tiny"), g_block=g_block))
    block = G.blocks[0]
    h, w = torch.randn(3, 16, G.cfg.g_dim), torch.randn(3, G.cfg.w_dim)

    def sln(norm, x):
        gamma, beta = (w @ effective_weight(norm.affine).t() + norm.affine.bias * norm.affine.bias_gain).chunk(2, -1)
        mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
        return gamma[:, None] * (x - mu) / torch.sqrt(var + 1e-5) + beta[:, None]

    with torch.no_grad():
        if g_block == "paper":
            h1 = block.attn(sln(block.norm1, h)) + h
            expected = block.mlp(sln(block.norm2, h1)) + h1
        else:
            s1 = sln(block.norm1, h)
            h1 = block.attn(s1) + s1
            s2 = sln(block.norm2, h1)
            expected = block.mlp(s2) + s2
        torch.testing.assert_close(block(h, w), expected, rtol=1e-4, atol=1e-4)
    # the two blocks differ on the same weights
    other = "official" if g_block == "paper" else "paper"
    G2 = Generator(dataclasses.replace(model_config("tiny"), g_block=other))
    G2.load_state_dict(G.state_dict())
    with torch.no_grad():
        assert (G2.blocks[0](h, w) - expected).abs().max() > 1e-2
