"""Resuming is exact: stopped and resumed == never stopped (CPU, deterministic), issue 3."""

from __future__ import annotations

import json

import pytest
import torch
from test_train_helpers import assert_same_tensors, checkpoint_tensors, main, make_images, small_args, stats

# Every piece of state that a resume must restore: accumulation (2 rounds of 4), lazy R1 every
# 3 steps (reference attention: the fused CPU kernel has no double backward), LeCam anchors,
# flips, lr warm-up and the EMA ramp-up.
EXTRA = dict(batch_gpu=4, r1_gamma=0.5, r1_interval=3, fused_attention="false", lecam_weight=0.1,
             hflip="true", lr_warmup_kimg=0.02)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("straight")
    data = make_images(tmp / "imgs")
    run = tmp / "A"
    assert main(["train", "--preset", "tiny", "--data", data, "--kimg", "0.064", "--out", run,
                 *small_args(**EXTRA)]) == 0
    return data, run


def _state(run, nimg):
    from vitgan.runs.checkpoint import ckpt_paths

    return torch.load(ckpt_paths(run, nimg)["state"], weights_only=True)


def test_stopped_and_resumed_equals_straight(straight, tmp_path):
    data, a = straight
    b = tmp_path / "B"
    assert main(["train", "--preset", "tiny", "--data", data, "--kimg", "0.032", "--out", b,
                 *small_args(**EXTRA)]) == 0
    assert main(["train", "--resume", b, "--kimg", "0.064"]) == 0
    assert_same_tensors(checkpoint_tensors(a, 64), checkpoint_tensors(b, 64))  # G, D, G_ema: bitwise
    sa, sb = _state(a, 64), _state(b, 64)
    for opt in ("G_opt", "D_opt"):
        for (ka, va), (kb, vb) in zip(sa[opt]["state"].items(), sb[opt]["state"].items()):
            assert ka == kb and all(torch.equal(va[k], vb[k]) for k in va)
    assert torch.equal(sa["ranks"][0]["loss"]["lecam_real"], sb["ranks"][0]["loss"]["lecam_real"])
    # the same losses, tick by tick (ticks fall on the same images)
    keys = [k for k in stats(a)[0] if k.startswith(("loss/", "scores/"))]
    assert "loss/r1" in keys and "loss/lecam" in keys
    ra = [[r.get(k) for k in keys] for r in stats(a)]
    rb = [[r.get(k) for k in keys] for r in stats(b)]
    assert ra == rb


def test_damaged_newest_checkpoint_falls_back_and_still_matches(straight, tmp_path):
    """A truncated newest checkpoint is detected; the previous one is used (and the run is set
    aside, not deleted); the continued run still ends exactly where the straight one did."""
    data, a = straight
    b = tmp_path / "B"
    assert main(["train", "--preset", "tiny", "--data", data, "--kimg", "0.048", "--out", b,
                 *small_args(**EXTRA)]) == 0
    ck = b / "checkpoints"
    newest = ck / "ckpt-000000000048.safetensors"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # torn write
    assert main(["train", "--resume", b, "--kimg", "0.064"]) == 0
    log = (b / "log.txt").read_text()
    assert "ckpt-000000000048.json is incomplete or damaged" in log
    assert "resumed from" in log and "ckpt-000000000032.json at kimg 0.032" in log
    assert (ck / "ckpt-000000000048.json.damaged").is_file()
    assert_same_tensors(checkpoint_tensors(a, 64), checkpoint_tensors(b, 64))
    manifest = json.loads((ck / "ckpt-000000000064.json").read_text())
    assert manifest["nimg"] == 64 and manifest["step"] == 8
