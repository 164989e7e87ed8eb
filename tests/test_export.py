"""`vitgan export`: Hub-style model folders, from_pretrained offline, ONNX in onnxruntime, bad input (issue 14)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from test_train_helpers import SMALL_MODEL, checkpoint_tensors, env, load_G, main, make_images, small_args

import test_metrics_standins as standins
from vitgan.config import ModelConfig
from vitgan.errors import UserError
from vitgan.runs import checkpoint as ckpt

ONNX_TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| over every pixel, images in [-1, 1]
SMALL_SG2 = dict(sg2_channel_base=64, sg2_channel_max=16)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny training run (2 steps) whose in-training metrics (pr, through the stand-in network)
    wrote metric-pr.jsonl, exported once as a Hub folder with D and an ONNX file."""
    root = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VITGAN_CACHE_DIR", str(root / "cache"))
        mp.setattr("vitgan.metrics.inception.load_inception", lambda path, device, **kw: standins.StandInExtractor())
        run = root / "R"
        assert main(["train", "--preset", "tiny", "--data", make_images(root / "imgs"), "--kimg", "0.016",
                     "--out", run, *small_args(metrics="pr", metrics_kimg=0.016, metrics_n=8)]) == 0
    hub = root / "hub"
    assert main(["export", run, "--out", hub, "--what", "G,D", "--format", "hub,onnx"]) == 0
    return run, hub


def _one_line_error(rc, err, code=1):
    assert rc == code, err
    assert err.startswith("vitgan: error: ") and err.strip().count("\n") == 0 and "Traceback" not in err


# ------------------------------------------------------------------ the Hub folder
def test_hub_folder_holds_config_weights_card_and_samples(trained):
    run, hub = trained
    files = sorted(str(p.relative_to(hub)) for p in hub.rglob("*") if p.is_file())
    assert files == ["README.md", "config.json", "discriminator/README.md", "discriminator/config.json",
                     "discriminator/model.safetensors", "export.json", "metrics.json", "model.onnx",
                     "model.safetensors", "samples.png", "training_options.json"]
    cfg = ModelConfig.from_dict(json.loads((run / "training_options.json").read_text())["model"])
    config = json.loads((hub / "config.json").read_text())
    assert config == {**cfg.to_dict(), "vitgan_format": "vitgan-hub-v1", "vitgan_role": "generator"}
    assert json.loads((hub / "discriminator" / "config.json").read_text())["vitgan_role"] == "discriminator"
    saved = checkpoint_tensors(run)
    weights = load_file(str(hub / "model.safetensors"))
    assert weights.keys() == {k.removeprefix("G_ema.") for k in saved if k.startswith("G_ema.")}
    assert all(torch.equal(v, saved[f"G_ema.{k}"]) for k, v in weights.items())  # the EMA generator
    d_weights = load_file(str(hub / "discriminator" / "model.safetensors"))
    assert all(torch.equal(v, saved[f"D.{k}"]) for k, v in d_weights.items())

    card = (hub / "README.md").read_text()
    pr_row = json.loads((run / "metric-pr.jsonl").read_text().splitlines()[-1])
    assert card.startswith("---\n") and "library_name: vitgan" in card
    assert "Generator.from_pretrained" in card and "![samples](samples.png)" in card
    assert f"precision {pr_row['precision']:.4g}, recall {pr_row['recall']:.4g}" in card  # the measured metrics
    assert '"metrics_kimg": 0.016' in card and '"preset": "tiny"' in card              # the training options
    assert json.loads((hub / "metrics.json").read_text())["pr"][-1] == pr_row
    export = json.loads((hub / "export.json").read_text())
    assert export["kimg"] == 0.016 and export["generator"] == "G_ema" and len(export["weights_sha256"]) == 64


def test_sample_from_the_hub_folder_is_identical(trained, tmp_path):
    run, hub = trained
    assert main(["sample", run, "--n", "16", "--out", tmp_path / "run.png"]) == 0
    assert main(["sample", hub, "--n", "16", "--out", tmp_path / "hub.png"]) == 0
    assert (tmp_path / "run.png").read_bytes() == (tmp_path / "hub.png").read_bytes()
    assert (hub / "samples.png").read_bytes() == (tmp_path / "hub.png").read_bytes()
    G_run, _ = load_G(run, log=lambda m: None)
    G_hub, cfg = load_G(hub, log=lambda m: None)
    z = torch.randn(5, cfg.z_dim)
    with torch.no_grad():
        assert torch.equal(G_run(z, truncation_psi=0.6), G_hub(z, truncation_psi=0.6))


def test_from_pretrained_works_offline(trained, monkeypatch):
    from vitgan import Discriminator, Generator

    run, hub = trained

    def no_network(*args, **kwargs):
        raise AssertionError("from_pretrained of a local folder opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)  # HF_HUB_OFFLINE unset here: the guard is this
    G = Generator.from_pretrained(hub)
    G_run, cfg = load_G(run, log=lambda m: None)
    assert type(G) is Generator and not G.training and G.cfg == cfg
    z = torch.randn(3, cfg.z_dim)
    with torch.no_grad():
        assert torch.equal(G(z), G_run(z))
    D = Discriminator.from_pretrained(hub / "discriminator")
    assert type(D) is Discriminator and D.cfg == cfg
    with pytest.raises(UserError, match="holds a discriminator, not a generator"):
        Generator.from_pretrained(hub / "discriminator")
    # the exact command of the issue, in a fresh interpreter
    r = subprocess.run([sys.executable, "-c", "from vitgan import Generator; "
                        f"G = Generator.from_pretrained({hub.name + '/'!r}); print(type(G).__name__)"],
                       cwd=hub.parent, env={**env(), "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "Generator", r.stderr


def test_push_to_hub_uploads_the_exported_card(trained, tmp_path, monkeypatch):
    """push_to_hub (the library's call; its HfApi replaced here, no network) of a model loaded from
    the export folder uploads that folder's card and records; changed weights get a fresh card."""
    from vitgan import Generator

    run, hub = trained
    uploaded = {}

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **kw):
            return type("Repo", (), {"repo_id": repo_id})()

        def upload_folder(self, *, repo_id, folder_path, **kw):
            uploaded.update({p.name: p.read_bytes() for p in folder_path.iterdir() if p.is_file()})
            return f"https://huggingface.co/{repo_id}/commit/0"

    monkeypatch.setattr("huggingface_hub.hub_mixin.HfApi", FakeApi)
    G = Generator.from_pretrained(hub)
    G.push_to_hub("someone/vitgan-tiny")
    assert sorted(uploaded) == ["README.md", "config.json", "export.json", "metrics.json", "model.safetensors",
                                "samples.png", "training_options.json"]
    for name in ("README.md", "samples.png", "config.json", "model.safetensors"):
        assert uploaded[name] == (hub / name).read_bytes(), name
    with torch.no_grad():
        next(G.parameters()).add_(1.0)
    G.save_pretrained(tmp_path / "changed")
    assert sorted(os.listdir(tmp_path / "changed")) == ["README.md", "config.json", "model.safetensors"]
    assert "samples.png" not in (tmp_path / "changed" / "README.md").read_text()


@pytest.mark.parametrize("g_arch,d_arch", [("stylegan2", "stylegan2"), ("vit", "stylegan2"), ("stylegan2", "vit")])
def test_every_architecture_round_trips(tmp_path, g_arch, d_arch):
    from vitgan import Generator, build_discriminator, build_generator

    cfg = ModelConfig(**SMALL_MODEL, **SMALL_SG2, g_arch=g_arch, d_arch=d_arch)
    G, D, G_ema = build_generator(cfg), build_discriminator(cfg), build_generator(cfg)
    with torch.no_grad():
        G_ema.w_avg.normal_()  # truncation has something to pull towards
    ckpt.save_checkpoint(tmp_path / "R", modules={"G": G, "D": D, "G_ema": G_ema}, model_cfg=cfg, state={},
                         nimg=16, step=1)
    assert main(["export", tmp_path / "R", "--out", tmp_path / "hub", "--what", "G,D"]) == 0
    G2 = Generator.from_pretrained(tmp_path / "hub")       # the class config.json names
    D2 = type(D).from_pretrained(tmp_path / "hub" / "discriminator")
    assert type(G2) is type(G_ema) and type(D2) is type(D)
    z = torch.randn(4, cfg.z_dim)
    with torch.no_grad():
        x = G_ema.eval()(z, truncation_psi=0.7)
        assert torch.equal(G2(z, truncation_psi=0.7), x)
        assert torch.equal(D2(x), D.eval()(x))


# ------------------------------------------------------------------ ONNX
def _check_onnx(path, G):
    from vitgan.export.onnx_file import onnx_session, run_onnx

    session = onnx_session(path)
    assert [i.name for i in session.get_inputs()] == ["z", "truncation_psi"]
    assert [o.name for o in session.get_outputs()] == ["images"]
    assert isinstance(session.get_inputs()[0].shape[0], str)  # a dynamic batch dimension
    worst = 0.0
    for batch in (1, 5):
        z = torch.randn(batch, G.cfg.z_dim)
        for psi in (1.0, 0.6):
            with torch.no_grad():
                ref = G.eval()(z, truncation_psi=psi)
            out = run_onnx(session, z, psi)
            assert out.shape == ref.shape
            worst = max(worst, float((out - ref).abs().max()))
    assert worst < ONNX_TOLERANCE, worst
    return worst


def test_onnx_reproduces_pytorch_in_onnxruntime(trained):
    import onnx

    run, hub = trained
    G, cfg = load_G(run, log=lambda m: None)
    assert cfg.fused_attention  # the fused path (SDPA) is on: export swaps it for the reference math
    _check_onnx(hub / "model.onnx", G)
    props = {p.key: p.value for p in onnx.load(str(hub / "model.onnx")).metadata_props}
    assert props["vitgan_format"] == "vitgan-onnx-v1" and json.loads(props["model_config"]) == cfg.to_dict()


def test_onnx_of_a_stylegan2_generator_from_an_export_folder(tmp_path):
    from vitgan import build_generator
    from vitgan.export.onnx_file import export_onnx

    cfg = ModelConfig(**SMALL_MODEL, **SMALL_SG2, g_arch="stylegan2")
    G = build_generator(cfg).eval()
    with torch.no_grad():
        G.w_avg.normal_()
    G.save_pretrained(tmp_path / "hub")
    assert main(["export", tmp_path / "hub", "--format", "onnx", "--out", tmp_path / "onnx"]) == 0
    assert sorted(os.listdir(tmp_path / "onnx")) == ["model.onnx"]
    _check_onnx(tmp_path / "onnx" / "model.onnx", G)
    fused = [m for m in G.modules() if isinstance(getattr(m, "fused", None), bool)]
    export_onnx(G, tmp_path / "again.onnx")
    assert all(m.fused for m in fused)  # the reference paths are switched back after the trace


def test_onnx_of_a_vit_generator_with_the_conv_head(tmp_path):
    """g_head=conv: the eval-mode G (stored noise, learned noise strengths) traces into ONNX and
    onnxruntime reproduces it."""
    from vitgan import build_generator
    from vitgan.export.onnx_file import export_onnx

    cfg = ModelConfig(**SMALL_MODEL, **SMALL_SG2, g_head="conv")
    G = build_generator(cfg).eval()
    with torch.no_grad():
        for layer in G.head.layers:
            layer.noise_strength.fill_(0.3)  # 0 at initialisation: make the noise count
    _check_onnx(export_onnx(G, tmp_path / "conv.onnx"), G)


# ------------------------------------------------------------------ bad input
def test_not_a_run_folder(tmp_path, capsys):
    images = make_images(tmp_path / "imgs", n=2)
    rc, _, err = main(["export", images, "--out", tmp_path / "o"], capsys)
    _one_line_error(rc, err)
    assert "neither a run folder" in err and "nor an export folder" in err
    rc, _, err = main(["export", tmp_path / "missing", "--out", tmp_path / "o"], capsys)
    _one_line_error(rc, err)
    assert "does not exist" in err
    (tmp_path / "empty-run").mkdir()
    (tmp_path / "empty-run" / "training_options.json").write_text("{}")
    rc, _, err = main(["export", tmp_path / "empty-run", "--out", tmp_path / "o"], capsys)
    _one_line_error(rc, err)
    assert "no complete checkpoint" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra,words", [(["--format", "zip"], "--format 'zip': choose from hub, onnx"),
                                         (["--what", "G,X"], "--what 'G,X': choose from G, D"),
                                         (["--format", "onnx", "--what", "G,D"], "--what applies to the Hub folder")])
def test_bad_options(trained, tmp_path, capsys, extra, words):
    rc, _, err = main(["export", trained[0], "--out", tmp_path / "o", *extra], capsys)
    _one_line_error(rc, err, code=2)
    assert words in err and not (tmp_path / "o").exists()


def test_out_must_be_new_or_empty_and_writable(trained, tmp_path, capsys):
    run = trained[0]
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    rc, _, err = main(["export", run, "--out", full], capsys)
    _one_line_error(rc, err)
    assert "is not empty; give a new or empty folder" in err
    assert os.listdir(full) == ["keep.txt"] and (full / "keep.txt").read_text() == "mine"
    (tmp_path / "afile").write_text("x")
    rc, _, err = main(["export", run, "--out", tmp_path / "afile"], capsys)
    _one_line_error(rc, err)
    assert "is a file" in err and (tmp_path / "afile").read_text() == "x"
    rc, _, err = main(["export", run, "--out", tmp_path / "afile" / "hub"], capsys)  # its parent is a file
    _one_line_error(rc, err)
    assert "afile is a file, not a folder; give a folder path" in err
    rc, _, err = main(["export", run, "--out", "/proc/vitgan-hub"], capsys)  # a folder nobody can write in
    _one_line_error(rc, err)
    assert "cannot write --out /proc/vitgan-hub" in err and "choose a folder you can write to" in err
    with pytest.MonkeyPatch.context() as mp:  # a read-only parent (the tests run as root, so pretend)
        mp.setattr("vitgan.commands.export.os.access", lambda path, mode: False)
        rc, _, err = main(["export", run, "--out", tmp_path / "ro" / "hub"], capsys)
    _one_line_error(rc, err)
    assert f"permission denied in {tmp_path}; choose a folder you can write to" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", run, "--out", empty]) == 0 and (empty / "model.safetensors").is_file()


def test_a_failure_midway_leaves_nothing(trained, tmp_path, capsys, monkeypatch):
    import errno

    def half_then_full_disk(src, folder, **kw):
        (folder / "config.json").write_text("{}")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("vitgan.export.hub_folder.write_hub_folder", half_then_full_disk)
    rc, _, err = main(["export", trained[0], "--out", tmp_path / "o"], capsys)
    _one_line_error(rc, err)
    assert "the disk is full" in err
    assert os.listdir(tmp_path) == []  # neither --out nor the staging folder beside it


def test_mismatched_weights_are_one_user_error(tmp_path):
    """A damaged export folder is one UserError, not a load_state_dict traceback."""
    from vitgan import Generator, build_generator

    cfg = ModelConfig(**SMALL_MODEL)
    build_generator(cfg).save_pretrained(tmp_path / "hub")
    config = json.loads((tmp_path / "hub" / "config.json").read_text())
    (tmp_path / "hub" / "config.json").write_text(json.dumps({**config, "g_dim": 32}))
    with pytest.raises(UserError, match="does not hold the weights its config.json describes") as err:
        Generator.from_pretrained(tmp_path / "hub")
    assert "of another shape" in str(err.value)  # it names the keys that do not fit, and their shapes
    assert "in the file" in str(err.value) and "\n" not in str(err.value)



def test_export_of_a_conditional_run_hub_and_onnx(tmp_path):
    """A class-conditional run exports too: its Hub folder samples the classes in turn (what
    `vitgan sample` draws, byte for byte), and the ONNX graph takes class_labels and matches
    PyTorch per class, with truncation toward each class's mean w."""
    pytest.importorskip("onnxruntime")
    from vitgan.export.onnx_file import onnx_session, run_onnx

    data = tmp_path / "data"
    for name in ("cat", "ship"):
        make_images(data / name, n=4)
    run, hub = tmp_path / "R", tmp_path / "hub"
    assert main(["train", "--preset", "tiny", "--data", data, "--out", run, "--kimg", "0.016",
                 *small_args(cond="true")]) == 0
    assert main(["export", run, "--out", hub, "--format", "hub,onnx"]) == 0
    assert main(["sample", run, "--n", "16", "--out", tmp_path / "run.png"]) == 0
    assert (hub / "samples.png").read_bytes() == (tmp_path / "run.png").read_bytes()
    G, cfg = load_G(hub, log=lambda m: None)
    assert cfg.classes == ["cat", "ship"]
    session = onnx_session(hub / "model.onnx")
    assert [i.name for i in session.get_inputs()] == ["z", "truncation_psi", "class_labels"]
    z = torch.randn(4, cfg.z_dim)
    for c in (torch.tensor([0, 1, 1, 0]), torch.tensor([1, 1, 1, 1])):
        for psi in (1.0, 0.5):
            with torch.no_grad():
                ref = G.eval()(z, truncation_psi=psi, c=c)
            assert float((run_onnx(session, z, psi, c) - ref).abs().max()) < ONNX_TOLERANCE
    with torch.no_grad():  # the class input is really used
        assert not torch.allclose(run_onnx(session, z, 1.0, torch.zeros(4, dtype=torch.long)),
                                  run_onnx(session, z, 1.0, torch.ones(4, dtype=torch.long)))
