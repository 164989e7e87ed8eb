"""Resolution-free rendering: the INR head on a finer grid of in-patch coordinates (issue 25).

G(z, scale=s) paints every patch at s*P x s*P pixels from the same tokens; scale 1 is the training
path bit for bit; a 2x render averaged over 2x2 blocks is close to the 1x image; only ViT-G with
the INR head can, the linear head and StyleGAN2's G refuse in one line.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_train_helpers import main

from vitgan.config import get_preset
from vitgan.errors import OptionError
from vitgan.layers.inr import render_coords
from vitgan.models import build_discriminator, build_generator
from vitgan.runs import checkpoint as ckpt

# Mean |avg_pool(s x render, s) - 1x image| over pixels, images in [-1, 1] (not clamped). Measured
# 2026-12-04: this test's untrained tiny G (seed 0, 8 latents): 0.026 at 2x (max 0.30), 0.030 at 4x,
# against 0.81 between two different latents; the tiny preset after 10 kimg on CIFAR-10 (16 latents,
# seeds 0-15): 0.0060 at 2x (max 0.066; 0.79 of 255 on clamped uint8 pixels), 0.0070 at 4x, where
# bicubic 2x upsampling averaged back gives 0.018 and two different latents 0.56.
AVG_TOLERANCE = 0.05


def _save(root, cfg, name="R"):
    torch.manual_seed(0)
    G, D = build_generator(cfg), build_discriminator(cfg)
    run = root / name
    ckpt.save_checkpoint(run, modules={"G": G, "D": D, "G_ema": G}, model_cfg=cfg, state={},
                         nimg=1000, step=1, snapshot=True)
    return run


@pytest.fixture(scope="module")
def tiny():
    cfg = get_preset("tiny")["model"]
    torch.manual_seed(0)
    return build_generator(cfg).eval(), cfg


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    tiny = get_preset("tiny")["model"]
    sg2 = get_preset("tiny-stylegan2")["model"]
    return {"inr": _save(root, tiny, "inr"), "linear": _save(root, tiny.replace(g_head="linear"), "linear"),
            "stylegan2": _save(root, sg2, "sg2")}


def test_scale_1_is_the_training_path_bit_for_bit(tiny):
    G, cfg = tiny
    z = torch.randn(4, cfg.z_dim)
    with torch.no_grad():
        y = torch.randn(4, (cfg.resolution // cfg.patch_size) ** 2, cfg.g_dim)
        assert torch.equal(G.head(y), G.head(y, render_coords(cfg.patch_size)))
        assert torch.equal(G(z), G(z, scale=1))


def test_sample_scale_1_writes_the_same_bytes(runs, tmp_path):
    assert main(["sample", runs["inr"], "--n", "6", "--out", tmp_path / "a.png"]) == 0
    assert main(["sample", runs["inr"], "--n", "6", "--scale", "1", "--out", tmp_path / "b.png"]) == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


@pytest.mark.parametrize("scale", [2, 4])
def test_a_finer_render_averaged_is_close_to_the_1x_image(tiny, scale):
    G, cfg = tiny
    z = torch.randn(8, cfg.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        one, big = G(z), G(z, scale=scale)
    assert big.shape == (8, 3, 32 * scale, 32 * scale)
    err = (F.avg_pool2d(big, scale) - one).abs().mean().item()
    other = (one - one.roll(1, 0)).abs().mean().item()  # two different latents, for scale
    assert err < AVG_TOLERANCE and err < other / 10, (err, other)


def test_fused_and_reference_inr_agree_at_2x(tiny):
    from vitgan.layers.paths import reference_paths

    G, cfg = tiny
    z = torch.randn(3, cfg.z_dim)
    with torch.no_grad():
        fused = G(z, scale=2)
        with reference_paths(G):
            ref = G(z, scale=2)
    torch.testing.assert_close(fused, ref, atol=1e-5, rtol=1e-4)


def test_patch_borders_each_patch_from_its_own_token_only(tiny):
    """The decision at patch borders: a 2x patch is painted from its own token alone, tiled edge to
    edge (no blending across borders): changing token 9 changes exactly patch 9's 8x8 block."""
    G, cfg = tiny
    p2, grid = 2 * cfg.patch_size, cfg.resolution // cfg.patch_size
    y = torch.randn(1, grid * grid, cfg.g_dim)
    y2 = y.clone()
    y2[0, 9] += 1.0
    with torch.no_grad():
        a, b = G.head(y, render_coords(p2)), G.head(y2, render_coords(p2))
    changed = (a != b).any(1)[0]
    r, c = divmod(9, grid)
    expect = torch.zeros_like(changed)
    expect[r * p2:(r + 1) * p2, c * p2:(c + 1) * p2] = True
    assert torch.equal(changed, expect)


def test_sample_scale_2_and_4_write_bigger_images(runs, tmp_path, capsys):
    rc, out, _ = main(["sample", runs["inr"], "--n", "4", "--scale", "2", "--out", tmp_path / "big.png"], capsys)
    assert rc == 0 and "64x64 (2x)" in out
    assert Image.open(tmp_path / "big.png").size == (128, 128)
    assert main(["sample", runs["inr"], "--n", "2", "--scale", "4", "--out", tmp_path / "s.npz"]) == 0
    with np.load(tmp_path / "s.npz") as f:
        assert f["images"].shape == (2, 128, 128, 3) and f["seeds"].tolist() == [0, 1]


@pytest.mark.parametrize("kind, words", [("linear", "g_head=linear"), ("stylegan2", "StyleGAN2")])
def test_heads_that_cannot_refuse_in_one_line(runs, tmp_path, capsys, kind, words):
    rc, out, err = main(["sample", runs[kind], "--n", "2", "--scale", "2", "--out", tmp_path / "x.png"], capsys)
    assert rc == 2 and err.startswith("vitgan: error: --scale 2: ") and words in err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()
    assert main(["sample", runs[kind], "--n", "2", "--scale", "1", "--out", tmp_path / "y.png"]) == 0


def test_python_api_refuses_the_linear_head():
    cfg = get_preset("tiny")["model"].replace(g_head="linear")
    with pytest.raises(OptionError, match="g_head=linear"):
        build_generator(cfg)(torch.randn(1, cfg.z_dim), scale=2)


@pytest.mark.parametrize("scale, words", [("1.3", "5.2 pixels wide"), ("0", "positive"), ("nan", "positive"),
                                          ("-2", "positive")])
def test_bad_scales(runs, tmp_path, capsys, scale, words):
    rc, _, err = main(["sample", runs["inr"], "--n", "1", "--scale", scale, "--out", tmp_path / "x.png"], capsys)
    assert rc == 2 and words in err and "Traceback" not in err


def test_a_non_integer_scale_with_whole_pixels_works(tiny):
    G, cfg = tiny
    with torch.no_grad():
        assert G(torch.randn(1, cfg.z_dim), scale=1.5).shape == (1, 3, 48, 48)  # 6 pixels per patch
