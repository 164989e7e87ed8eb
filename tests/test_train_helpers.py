"""Shared helpers for the training, checkpoint, sample and robustness tests (no tests here).

A very small model (16x16 images, one block each, width 16) and a folder of 24 random PNGs keep
every training run to a fraction of a second of compute; process start-up dominates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]

SMALL_MODEL = dict(resolution=16, z_dim=16, w_dim=16, mapping_layers=1, g_dim=16, g_depth=1,
                   g_heads=2, g_mlp_dim=32, fourier_dim=8, inr_hidden=8, d_dim=16, d_depth=1,
                   d_heads=2, d_mlp_dim=32)
# batch 8, a tick every 2 steps (16 images), a checkpoint every tick, deterministic
SMALL_TRAIN = dict(batch=8, grid=2, tick_kimg=0.016, ckpt_kimg=0.016, image_kimg=0.032,
                   deterministic="true")


def small_args(**extra) -> list[str]:
    out = []
    for key, value in {**SMALL_MODEL, **SMALL_TRAIN, **extra}.items():
        out += ["--set", f"{key}={value}"]
    return out


def make_images(folder: Path, n: int = 24, res: int = 16) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        # smooth-ish colour blobs rather than pure noise
        base = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((res, res), Image.BILINEAR)
        img.save(folder / f"{i:03d}.png")
    return folder


def env() -> dict:
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS="1", TQDM_DISABLE="1", PYTHONUNBUFFERED="1")
    e.pop("RANK", None)
    e.pop("WORLD_SIZE", None)
    return e


def cli(*args, timeout=180, cwd=None) -> subprocess.CompletedProcess:
    """Run ``python -m vitgan ARGS`` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "vitgan", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env(), cwd=cwd)


def popen(*args, cwd=None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vitgan", *map(str, args)], env=env(), cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def main(argv, capsys=None):
    """Run the CLI in this process; returns (exit code, stdout, stderr) when capsys is given.
    Restores the global flags a deterministic run switches on."""
    from vitgan.cli import main as vitgan_main

    was_det = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    try:
        rc = vitgan_main([str(a) for a in argv])
    finally:
        torch.use_deterministic_algorithms(was_det)
        torch.set_num_threads(threads)
    if capsys is not None:
        cap = capsys.readouterr()
        return rc, cap.out, cap.err
    return rc


def load_G(path, log=lambda *_: None, device="cpu"):
    """(the EMA generator, its ModelConfig) of a run, checkpoint or export, as `vitgan sample`
    opens it (``vitgan.runs.source.open_run``)."""
    from vitgan.runs.source import open_run

    src = open_run(path, device, discriminator=False, log=log)
    return src.G, src.cfg


def checkpoint_tensors(run_dir: Path, nimg: int | None = None) -> dict[str, torch.Tensor]:
    """All tensors of a run's checkpoint (newest when nimg is None)."""
    from safetensors.torch import load_file

    from vitgan.runs.checkpoint import ckpt_paths, latest_valid

    if nimg is None:
        m = latest_valid(run_dir, log=lambda *_: None)
        path = Path(m["_dir"]) / m["files"]["weights"]["name"]
    else:
        path = ckpt_paths(run_dir, nimg)["weights"]
    return load_file(str(path))


def stats(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs: max |diff| {(a[k].float() - b[k].float()).abs().max()}"


def copy_run(run: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(run, to, ignore=shutil.ignore_patterns(".vitgan.lock"))
    return to


def tree(folder: Path) -> dict:
    """{relative path: bytes} of every file below ``folder`` (what a refused command must not change)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_kept(folder: Path, before: dict) -> None:
    """Every file of ``before`` (``tree``) is as it was; log.txt may only have grown (a refused
    resume logs why) and the lock file may have appeared."""
    after = tree(folder)
    log = "log.txt"
    assert set(after) - set(before) <= {".vitgan.lock"}, set(after) - set(before)
    for name, data in before.items():
        if name == log:
            assert after[name].startswith(data)
        else:
            assert after.get(name) == data, name
