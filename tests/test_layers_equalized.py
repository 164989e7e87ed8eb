"""Equalised learning rate: stored scale, run-time gain, ISN / SN on the stored matrix, the gain
each normalised layer of ViT-D ends up with, and what Adam's step does in each parametrisation."""

import math

import pytest
import torch
from torch import nn

from vitgan.config import ModelConfig, model_config
from vitgan.models.vit_discriminator import Discriminator
from vitgan.models.vit_generator import Generator
from vitgan.layers.equalized import (EqualizedConv2d, EqualizedLinear, effective_weight, make_linear,
                                     weight_gain)
from vitgan.layers.isn import normalise_weight, spectral_parts


def _sigma(m: torch.Tensor) -> float:
    return torch.linalg.matrix_norm(m.detach().flatten(1).double(), 2).item()


def test_equalized_linear_stores_unit_weights_and_scales_at_run_time():
    torch.manual_seed(0)
    fc = EqualizedLinear(256, 128)
    assert abs(fc.weight.std().item() - 1) < 0.02                  # stored N(0, 1)
    assert fc.weight_gain == pytest.approx(1 / 16)                  # 1 / sqrt(fan_in)
    x = torch.randn(5, 256)
    torch.testing.assert_close(fc(x), x @ (fc.weight / 16).t() + fc.bias)
    # lr multiplier: stored N(0, 1/lr^2), gain lr / sqrt(in), bias stored b / lr, used b * lr
    slow = EqualizedLinear(64, 8, lr_mult=0.01, bias_init=0.5)
    assert abs(slow.weight.std().item() - 100) < 15
    torch.testing.assert_close(slow.bias * slow.bias_gain, torch.full((8,), 0.5))
    torch.testing.assert_close(slow(x[:, :64]), x[:, :64] @ (slow.weight * 0.01 / 8).t() + 0.5)


def test_init_std_sets_the_effective_weight_in_both_parametrisations():
    torch.manual_seed(0)
    for eq in (True, False):
        fc = make_linear(400, 300, equalized=eq, init_std=0.07, bias_init=1.0)
        assert abs(effective_weight(fc).std().item() - 0.07) < 0.002
        assert torch.all(fc(torch.zeros(1, 400)) == 1.0)
    plain = make_linear(400, 300, equalized=False)
    assert type(plain) is nn.Linear and abs(plain.weight.std().item() - 0.02) < 0.001


def test_equalized_conv_gain_counts_channels_per_group_and_kernel():
    conv = EqualizedConv2d(3, 16, 8, stride=4, padding=2)
    assert conv.weight_gain == pytest.approx(1 / math.sqrt(3 * 64))
    dw = EqualizedConv2d(16, 16, 3, padding=1, groups=16, bias=False)
    assert dw.weight_gain == pytest.approx(1 / 3)
    x = torch.randn(2, 3, 32, 32)
    ref = torch.nn.functional.conv2d(x, conv.weight * conv.weight_gain, conv.bias, stride=4, padding=2)
    torch.testing.assert_close(conv(x), ref)


def test_isn_on_an_equalized_layer_uses_sigma_of_the_stored_initial_matrix():
    torch.manual_seed(0)
    fc = EqualizedLinear(192, 384)
    w0 = fc.weight.detach().clone()
    normalise_weight(fc, "isn")
    sn, scale = spectral_parts(fc)
    # sigma(W_init) is the stored (unit-scale) matrix's, as in the official code
    assert scale.sigma_init.item() == pytest.approx(_sigma(w0), rel=1e-4)
    # so the effective spectral norm is gain * sigma(W_init) ~ 1 + sqrt(out / in) for N(0, 1)
    eff = _sigma(effective_weight(fc))
    assert eff == pytest.approx(_sigma(w0) / math.sqrt(192), rel=1e-4)
    assert eff == pytest.approx(1 + math.sqrt(384 / 192), rel=0.1)
    # and it stays there when the stored weight moves (ISN pins it)
    with torch.no_grad():
        fc.parametrizations.weight.original.mul_(3).add_(torch.randn_like(w0))
    fc.train()
    for _ in range(30):  # let the power iteration converge on the new matrix
        fc(torch.randn(1, 192))
    assert _sigma(effective_weight(fc)) == pytest.approx(eff, rel=1e-3)


def test_sn_on_an_equalized_layer_gives_unit_spectral_norm_of_the_effective_weight():
    fc = EqualizedLinear(96, 48)
    normalise_weight(fc, "sn")
    assert _sigma(effective_weight(fc)) == pytest.approx(1.0, rel=1e-4)
    plain = nn.Linear(96, 48)
    normalise_weight(plain, "sn")
    assert _sigma(plain.weight) == pytest.approx(1.0, rel=1e-4)
    assert len(plain.parametrizations.weight) == 1  # plain SN layers keep their old state-dict keys


@pytest.mark.parametrize("equalized,lo,hi", [(True, 1.0, 3.1), (False, 0.5, 1.5)])
def test_every_isn_layer_of_vit_d_ends_with_the_gain_of_its_parametrisation(equalized, lo, hi):
    """Equalised: gain ~ 1 + sqrt(out/in) (1-3). Plain std-0.02 layers: 0.02 (sqrt(out) + sqrt(in))
    (0.77-1.17 at the paper's size, 0.32-0.4 for tiny): ISN keeps that for the whole run."""
    torch.manual_seed(0)
    D = Discriminator(model_config("cifar10").replace(equalized_lr=equalized))
    gains = {}
    for name, m in D.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            assert getattr(m, "weight_gain", 1.0) == (weight_gain(m) if equalized else 1.0)
            gains[name] = _sigma(effective_weight(m))
    assert len(gains) == 1 + 4 * 5 + 1  # patch embedding, 4 blocks x (qk, v, proj, fc1, fc2), head
    # the head is 384 -> 1 (sigma = |w|); equalised L2 attention's W_qk carries the gain c
    body = {k: v for k, v in gains.items() if k != "head" and not (equalized and k.endswith("to_qk"))}
    assert lo < min(body.values()) and max(body.values()) < hi, gains
    out, inn = 1536, 384
    if not equalized:  # random-matrix spectral norm of N(0, 0.02^2): 0.02 (sqrt(out) + sqrt(in))
        assert gains["blocks.0.mlp.0"] == pytest.approx(0.02 * (out ** 0.5 + inn ** 0.5), rel=0.05)
        assert gains["blocks.0.attn.to_v"] == pytest.approx(0.02 * 2 * inn ** 0.5, rel=0.05)
    else:
        assert gains["blocks.0.mlp.0"] == pytest.approx(1 + math.sqrt(out / inn), rel=0.1)
        assert gains["blocks.0.mlp.2"] == pytest.approx(1 + math.sqrt(inn / out), rel=0.1)
        c = (2 * math.sqrt(384 / 6)) ** -0.5  # = 1/4 at d_h = 64
        assert gains["blocks.0.attn.to_qk"] == pytest.approx(c * 2, rel=0.1)   # c (1 + sqrt(1))


def test_adam_relative_step_is_about_fifty_times_smaller_when_equalized():
    """At lr 0.002 a plain std-0.02 weight changes ~10 % per step; an equalised one ~0.2 %."""
    torch.manual_seed(0)
    ratios = {}
    for eq in (True, False):
        fc = make_linear(384, 384, equalized=eq)
        opt = torch.optim.Adam(fc.parameters(), lr=0.002, betas=(0.0, 0.99))
        before = fc.weight.detach().clone()
        fc(torch.randn(64, 384)).square().mean().backward()
        opt.step()
        ratios[eq] = ((fc.weight - before).norm() / before.norm()).item()
    assert ratios[False] == pytest.approx(0.1, rel=0.1)
    assert ratios[True] == pytest.approx(0.002, rel=0.1)


def test_generator_layers_are_equalized_except_the_sine_embeddings():
    G = Generator(model_config("tiny"))
    for name, m in G.named_modules():
        if isinstance(m, nn.Linear):
            is_sine = name.endswith("pos_embedding.linear") or name.endswith("fourier.linear")
            assert isinstance(m, EqualizedLinear) != is_sine, name
    legacy = Generator(model_config("tiny").replace(equalized_lr=False))
    assert not any(isinstance(m, EqualizedLinear) and not name.startswith("mapping")
                   for name, m in legacy.named_modules())


def test_configs_saved_before_the_switch_rebuild_the_plain_parametrisation():
    old = model_config("tiny").to_dict()
    del old["equalized_lr"]
    assert ModelConfig.from_dict(old).equalized_lr is False
    assert ModelConfig.from_dict(model_config("tiny").to_dict()).equalized_lr is True


def test_l2_qk_gain_puts_unrelated_tokens_at_logit_minus_one():
    """Independent check of the gain's derivation: LayerNorm'd random tokens, a fan-in-scaled
    W_qk times c, the paper's L2 logit -||q_i - q_j||^2 / sqrt(d_h) by torch.cdist."""
    from vitgan.layers.attention import Attention, l2_qk_gain

    torch.manual_seed(0)
    dim, heads = 384, 6
    dh = dim // heads
    assert l2_qk_gain(dh) == pytest.approx(0.25)
    x = nn.functional.layer_norm(torch.randn(1, 65, dim), (dim,))
    for c, want in ((l2_qk_gain(dh), -1.0), (1.0, -2 * math.sqrt(dh))):
        attn = Attention(dim=dim, heads=heads, kind="l2", equalized=True, qk_gain=c)
        assert attn.to_qk.weight.std().item() == pytest.approx(1.0, abs=0.02)   # stored N(0, 1) still
        assert attn.to_qk.weight_gain == pytest.approx(c / math.sqrt(dim))
        with torch.no_grad():
            q = (x @ effective_weight(attn.to_qk).t()).view(65, heads, dh).transpose(0, 1)
            d2 = torch.cdist(q, q) ** 2 / math.sqrt(dh)
        off = d2[:, ~torch.eye(65, dtype=torch.bool)]
        assert -off.mean().item() == pytest.approx(want, rel=0.15)


def test_qk_gain_of_the_config_and_of_configs_saved_before_it():
    from vitgan.models.vit_discriminator import qk_gain

    cfg = model_config("cifar10")
    assert cfg.d_qk_gain is None and qk_gain(cfg) == pytest.approx(0.25)
    assert qk_gain(cfg.replace(d_qk_gain=0.5)) == 0.5
    assert qk_gain(cfg.replace(d_attention="dot")) == 1.0 and qk_gain(cfg.replace(equalized_lr=False)) == 1.0
    old = cfg.to_dict()
    del old["d_qk_gain"]
    assert qk_gain(ModelConfig.from_dict(old)) == 1.0   # an equalised checkpoint from before: fan-in scale
    from vitgan.errors import OptionError
    with pytest.raises(OptionError, match="d_qk_gain"):
        cfg.replace(d_qk_gain=-1.0)


def test_default_vit_d_is_not_blind_at_initialisation():
    """With c = 1 the class token attends only to itself and D's logits hardly depend on the
    image (measured: std 0.001 over CIFAR images at the paper's size); with the default gain they do."""
    from vitgan.layers.attention import Attention

    torch.manual_seed(0)
    images = torch.rand(16, 3, 32, 32) * 2 - 1
    for gain, blind in ((1.0, True), (None, False)):
        D = Discriminator(model_config("cifar10").replace(d_qk_gain=gain)).eval()
        layers = [m for m in D.modules() if isinstance(m, Attention)]
        inputs = {}
        hooks = [m.register_forward_pre_hook(lambda mod, a, i=i: inputs.__setitem__(i, a[0]))
                 for i, m in enumerate(layers)]
        with torch.no_grad():
            D(images)
        for h in hooks:
            h.remove()
        cls_self = min(layers[i].probabilities(inputs[i])[:, :, 0, 0].mean().item() for i in inputs)
        assert (cls_self > 0.95) == blind, (gain, cls_self)


def _adam_relative_step(param: torch.Tensor, loss_fn) -> float:
    opt = torch.optim.Adam([param], lr=0.002, betas=(0.0, 0.99))
    before = param.detach().clone()
    loss_fn().backward()
    opt.step()
    return ((param - before).norm() / before.norm()).item()


@pytest.mark.parametrize("unit", [True, False])
def test_sln_affine_storage_same_function_scale_and_its_adam_step(unit):
    """sln_unit_storage: A stored N(0, 1) with sln_init_std in the run-time gain (Adam's
    relative step ~0.2 % at lr 0.002, like every equalised layer); False: stored at std 0.5."""
    from vitgan.layers.sln import SLN

    torch.manual_seed(0)
    sln = SLN(dim=256, w_dim=256, init_std=0.5, equalized=True, unit_storage=unit)
    assert abs(sln.affine.weight.std().item() - (1.0 if unit else 0.5)) < 0.02
    assert abs(effective_weight(sln.affine).std().item() - 0.5 / 16) < 0.001  # same function scale
    w = torch.randn(64, 256)
    step = _adam_relative_step(sln.affine.weight, lambda: sln(torch.randn(64, 4, 256), w).square().mean())
    assert step == pytest.approx(0.002 if unit else 0.004, rel=0.15)


def test_sln_storage_of_presets_and_of_configs_saved_before_it():
    G = Generator(model_config("tiny"))
    assert abs(G.blocks[0].norm1.affine.weight.std().item() - 1.0) < 0.1
    old = model_config("tiny").to_dict()
    del old["sln_unit_storage"]
    assert ModelConfig.from_dict(old).sln_unit_storage is False


@pytest.mark.parametrize("equalized", [True, False])
def test_d_tokens_init_and_adam_step_in_both_storages(equalized):
    """d_tokens_equalized: x_cls and E_pos stored N(0, 1) times 0.02 (effective std 0.02 either
    way); Adam then moves them ~0.2 % a step instead of ~10 %."""
    torch.manual_seed(0)
    D = Discriminator(model_config("tiny").replace(d_tokens_equalized=equalized))
    eff = D.pos_embedding * D.token_gain
    assert abs(eff.std().item() - 0.02) < 0.002
    x = torch.randn(4, 3, 32, 32)
    step = _adam_relative_step(D.pos_embedding, lambda: D(x).square().mean())
    assert step == pytest.approx(0.002 if equalized else 0.1, rel=0.25)


def test_fourier_width_is_the_generator_width_unless_set():
    cfg = model_config("cifar10")
    assert cfg.fourier_dim is None and cfg.fourier_width == 384       # eq. (13): E_fou in R^{P^2 x D}
    assert Generator(model_config("tiny")).head.fourier.linear.out_features == 64
    assert model_config("tiny").replace(fourier_dim=32).fourier_width == 32


def test_isn_learned_gain_scales_the_spectral_norm_and_is_trained():
    """d_isn_learned_gain: W_eff = gamma * g * sigma(W_init) * W / sigma(W), gamma a parameter
    starting at 1 (so the function at init is ISN's), learned by D's optimiser."""
    torch.manual_seed(0)
    cfg = model_config("tiny").replace(d_isn_learned_gain=True)
    D, D0 = Discriminator(cfg), Discriminator(cfg.replace(d_isn_learned_gain=False))
    D0.load_state_dict(D.state_dict(), strict=False)
    x = torch.randn(3, 3, 32, 32)
    D.eval(), D0.eval()
    torch.testing.assert_close(D(x), D0(x))                                   # gamma = 1: ISN
    layer = D.blocks[0].mlp[0]
    sn, scale = spectral_parts(layer)
    with torch.no_grad():
        scale.gamma.fill_(1.7)
    expected = 1.7 * weight_gain(layer) * scale.sigma_init.item()
    assert _sigma(effective_weight(layer)) == pytest.approx(expected, rel=1e-3)
    gammas = [n for n, _ in D.named_parameters() if n.endswith("gamma")]
    assert len(gammas) == sum(1 for m in D.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    D.train()
    D(x).sum().backward()
    assert scale.gamma.grad is not None and scale.gamma.grad.abs().item() > 0
