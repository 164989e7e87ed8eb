"""`vitgan inspect` and the run folder's attention<nimg>.png (issue 25).

The maps are checked against D's blocks run by hand and against the rollout's formula; the command
on a run folder, a Hub export with and without D, and a hybrid with StyleGAN2's D; index.html in a
real headless Chromium (skipped, saying why, where there is none), every image it names loading.
"""

from __future__ import annotations

import html
import http.server
import json
import re
import shutil
import subprocess
import threading
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image
from test_train_helpers import main, make_images, small_args

from vitgan.runs.source import open_run
from vitgan.inspect import draw, maps
from vitgan.models.sampling import latents


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small run (2 blocks in D, 48 images, a fakes grid every 16) and its exports."""
    root = tmp_path_factory.mktemp("inspect")
    data, run = make_images(root / "imgs"), root / "R"
    assert main(["train", "--preset", "tiny", "--data", data, "--kimg", "0.048", "--out", run,
                 *small_args(image_kimg=0.016, d_depth=2)]) == 0
    assert main(["export", run, "--out", root / "hub-gd", "--what", "G,D"]) == 0
    assert main(["export", run, "--out", root / "hub-g"]) == 0
    return root, run, data


@pytest.fixture(scope="module")
def look(trained):
    root, run, _ = trained
    assert main(["inspect", run, "--out", root / "look", "--real", "3", "--fake", "2", "--seed", "5"]) == 0
    return root / "look"


def _one_line_error(rc, err, code):
    assert rc == code, err
    assert err.startswith("vitgan: error: ") and err.strip().count("\n") == 0 and "Traceback" not in err


# ------------------------------------------------------------------ the numbers
def test_d_maps_are_the_blocks_reference_attention(trained):
    """d_maps (hooks on one ordinary forward) == each block's probabilities on its own LN'd input,
    the blocks run by hand; rows are distributions."""
    D = open_run(trained[1]).D
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    got = maps.d_maps(D, x)
    h = D.patch_embedding(x)
    h = torch.cat([D.cls_token.expand(3, -1, -1), h], dim=1) + D.pos_embedding
    with torch.no_grad():
        for block, p in zip(D.blocks, got, strict=True):
            torch.testing.assert_close(p, block.attn.probabilities(block.norm1(h)))
            h = block(h)
    assert len(got) == 2 and got[0].shape == (3, 2, 17, 17)
    torch.testing.assert_close(maps.class_attention(got).sum(-1), torch.ones(2, 3, 2))


def test_rollout_formula():
    """Uniform attention over N tokens, two blocks: a = 0.5/N + 0.5 I, R_2 = a @ a."""
    n = 5
    uniform = torch.full((1, 2, n, n), 1 / n)
    a = 0.5 * uniform[0, 0] + 0.5 * torch.eye(n)
    roll = maps.rollout([uniform, uniform])
    torch.testing.assert_close(roll[0, 0], a[0])
    torch.testing.assert_close(roll[1, 0], (a @ a)[0])
    self_only = torch.eye(n).expand(1, 2, n, n)
    torch.testing.assert_close(maps.rollout([self_only])[0, 0], torch.eye(n)[0])  # collapsed: all on itself


def test_saliency_is_the_input_gradient(trained):
    D = open_run(trained[1]).D
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    sal, norms, logits = maps.saliency(D, x)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(D(xg).sum(), xg)
    torch.testing.assert_close(sal, g.abs().amax(1))
    torch.testing.assert_close(norms, g.flatten(1).norm(dim=1))
    torch.testing.assert_close(logits, D(x).detach())


def test_one_colour_scale_and_the_self_bar_show_a_collapse():
    """Uniform attention is drawn at 1/SATURATE of full colour whatever N; a cell whose bar is 1
    is filled to the top, a cell whose bar is 0 not at all."""
    for n in (16, 64):
        np.testing.assert_allclose(draw.attention_heat(np.full(n, 1 / n), int(n ** 0.5)), 1 / draw.SATURATE)
    img = np.zeros((8, 8, 3), np.uint8)
    grid = np.asarray(draw.labelled_grid([[img, img]], rows=["r"], cols=["a", "b"], bars=[[1.0, 0.0]]))
    left = grid.shape[1] - 2 * (8 + draw.BAR + draw.PAD)
    bar = lambda j: grid[16:24, left + j * (8 + draw.BAR + draw.PAD) + 8]  # noqa: E731
    assert (bar(0) == (0, 200, 255)).all() and (bar(1) == (60, 60, 60)).all()


# ------------------------------------------------------------------ training: attention<nimg>.png
def test_training_writes_an_attention_map_with_every_fakes_grid(trained):
    run = trained[1]
    fakes = sorted(p.name.removeprefix("fakes") for p in run.glob("fakes*.png"))
    atts = sorted(p.name.removeprefix("attention") for p in run.glob("attention*.png"))
    assert atts == fakes == ["000000000.png", "000000016.png", "000000032.png", "000000048.png"]
    img = Image.open(run / "attention000000048.png")
    zoom = draw.zoom_for(16)
    assert img.mode == "RGB" and img.height == 16 + 2 * (16 * zoom + draw.PAD) + 16  # 2 blocks, header, footer
    assert Image.open(run / "attention000000000.png").tobytes() != img.tobytes()  # D changed


# ------------------------------------------------------------------ the command
def test_inspect_a_run_folder(trained, look):
    root, run, _ = trained
    names = {p.name for p in look.iterdir()}
    assert names == {"d_attention.png", "d_rollout.png", "d_saliency.png", "g_attention.png", "over_time",
                     "inspect.json", "index.html"}
    assert sorted(p.name for p in (look / "over_time").iterdir()) == sorted(p.name for p in run.glob("attention*.png"))
    page = (look / "index.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', page)
    pngs = sorted(str(p.relative_to(look)) for p in look.rglob("*.png"))
    assert sorted(srcs) == pngs  # every PNG on the page, every image named exists
    assert "d_qk_gain" in page and "diag/attn_entropy_min" in page  # options and diagnostics
    info = json.loads((look / "inspect.json").read_text())
    assert info["images"][3:] == ["seed 5", "seed 6"] and len(info["images"]) == 5
    src = open_run(run)
    with torch.no_grad():
        fakes = src.G(latents([5, 6], src.cfg.z_dim))
        np.testing.assert_allclose(info["d_logit"][3:], src.D(fakes).numpy(), atol=1e-4)
    assert np.array(info["d_class_self_attention"]).shape == (5, 2, 2)  # images, blocks, heads
    assert np.array(info["g_self_attention"]).shape == (2, 1, 2) and info["g_token"] == 2 * 4 + 2
    d_att = Image.open(look / "d_attention.png")
    assert d_att.height == 16 + 5 * (16 * draw.zoom_for(16) + draw.PAD) + 16  # one row per image


def test_inspect_export_folders(trained, tmp_path, capsys):
    root, _, data = trained
    rc, out, _ = main(["inspect", root / "hub-gd", "--out", tmp_path / "a", "--data", data], capsys)
    assert rc == 0, out
    assert {p.name for p in (tmp_path / "a").glob("*.png")} == {"d_attention.png", "d_rollout.png",
                                                               "d_saliency.png", "g_attention.png"}
    rc, out, _ = main(["inspect", root / "hub-g", "--out", tmp_path / "b"], capsys)
    assert rc == 0 and "no discriminator" in out and "--what G,D" in out
    assert {p.name for p in (tmp_path / "b").glob("*.png")} == {"g_attention.png"}
    assert "no discriminator" in (tmp_path / "b" / "index.html").read_text()


def test_inspect_a_hybrid_with_stylegan2_d(tmp_path, capsys):
    """StyleGAN2-D has no attention: saliency only for D, G's attention as usual, a note."""
    from test_train_helpers import SMALL_MODEL

    from vitgan.config import ModelConfig
    from vitgan.models import build_discriminator, build_generator
    from vitgan.runs import checkpoint as ckpt

    cfg = ModelConfig(**SMALL_MODEL, d_arch="stylegan2", sg2_channel_base=64, sg2_channel_max=16)
    G, D = build_generator(cfg), build_discriminator(cfg)
    ckpt.save_checkpoint(tmp_path / "R", modules={"G": G, "D": D, "G_ema": G}, model_cfg=cfg, state={},
                         nimg=16, step=1, snapshot=True)
    rc, out, _ = main(["inspect", tmp_path / "R", "--out", tmp_path / "look", "--data",
                       make_images(tmp_path / "imgs"), "--real", "2", "--fake", "2"], capsys)
    assert rc == 0, out
    assert "d_arch=stylegan2 has no attention" in out
    assert {p.name for p in (tmp_path / "look").glob("*.png")} == {"d_saliency.png", "g_attention.png"}


@pytest.mark.parametrize("extra, code, words", [
    (["--token", "16"], 2, "G has 16 tokens"),
    (["--real", "0", "--fake", "0"], 2, "nothing to look at"),
    (["--real", "65"], 2, "between 0 and 64"),
    (["--data", "/nonexistent/imgs"], 1, "/nonexistent/imgs"),
])
def test_bad_inspect_options(trained, tmp_path, capsys, extra, code, words):
    rc, _, err = main(["inspect", trained[1], "--out", tmp_path / "o", *extra], capsys)
    _one_line_error(rc, err, code)
    assert words in err and not (tmp_path / "o").exists()
    assert not list(tmp_path.iterdir())  # no staging folder left behind


def test_inspect_refuses_a_folder_that_is_not_empty(trained, tmp_path, capsys):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "keep.txt").write_text("mine")
    rc, _, err = main(["inspect", trained[1], "--out", tmp_path / "o"], capsys)
    _one_line_error(rc, err, 1)
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["keep.txt"]


# ------------------------------------------------------------------ index.html in a real browser
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
CHECK_PAGE = """<!doctype html><html><body><pre id="result">pending</pre><iframe id="f" src="{page}"></iframe>
<script>
const f = document.getElementById("f");
f.addEventListener("load", () => {{
  const imgs = Array.from(f.contentDocument.images);
  document.getElementById("result").textContent = JSON.stringify(imgs.map(i => ({{
    src: i.getAttribute("src"), ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth}})));
}});
</script></body></html>"""


def _images_in_chromium(site, page, tmp_path):
    """Serve ``site`` on loopback, open check.html (``page`` in an iframe) in headless Chromium and
    return what its script found for every <img> of ``page``."""
    (site / "check.html").write_text(CHECK_PAGE.format(page=page))
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    profile = tmp_path / f"profile-{page.replace('/', '-')}"
    try:
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--dump-dom",
             f"http://127.0.0.1:{server.server_address[1]}/check.html"],
            capture_output=True, text=True, timeout=180)
    finally:
        server.shutdown()
        server.server_close()
    found = re.search(r'<pre id="result">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"no result from Chromium (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on PATH (Debian: apt-get install chromium); "
                                            "the index.html browser check needs a real browser")
def test_index_html_loads_every_image_in_headless_chromium(look, tmp_path):
    site = tmp_path / "site"
    shutil.copytree(look, site / "look")
    (site / "broken").mkdir()  # the control: a page naming a missing image must be caught
    (site / "broken" / "index.html").write_text('<img src="../look/d_attention.png"><img src="missing.png">')
    imgs = _images_in_chromium(site, "look/index.html", tmp_path)
    expected = sorted(re.findall(r'<img src="([^"]+)"', (look / "index.html").read_text()))
    assert sorted(i["src"] for i in imgs) == expected and len(expected) >= 8
    assert all(i["ok"] for i in imgs), [i for i in imgs if not i["ok"]]
    sizes = {i["src"]: i["w"] for i in imgs}
    assert sizes["d_attention.png"] == Image.open(look / "d_attention.png").width
    control = _images_in_chromium(site, "broken/index.html", tmp_path)
    assert [i["ok"] for i in control] == [True, False]
