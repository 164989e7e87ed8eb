"""`vitgan sample`: a grid, one PNG per sample, an interpolation GIF; always G_ema (issue 3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from test_train_helpers import main

from vitgan.config import get_preset
from vitgan.runs import checkpoint as ckpt


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder holding an (untrained) tiny-preset checkpoint, 32x32, whose G_ema differs from G."""
    from vitgan.models.vit_discriminator import Discriminator
    from vitgan.models.vit_generator import Generator

    cfg = get_preset("tiny")["model"]
    torch.manual_seed(0)
    G, D, G_ema = Generator(cfg), Discriminator(cfg), Generator(cfg)
    run = tmp_path_factory.mktemp("sample") / "R"
    ckpt.save_checkpoint(run, modules={"G": G, "D": D, "G_ema": G_ema}, model_cfg=cfg, state={},
                         nimg=1000, step=1, snapshot=True)
    return run, G, G_ema


def test_grid_of_16_is_4x4_of_32px(run, tmp_path, capsys):
    rc, out, _ = main(["sample", run[0], "--n", "16", "--out", tmp_path / "g.png"], capsys)
    assert rc == 0, out
    img = Image.open(tmp_path / "g.png")
    assert img.size == (128, 128) and img.mode == "RGB"


def test_grid_is_near_square(run, tmp_path):
    assert main(["sample", run[0], "--n", "5", "--out", tmp_path / "g.png"]) == 0
    assert Image.open(tmp_path / "g.png").size == (96, 64)  # 3 columns, 2 rows


def test_grid_cells_are_the_samples_in_row_major_order(run, tmp_path):
    """Cell (r, c) of a 5-sample grid (3 wide) is sample 3r + c, pixel for pixel, as the folder
    output writes it; the empty sixth cell is black."""
    assert main(["sample", run[0], "--n", "5", "--out", tmp_path / "g.png"]) == 0
    assert main(["sample", run[0], "--n", "5", "--out", tmp_path / "d/"]) == 0
    grid = np.array(Image.open(tmp_path / "g.png"))
    for i in range(5):
        r, c = divmod(i, 3)
        one = np.array(Image.open(tmp_path / "d" / f"seed{i:06d}.png"))
        assert np.array_equal(grid[32 * r:32 * (r + 1), 32 * c:32 * (c + 1)], one), i
    assert not grid[32:, 64:].any()


def test_samples_come_from_g_ema_and_seeds_compose(run, tmp_path):
    from vitgan.commands.sample import latents

    path, G, G_ema = run
    assert main(["sample", path, "--n", "4", "--out", tmp_path / "d/"]) == 0
    files = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert files == ["samples.json", *(f"seed{i:06d}.png" for i in range(4))]  # and which run made them
    one = torch.from_numpy(np.array(Image.open(tmp_path / "d" / "seed000002.png"))).long()
    assert one.shape == (32, 32, 3)

    def pixels(model):
        with torch.no_grad():
            x = model.eval()(latents([2], 64))[0]
        return ((x.clamp(-1, 1) + 1) * 127.5).round().long().permute(1, 2, 0)

    assert (one - pixels(G_ema)).abs().max() <= 1
    assert (one - pixels(G)).abs().max() > 1  # not the raw generator
    # --seed 2 --n 1 is sample 2 of --seed 0
    assert main(["sample", path, "--n", "1", "--seed", "2", "--out", tmp_path / "one/"]) == 0
    assert (tmp_path / "one" / "seed000002.png").read_bytes() == (tmp_path / "d" / "seed000002.png").read_bytes()


def test_truncation_and_snapshot_file(run, tmp_path):
    snap = run[0] / "network-snapshot-000001000.safetensors"
    assert main(["sample", snap, "--n", "2", "--trunc", "0.5", "--out", tmp_path / "t.png"]) == 0
    assert Image.open(tmp_path / "t.png").size == (64, 32)


def test_interpolation_gif_frames(run, tmp_path, capsys):
    out = tmp_path / "walk.gif"
    rc, text, _ = main(["sample", run[0], "--n", "4", "--interp", "3", "--keyframes", "2", "--out", out], capsys)
    assert rc == 0
    gif = Image.open(out)
    assert gif.size == (64, 64) and gif.n_frames == 6  # 2 keyframes x 3 steps, looping


@pytest.mark.parametrize("extra,message", [
    (["--out", "x.txt"], "give FILE.png for a grid"),
    (["--interp", "3", "--out", "x.png"], "--interp writes a GIF"),
    (["--n", "0", "--out", "x.png"], "--n must be a positive integer"),
])
def test_bad_sample_options(run, tmp_path, capsys, extra, message):
    rc, _, err = main(["sample", run[0], *extra], capsys)
    assert rc == 2 and message in err


def test_missing_checkpoint_is_one_line(tmp_path, capsys):
    rc, _, err = main(["sample", tmp_path / "nope", "--out", tmp_path / "x.png"], capsys)
    assert rc == 1 and "does not exist" in err and "Traceback" not in err
