"""StyleGAN2 networks and ops, the architecture registry, and the conv / hybrid presets (issue 11)."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
import torch.nn.functional as F
from test_train_helpers import SMALL_MODEL, load_G, main, make_images, small_args, stats

from vitgan import PRESETS, ModelConfig, get_preset
from vitgan.errors import OptionError
from vitgan.layers.fir import blur, downsample2d, fir_filter, upsample2d
from vitgan.layers.mbstd import MinibatchStd
from vitgan.layers.modconv import ModulatedConv2d
from vitgan.models import build_discriminator, build_generator
from vitgan.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from vitgan.models.vit_discriminator import Discriminator
from vitgan.models.vit_generator import Generator
from vitgan.train.loss import ViTGANLoss

ARCHS = ("vit", "stylegan2")
SMALL_SG2 = dict(sg2_channel_base=64, sg2_channel_max=16)  # 16 channels at 4 and 8, 4 at 16


def small_cfg(g_arch="stylegan2", d_arch="stylegan2", **kw) -> ModelConfig:
    return ModelConfig(**SMALL_MODEL, **SMALL_SG2, g_arch=g_arch, d_arch=d_arch, **kw)


# ------------------------------------------------------------------------------ ops
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_matches_per_sample_weights(demodulate):
    torch.manual_seed(1)
    layer = ModulatedConv2d(4, 5, 3, w_dim=6, demodulate=demodulate)
    with torch.no_grad():  # a non-trivial bias of the affine map, so s is not all ~1
        layer.affine.bias.normal_()
    x, w = torch.randn(3, 4, 7, 7), torch.randn(3, 6)
    A = layer.affine
    s = w @ (A.weight * A.weight_gain).T + A.bias * A.bias_gain            # s_b = A(w_b)
    W = layer.conv.weight / (4 * 3 * 3) ** 0.5                             # equalised weight
    expected = []
    for b in range(3):
        Wb = W * s[b][None, :, None, None]                                 # modulation
        if demodulate:                                                     # demodulation
            Wb = Wb / (Wb.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).sqrt()
        expected.append(F.conv2d(x[b:b + 1], Wb, padding=1))
    torch.testing.assert_close(layer(x, w), torch.cat(expected), rtol=1e-5, atol=1e-5)
    up = ModulatedConv2d(4, 5, 3, w_dim=6, demodulate=demodulate, up=True)
    up.load_state_dict(layer.state_dict())
    torch.testing.assert_close(up(x, w), layer(upsample2d(x), w), rtol=1e-5, atol=1e-5)
    assert up(x, w).shape == (3, 5, 14, 14)


def _explicit_filter(x_pad: torch.Tensor, k: torch.Tensor, stride: int, size: int) -> torch.Tensor:
    """y[i, j] = sum_{a,b} k[a, b] x_pad[stride i + a, stride j + b], term by term."""
    y = torch.zeros(*x_pad.shape[:2], size, size, dtype=x_pad.dtype)
    for a, b in itertools.product(range(k.shape[0]), range(k.shape[1])):
        y += k[a, b] * x_pad[:, :, a:a + stride * size:stride, b:b + stride * size:stride]
    return y


def test_fir_filter_is_the_normalised_outer_product():
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    torch.testing.assert_close(fir_filter(), torch.outer(f, f) / 64)


def test_upsample_is_zero_insertion_then_the_2d_filter():
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    u = torch.zeros(2, 3, 10, 10, dtype=torch.float64)
    u[:, :, ::2, ::2] = x                                                  # zero insertion
    u = F.pad(u, (2, 1, 2, 1))
    expected = _explicit_filter(u, 4 * fir_filter().double(), 1, 10)
    torch.testing.assert_close(upsample2d(x), expected)
    # averaging: a constant image stays constant away from the border, its mean is kept
    c = upsample2d(torch.ones(1, 1, 8, 8))
    torch.testing.assert_close(c[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12))


def test_downsample_and_blur_are_the_2d_filter():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    k = fir_filter().double()
    torch.testing.assert_close(downsample2d(x), _explicit_filter(F.pad(x, (1,) * 4), k, 2, 4))
    torch.testing.assert_close(blur(x, pad=2), _explicit_filter(F.pad(x, (2,) * 4), k, 1, 9))
    c = downsample2d(torch.ones(1, 1, 8, 8))
    torch.testing.assert_close(c[..., 1:-1, 1:-1], torch.ones(1, 1, 2, 2))  # averages


def test_minibatch_std_formula():
    x = torch.randn(8, 3, 2, 2, dtype=torch.float64)
    out = MinibatchStd(group_size=4)(x)
    assert out.shape == (8, 4, 2, 2)
    torch.testing.assert_close(out[:, :3], x)
    for members in ([0, 2, 4, 6], [1, 3, 5, 7]):                           # image i: group i mod 2
        sigma = (x[members].var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        for i in members:
            torch.testing.assert_close(out[i, 3], sigma.expand(2, 2).to(out.dtype))
    # a group larger than the batch is the whole batch; 6 images in groups of <= 4 -> 2 of 3
    y = torch.randn(3, 2, 1, 1, dtype=torch.float64)
    sigma = (y.var(0, unbiased=False) + 1e-8).sqrt().mean()
    torch.testing.assert_close(MinibatchStd(8)(y)[:, 2].flatten(), sigma.expand(3))
    z = torch.randn(6, 2, 1, 1, dtype=torch.float64)
    got = MinibatchStd(4)(z)[:, 2].flatten()
    for members in ([0, 2, 4], [1, 3, 5]):
        sigma = (z[members].var(0, unbiased=False) + 1e-8).sqrt().mean()
        torch.testing.assert_close(got[members], sigma.expand(3))


# ------------------------------------------------------------------------------ networks
def test_registry_builds_each_architecture_and_old_configs_load_as_vit():
    assert type(build_generator(small_cfg("vit", "vit"))) is Generator
    assert type(build_discriminator(small_cfg("vit", "vit"))) is Discriminator
    assert type(build_generator(small_cfg())) is StyleGAN2Generator
    assert type(build_discriminator(small_cfg())) is StyleGAN2Discriminator
    old = {k: v for k, v in small_cfg().to_dict().items() if k not in ("g_arch", "d_arch")}
    cfg = ModelConfig.from_dict(old)
    assert (cfg.g_arch, cfg.d_arch) == ("vit", "vit")
    with pytest.raises(OptionError, match="g_arch='cnn' is not valid"):
        ModelConfig(g_arch="cnn")
    with pytest.raises(OptionError, match="power-of-two"):
        ModelConfig(resolution=24, patch_size=4, d_arch="stylegan2")
    with pytest.raises(OptionError, match="sg2_mbstd_group"):
        ModelConfig(sg2_mbstd_group=0)


def test_reference_sizes_of_the_cifar_preset():
    cfg = get_preset("cifar10-stylegan2")["model"]
    assert [cfg.sg2_channels(r) for r in (4, 8, 16, 32)] == [512] * 4
    assert (cfg.z_dim, cfg.w_dim, cfg.mapping_layers) == (512, 512, 2)
    G = StyleGAN2Generator(cfg)
    assert len(G.blocks) == 4 and len(G.mapping.layers) == 2


@pytest.mark.parametrize("g_arch,d_arch", list(itertools.product(ARCHS, ARCHS)))
def test_every_combination_forward_and_backward(g_arch, d_arch):
    cfg = small_cfg(g_arch, d_arch)
    G, D = build_generator(cfg).train(), build_discriminator(cfg).train()
    z = torch.randn(4, cfg.z_dim)
    images = G(z)
    assert images.shape == (4, 3, 16, 16) and torch.isfinite(images).all()
    logits = D(images)
    assert logits.shape == (4,)
    (F.softplus(-logits).mean() + G(z, truncation_psi=0.5).square().mean()).backward()
    for name, p in itertools.chain(G.named_parameters(), D.named_parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert not torch.equal(G.w_avg, torch.zeros_like(G.w_avg))  # updated in training mode
    G.eval()
    w = G.mapping(z)
    torch.testing.assert_close(G(z), G.synthesis(w))


def test_stylegan2_generator_noise_modes():
    G = StyleGAN2Generator(small_cfg())
    with torch.no_grad():
        for b in G.blocks:
            for layer in (b.conv0, b.conv1):
                if layer is not None:
                    layer.noise_strength.fill_(0.5)
    z = torch.randn(2, 16)
    G.eval()
    torch.testing.assert_close(G(z), G(z))                                 # eval: const noise
    assert not torch.allclose(G(z, noise_mode="random"), G(z, noise_mode="random"))
    assert not torch.allclose(G(z, noise_mode="none"), G(z))


@pytest.mark.parametrize("g_arch,d_arch", [("stylegan2", "stylegan2"), ("stylegan2", "vit")])
def test_rebuild_from_checkpoint_gives_the_same_outputs(tmp_path, g_arch, d_arch):
    from vitgan.runs import checkpoint as ckpt

    cfg = small_cfg(g_arch, d_arch)
    G, D = build_generator(cfg), build_discriminator(cfg)
    with torch.no_grad():
        G.w_avg.normal_()
        for p in G.parameters():
            p.add_(0.01 * torch.randn_like(p))
    ckpt.save_checkpoint(tmp_path, modules={"G": G, "D": D, "G_ema": G}, model_cfg=cfg,
                         state={"format": "x"}, nimg=8, step=1, keep=2)
    G2, cfg2 = load_G(tmp_path)
    assert cfg2 == cfg and type(G2) is type(G)
    z = torch.randn(3, cfg.z_dim)
    G.eval()
    torch.testing.assert_close(G2(z, truncation_psi=0.7), G(z, truncation_psi=0.7))


# ------------------------------------------------------------------------------ the loss
class _BatchMeanD(torch.nn.Module):
    """Logit = image mean - batch mean of image means: depends on the other images of the batch."""

    cross_sample = True

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.calls: list[int] = []

    def forward(self, x):
        self.calls.append(x.shape[0])
        m = x.flatten(1).mean(1)
        return self.scale * (m - m.mean()) + m


def test_loss_runs_a_cross_sample_D_once_per_group_of_views():
    G = torch.nn.Sequential(torch.nn.Linear(4, 3 * 4 * 4), torch.nn.Unflatten(1, (3, 4, 4)))
    flip = lambda x: x.flip(-1) * 0.5  # noqa: E731  (a deterministic bCR transform)
    real, z = torch.randn(5, 3, 4, 4), torch.randn(3, 4)
    D = _BatchMeanD()
    stats = ViTGANLoss(G, D, None, bcr_real=1.0, bcr_fake=2.0, bcr_transform=flip) \
        .accumulate_gradients("Dmain", real, z)
    assert D.calls == [5, 3, 5, 3]                                         # reals, fakes, bCR views
    with torch.no_grad():
        fake = G(z)
        lr, lf = D(real), D(fake)
        expected_bcr = (lr - D(flip(real))).square().mean()
    torch.testing.assert_close(stats["loss/D_real"], F.softplus(-lr).mean())
    torch.testing.assert_close(stats["loss/D_fake"], F.softplus(lf).mean())
    torch.testing.assert_close(stats["loss/bcr_real"], expected_bcr)
    D.cross_sample = False                                                 # one forward of all views
    D.calls = []
    ViTGANLoss(G, D, None, bcr_real=1.0, bcr_fake=2.0, bcr_transform=flip).accumulate_gradients("Dmain", real, z)
    assert D.calls == [16]


def test_stylegan2_D_logits_in_the_loss_do_not_depend_on_the_other_views():
    torch.manual_seed(0)
    cfg = small_cfg()
    G, D = build_generator(cfg), build_discriminator(cfg)
    real, z = torch.rand(4, 3, 16, 16) * 2 - 1, torch.randn(4, cfg.z_dim)
    loss = ViTGANLoss(G, D, None, bcr_real=1.0, bcr_fake=1.0, bcr_transform=lambda x: x.flip(-1))
    stats = loss.accumulate_gradients("Dmain", real, z)
    with torch.no_grad():
        torch.testing.assert_close(stats["scores/real"], D(real).mean())
    assert loss.reg_due(0) is False
    r1 = ViTGANLoss(G, D, None, r1_gamma=0.01).accumulate_gradients("Dreg", real, None)
    assert torch.isfinite(r1["loss/r1"]) and r1["loss/r1"] > 0             # R1 through a conv D


# ------------------------------------------------------------------------------ presets and CLI
TINY = ("tiny-stylegan2", "tiny-hybrid", "tiny-vitd-sg2g")


def test_presets_name_the_architectures_and_sourced_defaults():
    archs = {name: (get_preset(name)["model"].g_arch, get_preset(name)["model"].d_arch) for name in PRESETS}
    for prefix in ("cifar10", "celeba64", "tiny"):
        assert archs[f"{prefix}-stylegan2"] == ("stylegan2", "stylegan2")
        assert archs[f"{prefix}-hybrid"] == ("vit", "stylegan2")
        assert archs[f"{prefix}-vitd-sg2g"] == ("stylegan2", "vit")
    assert get_preset("celeba64-hybrid")["model"].resolution == 64
    sg2 = PRESETS["cifar10-stylegan2"].train
    assert (sg2["lr"], sg2["r1_gamma"], sg2["batch"]) == (0.0025, 0.01, 64)


@pytest.mark.parametrize("preset", TINY)
def test_tiny_preset_trains_samples_and_reloads(tmp_path, capsys, preset):
    data = make_images(tmp_path / "imgs")
    run = tmp_path / "R"
    rc = main(["train", "--preset", preset, "--data", data, "--kimg", "0.016", "--out", run,
               *small_args(**SMALL_SG2)])
    assert rc == 0
    opts = json.loads((run / "training_options.json").read_text())
    model = get_preset(preset)["model"]
    assert (opts["model"]["g_arch"], opts["model"]["d_arch"]) == (model.g_arch, model.d_arch)
    assert (run / "network-snapshot-000000016.safetensors").is_file() and (run / "fakes000000000.png").is_file()
    row = stats(run)[-1]
    assert row["kimg"] == 0.016 and all(v == v for k, v in row.items() if k.startswith("loss/"))
    rc, out, _ = main(["sample", run, "--n", "4", "--out", tmp_path / "g.png"], capsys)
    assert rc == 0 and "wrote" in out


def test_data_parallel_with_per_view_D_forwards_keeps_ranks_identical(tmp_path):
    """2 gloo processes, StyleGAN2 G and D: several D forwards before one backward still sync."""
    from test_train_distributed import EXTRA, SCRIPT, torchrun

    data = make_images(tmp_path / "imgs")
    script = tmp_path / "check.py"
    script.write_text(SCRIPT.replace('resolve_options("tiny"', 'resolve_options("tiny-stylegan2"')
                      .replace("flat(t.D.buffers())", "flat([*t.D.buffers(), torch.zeros(1)])"))  # D has none
    sets = [a for a in small_args(**{**EXTRA, **SMALL_SG2, "bcr_real": 1.0}) if a != "--set"]
    proc = torchrun(script, data, tmp_path / "R", *sets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RANKS-IDENTICAL" in proc.stdout


@pytest.mark.parametrize("g_arch,d_arch", list(itertools.product(ARCHS, ARCHS)))
def test_info_reports_every_combination(g_arch, d_arch):
    from vitgan.info import format_info, model_info

    info = model_info(small_cfg(g_arch, d_arch))
    assert (info["g_arch"], info["d_arch"]) == (g_arch, d_arch)
    assert info["generator_params"] == sum(info["generator_parts"].values())
    assert info["discriminator_params"] == sum(info["discriminator_parts"].values())
    assert info["g_gflops"] > 0 and info["d_gflops"] > 0
    assert (info["tokens"] is None) == (g_arch == "stylegan2")
    assert "generator" in format_info(info, "x")


def test_d_channel_mult_widens_only_the_discriminator():
    """sg2_d_channel_mult=k: every D layer k x the G's channels at its resolution; G unchanged."""
    base, wide = small_cfg(), small_cfg(sg2_d_channel_mult=2)
    D1, D2 = build_discriminator(base), build_discriminator(wide)
    for (n1, p1), (n2, p2) in zip(D1.named_parameters(), D2.named_parameters()):
        assert n1 == n2
        if p1.dim() == 4:  # conv weights (out, in, k, k): out (and in, past fromRGB) doubled
            assert p2.shape[0] == 2 * p1.shape[0]
            assert p2.shape[1] == (p1.shape[1] if n1.startswith("fromrgb") else
                                   2 * p1.shape[1] - (1 if n1 == "conv.conv.weight" else 0))
    assert [p.shape for p in build_generator(wide).parameters()] == \
        [p.shape for p in build_generator(base).parameters()]
    x = torch.randn(2, base.channels, base.resolution, base.resolution)
    assert D2(x).shape == (2,)


@pytest.mark.parametrize("mult", [1, 2])
def test_info_counts_the_stylegan2_discriminator_flops(mult):
    """D FLOPs against a hand count: fromRGB, per block conv0 + blur + strided conv1 + skip
    (FIR downsample + 1x1), epilogue conv + FCs; FIR filters are depthwise 4x4 convolutions.
    ``sg2_d_channel_mult`` multiplies every D width by ``mult``."""
    from vitgan.info import forward_gflops

    cfg = small_cfg("vit", "stylegan2", sg2_d_residual=True, sg2_d_channel_mult=mult)
    ch = lambda r: mult * cfg.sg2_channels(r)  # noqa: E731  (the G's channels, times mult)
    R, C = cfg.resolution, cfg.channels
    flops = 2 * R * R * C * ch(R)                                             # fromRGB (1x1)
    for r in (16, 8):
        ci, co = ch(r), ch(r // 2)
        flops += 2 * r * r * ci * ci * 9                                      # conv0 3x3
        flops += 2 * (r + 1) ** 2 * ci * 16                                   # blur (pad 2) 4x4
        flops += 2 * (r // 2) ** 2 * ci * co * 9                              # conv1 3x3 stride 2
        flops += 2 * (r // 2) ** 2 * ci * 16 + 2 * (r // 2) ** 2 * ci * co    # skip: FIR + 1x1
    c4 = ch(4)
    flops += 2 * 16 * (c4 + 1) * c4 * 9 + 2 * c4 * 16 * c4 + 2 * c4           # conv, fc, out
    D = build_discriminator(cfg).eval()
    assert forward_gflops(D, torch.zeros(1, C, R, R)) == pytest.approx(flops / 1e9, rel=1e-6)
