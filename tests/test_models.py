"""ViT-G and ViT-D: every preset and every ablation runs forward and backward; rebuild from
config + weights; fused == reference; EMA-style deepcopy."""

import copy
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from vitgan import ABLATIONS, PRESETS, Discriminator, Generator, ModelConfig, model_config
from vitgan.layers.inr import INRHead, LinearHead
from vitgan.layers.isn import SpectralNorm
from vitgan.layers.sln import SLN, LayerNorm


def _forward_backward(cfg: ModelConfig, batch: int = 2):
    G, D = Generator(cfg), Discriminator(cfg)
    z = torch.randn(batch, cfg.z_dim)
    images = G(z)
    assert images.shape == (batch, cfg.channels, cfg.resolution, cfg.resolution)
    logits = D(images)
    assert logits.shape == (batch,)
    assert torch.isfinite(images).all() and torch.isfinite(logits).all()
    logits.sum().backward()
    return G, D


def _assert_all_params_get_gradient(module):
    for name, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} gets zero gradient"


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_forward_backward(preset):
    cfg = model_config(preset)
    G, D = _forward_backward(cfg)
    _assert_all_params_get_gradient(G)
    _assert_all_params_get_gradient(D)


ABLATION_CASES = [(k, v) for k, values in ABLATIONS.items() for v in values] + [
    ("fused_attention", False), ("fused_inr", False), ("d_patch_size", 8)]


@pytest.mark.parametrize("key,value", ABLATION_CASES, ids=lambda x: str(x))
def test_every_ablation_forward_backward(key, value):
    cfg = model_config("tiny").replace(**{key: value})
    G, D = _forward_backward(cfg)
    _assert_all_params_get_gradient(G)
    _assert_all_params_get_gradient(D)


def test_ablations_change_the_architecture_as_documented():
    tiny = model_config("tiny")
    G = Generator(tiny.replace(g_latent="tokens"))
    assert not any(isinstance(m, SLN) for m in G.modules())
    assert isinstance(G.norm, LayerNorm) and G.norm.elementwise_affine
    assert G.latent_tokens.out_features == tiny.g_tokens * tiny.g_dim
    x1, x2 = G(torch.randn(2, tiny.z_dim)).unbind(0)
    assert (x1 - x2).abs().max() > 1e-4  # z still reaches the image through the tokens
    assert isinstance(Generator(tiny.replace(g_head="linear")).head, LinearHead)
    assert isinstance(Generator(tiny).head, INRHead)
    assert not Generator(tiny.replace(g_demodulate=False)).head.mlp.demodulate
    n_sn = lambda D: sum(isinstance(m, SpectralNorm) for m in D.modules())  # noqa: E731
    assert n_sn(Discriminator(tiny.replace(d_norm="none"))) == 0
    D = Discriminator(tiny)
    linears = [m for m in D.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    assert n_sn(D) == len(linears)  # every linear and conv layer of D is normalised
    Dc = Discriminator(tiny.replace(d_conv_qkv=True))
    assert n_sn(Dc) == n_sn(D) + 2 * tiny.d_depth
    assert Discriminator(tiny.replace(d_overlap=False)).patch_embedding.window == 4
    assert Discriminator(tiny).patch_embedding.window == 8
    assert Discriminator(tiny.replace(d_patch_size=8)).pos_embedding.shape[1] == 1 + 16


@pytest.mark.parametrize("ablation", [{}, {"d_attention": "dot"}, {"d_conv_qkv": True},
                                      {"g_demodulate": False}])
def test_fused_paths_equal_reference_paths(ablation):
    fast_cfg = model_config("tiny").replace(**ablation)
    ref_cfg = fast_cfg.replace(fused_attention=False, fused_inr=False)
    G, D = Generator(fast_cfg).eval(), Discriminator(fast_cfg).eval()
    G_ref, D_ref = Generator(ref_cfg).eval(), Discriminator(ref_cfg).eval()
    G_ref.load_state_dict(G.state_dict())
    D_ref.load_state_dict(D.state_dict())
    z = torch.randn(3, fast_cfg.z_dim)
    img = G(z)
    torch.testing.assert_close(img, G_ref(z), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(D(img), D_ref(img), rtol=1e-4, atol=1e-5)


def test_rebuild_from_saved_config_and_safetensors_weights(tmp_path):
    cfg = model_config("tiny").replace(d_conv_qkv=True)
    G, D = Generator(cfg), Discriminator(cfg)
    G(torch.randn(4, cfg.z_dim))                       # move w_avg, u, v away from their init
    D(torch.randn(4, 3, 32, 32)).sum().backward()
    (tmp_path / "config.json").write_text(cfg.to_json())
    save_file(G.state_dict(), tmp_path / "G.safetensors")
    save_file(D.state_dict(), tmp_path / "D.safetensors")

    torch.manual_seed(1234)  # a different init, fully overwritten by the weights
    cfg2 = ModelConfig.from_dict(json.loads((tmp_path / "config.json").read_text()))
    G2, D2 = Generator(cfg2), Discriminator(cfg2)
    G2.load_state_dict(load_file(tmp_path / "G.safetensors"))
    D2.load_state_dict(load_file(tmp_path / "D.safetensors"))
    z, x = torch.randn(3, cfg.z_dim), torch.randn(3, 3, 32, 32)
    for mode in ("eval", "train"):
        for m in (G, D, G2, D2):
            getattr(m, mode)()
        assert torch.equal(G(z, truncation_psi=0.7), G2(z, truncation_psi=0.7))
        assert torch.equal(D(x), D2(x))


def test_deepcopy_for_ema_keeps_keys_and_outputs():
    cfg = model_config("tiny")
    G = Generator(cfg)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    assert list(G_ema.state_dict()) == list(G.state_dict())
    z = torch.randn(2, cfg.z_dim)
    assert torch.equal(G.eval()(z), G_ema(z))
    ids = [id(p) for p in G.parameters()]
    assert len(ids) == len(set(ids))
    D = Discriminator(cfg)
    D2 = copy.deepcopy(D)
    assert list(D2.state_dict()) == list(D.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(D.eval()(x), D2.eval()(x))


def test_state_dict_keys_are_stable_across_forward():
    cfg = model_config("tiny")
    G, D = Generator(cfg), Discriminator(cfg)
    keys_g, keys_d = list(G.state_dict()), list(D.state_dict())
    G(torch.randn(2, cfg.z_dim))
    D(torch.randn(2, 3, 32, 32))
    assert list(G.state_dict()) == keys_g and list(D.state_dict()) == keys_d
    assert "w_avg" in keys_g


def test_discriminator_output_depends_on_each_image_only_and_class_token_reads_all_patches():
    cfg = model_config("tiny")
    D = Discriminator(cfg).eval()
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    logits = D(x)
    (g,) = torch.autograd.grad(logits[0], x)
    assert g[1].abs().max() == 0                 # no mixing across the batch
    assert (g[0].abs().sum(0) > 0).all()         # every pixel reaches the score


def test_vit_d_minibatch_stddev_is_the_groups_token_spread_into_the_head():
    """d_mbstd_group = g: head([LN(cls) ; sigma]) with sigma = mean over features and tokens of
    sqrt(var over the image's group + 1e-8) of LN(h_L), groups i mod (B / g) (StyleGAN2-ADA's),
    computed here independently from the blocks' output."""
    torch.manual_seed(0)
    off = Discriminator(model_config("tiny"))
    assert not getattr(off, "cross_sample", False) and off.mbstd is None
    cfg = model_config("tiny").replace(d_mbstd_group=2)
    D = Discriminator(cfg).eval()
    assert D.cross_sample and D.head.weight.shape[1] == cfg.d_dim + 1
    x = torch.randn(4, 3, 32, 32)
    seen = {}
    def keep(module, inp, out):  # LN is called on the class token, then on all tokens (h_L)
        if inp[0].ndim == 3:
            seen["tokens"] = inp[0].detach()

    D.norm.register_forward_hook(keep)
    logits = D(x)
    t = torch.nn.functional.layer_norm(seen["tokens"], (cfg.d_dim,), D.norm.weight, D.norm.bias, D.norm.eps)
    groups = [[0, 2], [1, 3]]  # 4 images, 2 groups of 2: image i in group i mod 2
    sigma = torch.zeros(4)
    for g in groups:
        s = (t[g].var(0, unbiased=False) + 1e-8).sqrt().mean()
        sigma[g] = s
    want = D.head(torch.cat([t[:, 0], sigma[:, None]], 1)).squeeze(-1)
    torch.testing.assert_close(logits, want, rtol=1e-5, atol=1e-5)
    # image 0's logit depends on image 2 (its group), not on images 1 and 3
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(D(xg)[0], xg)
    assert g[2].abs().max() > 0 and g[1].abs().max() == 0 and g[3].abs().max() == 0


def test_bf16_autocast_forward_backward_cpu():
    cfg = model_config("tiny")
    G, D = Generator(cfg), Discriminator(cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = D(G(torch.randn(2, cfg.z_dim)))
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
    logits.float().sum().backward()
    _assert_all_params_get_gradient(G)


def test_conv_head_is_stylegan2_layers_up_from_the_token_grid():
    """g_head=conv (the authors' port's head): tokens as a D-channel g x g map, then per doubling a
    synthesis layer with up-sampling and one without, then toRGB; channels conv_head_channels(r)
    (here its fallback, sg2_channels(r))."""
    from vitgan.layers.conv_head import ConvHead
    from vitgan.layers.modconv import SynthesisLayer
    cfg = model_config("tiny").replace(g_head="conv", sg2_channel_base=256, sg2_channel_max=32)
    G = Generator(cfg).eval()
    head = G.head
    assert isinstance(head, ConvHead)
    assert [(m.modconv.up, m.modconv.conv.out_channels) for m in head.layers] == \
        [(True, 16), (False, 16), (True, 8), (False, 8)]  # 8x8 grid -> 16 (256 // 16) -> 32 (256 // 32)
    y, w = torch.randn(2, cfg.g_tokens, cfg.g_dim), torch.randn(2, cfg.w_dim)
    x = y.transpose(1, 2).reshape(2, cfg.g_dim, 8, 8)  # token i = (row i // 8, column i % 8)
    for layer in head.layers:
        x = SynthesisLayer.forward(layer, x, w, "const")
    with torch.no_grad():
        torch.testing.assert_close(head(y, w, "const"), head.torgb(x, w))
        z = torch.randn(3, cfg.z_dim)
        img = G(z)
        assert img.shape == (3, 3, 32, 32)
        torch.testing.assert_close(G(z), img)  # eval: stored noise, deterministic
        G.train()
        with torch.no_grad():
            for m in head.layers:
                m.noise_strength.fill_(1.0)
        assert (G(z, update_w_avg=False) - G(z, update_w_avg=False)).abs().max() > 1e-4  # fresh noise


def test_conv_head_channels_have_their_own_base_and_max():
    """conv_head_channel_base / _max size the head apart from a StyleGAN2 D (the hybrid presets:
    the port's 384 up to 64, halved above, beside ADA's 512-channel D); 0 falls back to sg2_*."""
    from vitgan.errors import OptionError
    cfg = model_config("tiny").replace(g_head="conv", d_arch="stylegan2", sg2_channel_base=256,
                                       sg2_channel_max=32, conv_head_channel_base=192, conv_head_channel_max=8)
    head = Generator(cfg).head
    assert [m.modconv.conv.out_channels for m in head.layers] == [8, 8, 6, 6]  # min(192 // 16, 8), 192 // 32
    assert [cfg.sg2_channels(r) for r in (16, 32)] == [16, 8]  # the D keeps its own
    assert [cfg.replace(conv_head_channel_base=0).conv_head_channels(r) for r in (16, 32)] == [8, 8]
    assert model_config("cifar10-hybrid").conv_head_channels(32) == 384  # the port's cnn_channels
    assert model_config("celeba64-hybrid").conv_head_channels(64) == 384
    with pytest.raises(OptionError, match="conv_head_channel_base=16 gives g_head=conv no channels"):
        cfg.replace(conv_head_channel_base=16)


def test_conv_head_refuses_what_it_cannot_paint():
    from vitgan.errors import OptionError
    from vitgan.models.vit_generator import check_render_scale
    tiny = model_config("tiny")
    with pytest.raises(OptionError, match="g_head=conv"):
        tiny.replace(g_head="conv", resolution=24, patch_size=3).validate()
    with pytest.raises(OptionError, match="g_head=conv"):
        check_render_scale(tiny.replace(g_head="conv"), 2)
