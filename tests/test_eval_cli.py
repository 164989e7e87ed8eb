"""`vitgan eval` end to end on small image folders, its errors, and the checkpoint branch."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import test_metrics_standins as standins
from vitgan.commands import eval as eval_cmd

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

def vitgan(*args, cache=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}
    if cache is not None:
        env["VITGAN_CACHE_DIR"] = str(cache)
    return subprocess.run([sys.executable, "-m", "vitgan", *map(str, args)], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=300)


def _write_folder(path: Path, images: np.ndarray) -> Path:
    path.mkdir(parents=True)
    for i, a in enumerate(images):
        Image.fromarray(a).save(path / f"{i:04d}.png")
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    ramp = np.linspace(0, 255, 32)
    smooth = np.stack([np.stack([np.add.outer(ramp * (i + 1) / 6, ramp * (5 - i) / 6) / 2] * 3, -1)
                       for i in range(6)]).astype(np.uint8)
    return _write_folder(root / "noise", noise), _write_folder(root / "smooth", smooth), root


def test_eval_end_to_end_on_two_image_folders(folders):
    noise, smooth, root = folders
    cache = root / "stats"
    args = (noise, "--real", smooth, "--metrics", "fid,kid,is", "--n", 6, "--batch", 4, "--device", "cpu",
            "--cache-dir", cache, "--json")
    r = vitgan("eval", *args, cache=root / "home-cache")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)  # exactly one JSON object on stdout
    assert out["n"] == 6 and out["n_real"] == 6 and out["real"] == str(smooth) and out["fake"] == str(noise)
    assert "inception-2015-12-05" in out["network"] and len(out["network_sha256"]) == 64
    assert np.isfinite(out["fid"]) and out["fid"] > 10
    assert np.isfinite(out["kid_mean"]) and out["kid_mean"] > 0 and out["kid_std"] >= 0
    assert out["is_mean"] is None and "not available with this network" in out["is_note"]
    assert len(list(cache.glob("*.npz"))) == 2  # both sides' statistics were cached

    # the same folder on both sides, human output: FID 0 from the cached statistics
    same = vitgan("eval", noise, "--real", noise, "--metrics", "fid", "--n", 6, "--cache-dir", cache,
                  "--device", "cpu")
    assert same.returncode == 0, same.stderr
    lines = dict(line.split(None, 1) for line in same.stdout.splitlines())
    assert abs(float(lines["FID"])) < 1e-6 and "network:" in lines and "real:" in lines
    assert len(list(cache.glob("*.npz"))) == 2  # reused, not recomputed under another key


@pytest.mark.parametrize("argv, code, words", [
    (["--metrics", "fid", "--n", "6"], 2, "--real"),
    (["--metrics", "fid,nope", "--n", "6", "--real", "x"], 2, "unknown metric"),
    (["--n", "1", "--real", "x"], 2, "--n 1"),
    (["--n", "6", "--metrics", "kid"], 2, "--real"),
    (["--n", "6", "--real", "x", "--device", "tpu"], 2, "--device"),
])
def test_eval_option_errors_are_one_line(folders, capsys, argv, code, words):
    from vitgan.cli import main

    noise, _, _ = folders
    assert main(["eval", str(noise), *argv]) == code
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("vitgan: error:") and words in err and err.count("\n") == 1


def test_eval_missing_source_is_a_user_error(tmp_path, capsys, monkeypatch):
    from vitgan.cli import main

    def no_network(*_, **__):
        raise AssertionError("the network must not be loaded before the sources are checked")

    monkeypatch.setattr("vitgan.metrics.inception.load_inception", no_network)
    assert main(["eval", str(tmp_path / "missing"), "--real", str(tmp_path), "--n", "4"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_is_checkpoint(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "training_options.json").write_text("{}")
    assert eval_cmd.is_checkpoint(str(run))
    ckpt = tmp_path / "network-snapshot-000001.safetensors"
    ckpt.write_bytes(b"")
    assert eval_cmd.is_checkpoint(str(ckpt))
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    for source in (folder, tmp_path / "data.tar.gz", tmp_path / "x.npz", "cifar10"):
        assert not eval_cmd.is_checkpoint(str(source))


def test_eval_of_a_checkpoint_uses_the_ema_generator(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "training_options.json").write_text("{}")
    G = standins.TinyGenerator(resolution=8)
    opened = {}

    def fake_open(source, *, resolution, channels, split, max_images):
        opened.update(source=source, resolution=resolution, channels=channels, split=split, max_images=max_images)
        return standins.TensorDataset(standins.random_images(30, size=8)[:max_images], split=split)

    monkeypatch.setattr(eval_cmd, "_load_generator", lambda path, device: (G, G.cfg))
    monkeypatch.setattr(eval_cmd, "_open", fake_open)
    monkeypatch.setattr("vitgan.metrics.inception.load_inception",
                        lambda path, device, **kw: standins.StandInExtractor(has_logits=True))
    parser = argparse.ArgumentParser()
    eval_cmd.add_arguments(parser)
    args = parser.parse_args([str(run), "--real", "cifar10", "--split", "test", "--metrics", "fid,kid,is",
                              "--n", "20", "--seed", "3", "--truncation", "0.7", "--json", "--device", "cpu",
                              "--cache-dir", str(tmp_path / "c")])
    assert eval_cmd.run(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert opened == dict(source="cifar10", resolution=8, channels=3, split="test", max_images=20)
    assert out["fake_kind"] == "checkpoint" and out["seed"] == 3 and out["truncation"] == 0.7
    assert out["n"] == 20 and out["n_real"] == 20 and out["is_mean"] >= 1.0
    assert all(np.isfinite(out[k]) for k in ("fid", "kid_mean", "kid_std", "is_mean", "is_std"))
    assert torch.is_grad_enabled()


def test_eval_of_a_real_checkpoint_file(folders, tmp_path):
    """A weights-only checkpoint of the tiny preset, through vitgan.runs.source.open_run."""
    from vitgan import model_config
    from vitgan.models.vit_generator import Generator

    noise, _, _ = folders
    cfg = model_config("tiny")
    torch.save({"model_config": cfg.to_dict(), "G_ema": Generator(cfg).state_dict()}, tmp_path / "G.pt")
    r = vitgan("eval", tmp_path / "G.pt", "--real", noise, "--metrics", "fid", "--n", 4, "--device", "cpu",
               "--cache-dir", tmp_path / "stats", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["fake_kind"] == "checkpoint" and out["n"] == 4 and out["resolution"] == cfg.resolution
    assert np.isfinite(out["fid"]) and out["fid"] > 0


def test_eval_and_training_metrics_go_through_the_same_registry_call(tmp_path, monkeypatch, capsys):
    """`vitgan eval` and the training hook (evaluate_generator, which Trainer.metrics calls) both
    call vitgan.metrics.registry.evaluate."""
    from vitgan.metrics import evaluate_generator
    from vitgan.metrics import registry

    calls, original = [], registry.evaluate

    def spy(metrics, **kw):
        calls.append(tuple(metrics) if not isinstance(metrics, str) else metrics)
        return original(metrics, **kw)

    monkeypatch.setattr(registry, "evaluate", spy)
    G = standins.TinyGenerator(resolution=8)
    real = standins.TensorDataset(standins.random_images(12, size=8))
    run, parser = standins.stand_in_eval(monkeypatch, tmp_path, G, real)
    args = parser.parse_args([str(run), "--real", "x", "--metrics", "fid", "--n", "12", "--json",
                              "--device", "cpu", "--cache-dir", str(tmp_path / "c")])
    assert eval_cmd.run(args) == 0
    from_cli = json.loads(capsys.readouterr().out)["fid"]
    from_training = evaluate_generator(G, real, metrics=("fid",), n=12, batch=32,
                                       inception=standins.StandInExtractor(), cache_dir=tmp_path / "c")
    assert calls == [("fid",), ("fid",)]
    assert from_cli == from_training["fid"]
