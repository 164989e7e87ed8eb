"""Training-health diagnostics and the curves plot: each number against an independent computation."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from vitgan.config import ModelConfig, get_preset
from vitgan.models.vit_discriminator import Discriminator
from vitgan.models.vit_generator import Generator
from vitgan.layers.attention import Attention
from vitgan.layers.equalized import make_linear
from vitgan.layers.isn import normalise_weight
from vitgan.train.curves import plot_curves
from vitgan.train.diagnostics import Diagnostics, attention_entropy, layout_share, spectral_norms, update_ratio

RES = 8


class ConstG(nn.Module):
    """G(z) = z reshaped to images (stand-in with the Generator's call signature)."""

    def forward(self, z, update_w_avg=True):
        return z.view(-1, 3, RES, RES)


class LinearD(nn.Module):
    """D(x) = <a, x> + b through one (equalised, ISN) Linear: grad_x D = a_eff for every image."""

    def __init__(self):
        super().__init__()
        self.fc = normalise_weight(make_linear(3 * RES * RES, 1, equalized=True), "isn")

    def forward(self, x):
        return self.fc(x.flatten(1)).squeeze(1)


def _tiny_cfg(**kw) -> ModelConfig:
    return dataclasses.replace(get_preset("tiny")["model"], **kw)


def test_logits_gap_std_and_input_gradient_match_hand_computation():
    torch.manual_seed(0)
    D = LinearD()
    diag = Diagnostics(ConstG(), D)
    real = torch.rand(6, 3, RES, RES) * 2 - 1
    z = torch.randn(5, 3 * RES * RES)
    out = diag.measure(real, z)
    assert D.training  # measure restores the mode
    with torch.no_grad():
        D.eval()
        a = D.fc.weight * D.fc.weight_gain                 # the effective row vector (1, 192)
        lr = real.flatten(1) @ a[0] + D.fc.bias
        lf = z @ a[0] + D.fc.bias
    torch.testing.assert_close(out["diag/logit_real"], lr.mean())
    torch.testing.assert_close(out["diag/logit_fake"], lf.mean())
    torch.testing.assert_close(out["diag/logit_gap"], lr.mean() - lf.mean())
    allv = torch.cat([lr, lf])
    torch.testing.assert_close(out["diag/logit_std"],
                               ((allv - allv.mean()).square().sum() / (allv.numel() - 1)).sqrt())
    torch.testing.assert_close(out["diag/grad_real"], a.norm())      # ||grad_x <a, x>|| = ||a||
    # one Linear: sigma_min = sigma_max = ||a|| (a row vector's only singular value)
    torch.testing.assert_close(out["diag/sigma_max"], a.norm(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out["diag/sigma_min"], a.norm(), rtol=1e-4, atol=1e-6)
    assert "diag/attn_entropy_min" not in out  # no attention layers


@pytest.mark.parametrize("equalized", [True, False])
@pytest.mark.parametrize("norm", ["isn", "sn", "none"])
def test_spectral_norms_are_those_of_the_map_each_layer_applies(norm, equalized):
    """Recover each Linear's effective matrix from its outputs (f(I) - f(0)) and take its
    matrix 2-norm: independent of how the layer stores and scales its weight."""
    torch.manual_seed(1)
    D = nn.Sequential(make_linear(12, 20, equalized=equalized), nn.ReLU(), make_linear(20, 7, equalized=equalized))
    for m in D:
        if isinstance(m, nn.Linear):
            normalise_weight(m, norm)
    with torch.no_grad():
        for m in D:  # move the weights away from init, so ISN's sigma(W) != sigma(W_init)
            if isinstance(m, nn.Linear):
                w = m.parametrizations.weight.original if norm != "none" else m.weight
                w.add_(torch.randn_like(w) * w.std())
    if norm == "sn":  # let the power iteration converge on the moved weights
        for _ in range(50):
            D(torch.randn(2, 12))
    D.eval()
    want = []
    with torch.no_grad():
        for m in D:
            if isinstance(m, nn.Linear):
                n = m.in_features
                mat = (m(torch.eye(n)) - m(torch.zeros(1, n))).t()     # (out, in)
                want.append(torch.linalg.matrix_norm(mat, 2))
    got = spectral_norms(D)
    torch.testing.assert_close(got, torch.stack(want), rtol=2e-3, atol=1e-6)
    if norm == "sn":  # W_eff = W / sigma(W) (the gain undone): 1 once the power iteration converged
        torch.testing.assert_close(got, torch.ones_like(got), rtol=1e-3, atol=0)


def test_spectral_norms_report_nan_for_a_diverged_layer():
    D = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    with torch.no_grad():
        D[1].weight[0, 0] = float("nan")
    s = spectral_norms(D)
    assert torch.isfinite(s[0]) and torch.isnan(s[1])


def _entropy_by_hand(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """Mean row entropy of the L2 attention maps, from the stored weights and the paper's formula."""
    with torch.no_grad():
        w = attn.to_qk.weight * getattr(attn.to_qk, "weight_gain", 1.0)
        q = x @ w.t()
        h, b, n = attn.heads, x.shape[0], x.shape[1]
        dh = q.shape[-1] // h
        ent = []
        for i in range(b):
            for hh in range(h):
                qh = q[i, :, hh * dh:(hh + 1) * dh]
                d2 = torch.cdist(qh.double(), qh.double()) ** 2        # ||q_i - k_j||^2, k = q
                p = torch.softmax(-d2 / math.sqrt(dh), dim=-1)
                ent.append(-(p * p.log()).sum(-1).mean())
        return torch.stack(ent).mean().float()


def test_attention_entropy_of_a_vit_d_matches_the_formula():
    torch.manual_seed(2)
    cfg = _tiny_cfg(d_conv_qkv=False)
    D = Discriminator(cfg).eval()
    images = torch.rand(3, 3, cfg.resolution, cfg.resolution) * 2 - 1
    layers = [m for m in D.modules() if isinstance(m, Attention)]
    inputs = {}
    hooks = [m.register_forward_pre_hook(lambda mod, a, i=i: inputs.__setitem__(i, a[0].detach()))
             for i, m in enumerate(layers)]
    with torch.no_grad():
        D(images)
    for h in hooks:
        h.remove()
    ent = attention_entropy(D, images)
    assert ent.shape == (len(layers),)
    for i, m in enumerate(layers):
        torch.testing.assert_close(ent[i], _entropy_by_hand(m, inputs[i].float()), rtol=1e-4, atol=1e-5)
        n = inputs[i].shape[1]
        assert 0 < ent[i] <= math.log(n) + 1e-5      # between one-hot and uniform


def test_update_ratio_is_the_median_relative_step():
    before = [torch.ones(4), torch.full((2,), 2.0), torch.zeros(3), torch.tensor([3.0, 4.0])]
    after = [torch.ones(4) * 1.1, torch.full((2,), 2.0), torch.ones(3), torch.tensor([3.0, 4.5])]
    # ratios: 0.1 (|0.1 * 1| * 2 / 2), 0, (zero tensor skipped), 0.5 / 5 = 0.1 -> median of [0.1, 0, 0.1]
    torch.testing.assert_close(update_ratio(before, after), torch.tensor(0.1))


def test_update_probe_measures_one_optimiser_step():
    torch.manual_seed(3)
    G, D = nn.Linear(3, 3), nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 1, bias=False))
    diag = Diagnostics(G, D)
    w0 = D[0].weight.detach().clone()
    diag.start_update_probe()
    with torch.no_grad():
        D[0].weight.mul_(1.25)  # "the step": +25 % on one tensor, +10 % on the other, G unchanged
        D[1].weight.mul_(1.10)
    diag.after_step()
    diag.G = ConstG()  # measure needs a G with the generator's signature
    diag.D = LinearD()
    out = diag.measure(torch.zeros(2, 3, RES, RES), torch.zeros(2, 3 * RES * RES))
    # D: relative changes 0.25 and 0.10; torch's median of two values is the lower one
    torch.testing.assert_close(out["diag/update_D"], torch.tensor(0.10))
    torch.testing.assert_close(out["diag/update_G"], torch.tensor(0.0))
    assert torch.equal(w0 * 1.25, D[0].weight.detach())
    assert "diag/update_D" not in diag.measure(torch.zeros(2, 3, RES, RES), torch.zeros(2, 3 * RES * RES))


def test_measure_on_the_tiny_vitgan_gives_every_key_finite():
    torch.manual_seed(4)
    cfg = _tiny_cfg()
    G, D = Generator(cfg), Discriminator(cfg)
    diag = Diagnostics(G, D)
    u0 = [b.clone() for n, b in D.named_buffers() if n.endswith(".u")]
    out = diag.measure(torch.rand(4, 3, cfg.resolution, cfg.resolution) * 2 - 1, torch.randn(4, cfg.z_dim))
    for k in ("logit_real", "logit_fake", "logit_gap", "logit_std", "grad_real", "sigma_min", "sigma_max",
              "attn_entropy_min", "attn_entropy_mean", "layout_share", "layout_share_real"):
        assert torch.isfinite(out[f"diag/{k}"]), k
    assert out["diag/sigma_min"] <= out["diag/sigma_max"]
    # D in eval mode during measure: ISN's power iteration did not advance
    u1 = [b for n, b in D.named_buffers() if n.endswith(".u")]
    assert all(torch.equal(a, b) for a, b in zip(u0, u1))


def test_layout_share_measures_the_layout_all_images_share():
    import numpy as np

    g = torch.Generator().manual_seed(5)
    scene = torch.rand(1, 3, 16, 16, generator=g)
    # one scene in many brightnesses, contrasts and colour casts: the layout is all shared
    tints = scene * (0.5 + torch.rand(64, 1, 1, 1, generator=g)) + torch.rand(64, 3, 1, 1, generator=g)
    assert layout_share(tints).item() == pytest.approx(1.0, abs=1e-5)
    # per-channel gains change the grey image a little: still nearly all shared
    assert layout_share(scene * (0.5 + torch.rand(64, 3, 1, 1, generator=g))) > 0.9
    noise = torch.rand(256, 3, 16, 16, generator=g)  # unrelated images: ~1 / B
    assert abs(layout_share(noise).item() - 1 / 256) < 2e-3
    # against an independent computation (numpy, float64)
    x = torch.rand(8, 3, 8, 8, generator=g) + 0.3 * scene[:, :, ::2, ::2]
    grey = x.numpy().astype(np.float64).mean(1).reshape(8, -1)
    grey = (grey - grey.mean(1, keepdims=True)) / grey.std(1, ddof=1, keepdims=True)
    want = (grey.mean(0) ** 2).sum() / (grey ** 2).sum(1).mean()
    assert layout_share(x).item() == pytest.approx(want, rel=1e-5)


def test_plot_curves_writes_a_png_from_a_run_folder(tmp_path):
    from PIL import Image

    rows = [{"kimg": 0.5 * i, "loss/D": 1.3 - 0.01 * i, "loss/G": 0.8 + 0.01 * i, "scores/real": 0.1 * i,
             "scores/fake": -0.1 * i, "diag/r_t": 0.1, "diag/logit_gap": 0.2 * i, "diag/grad_real": 1.0 + i,
             "diag/sigma_max": 2.0, "diag/update_D": 1e-3} for i in range(6)]
    (tmp_path / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "metric-fid.jsonl").write_text(json.dumps({"kimg": 1.0, "fid": 300.0}) + "\n"
                                                + json.dumps({"kimg": 2.5, "fid": 250.0}) + "\n")
    path = plot_curves(tmp_path)
    assert path == tmp_path / "curves.png"
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 400 and im.height > 300
    assert not list(tmp_path.glob("*.tmp*"))  # atomic replace leaves no temporary file


def test_tick_stats_keep_the_mean_and_the_peak_of_the_losses():
    from vitgan.distributed import Dist
    from vitgan.train.report import TickStats

    ts = TickStats()
    for d, g in ((1.2, 0.7), (3.5, 0.9), (1.0, 0.8)):   # one spike in the middle of the tick
        ts.add({"loss/D": torch.tensor(d), "loss/G": torch.tensor(g), "diag/r_t": torch.tensor(0.5)})
    row, extra = ts.read(Dist(), [torch.tensor(7.0)])
    assert row["loss/D"] == pytest.approx(5.7 / 3) and row["loss/D_max"] == pytest.approx(3.5)
    assert row["loss/G_max"] == pytest.approx(0.9) and "diag/r_t_max" not in row
    assert extra == [7.0]
    assert ts.read(Dist(), []) == ({}, [])   # reset after reading
