"""Nothing lost, nothing trusted blindly (issue 7): signals, SIGKILL, NaN, unwritable output."""

from __future__ import annotations

import errno
import os
import random
import signal
import time

import pytest
import torch
from test_train_helpers import (assert_same_tensors, checkpoint_tensors, main, make_images, popen,
                                small_args, stats)

from vitgan.runs import checkpoint as ckpt


def _wait_for_ticks(proc, run, n, timeout=120):
    """Wait until stats.jsonl has n lines (training is under way) or the process ends."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            return False
        path = run / "stats.jsonl"
        if path.is_file() and path.read_text().count("\n") >= n:
            return True
        time.sleep(0.05)
    raise AssertionError("training made no progress")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_saves_a_checkpoint_and_exits_cleanly(tmp_path, sig):
    data = make_images(tmp_path / "imgs")
    run = tmp_path / "R"
    # a long run whose only checkpoints would come at 1000 kimg: the one we find is the signal's
    proc = popen("train", "--preset", "tiny", "--data", data, "--kimg", "1000", "--out", run,
                 *small_args(ckpt_kimg=1000, snap_kimg=1000, image_kimg=1000))
    assert _wait_for_ticks(proc, run, 1)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    m = ckpt.latest_valid(run)
    assert m is not None and m["nimg"] >= 16
    name = signal.Signals(sig).name
    assert f"{name}: saved" in out and f"at kimg {m['nimg'] / 1000:.3f}" in out
    assert f"{name}: saved" in (run / "log.txt").read_text()
    if sig == signal.SIGINT:  # and it continues from there
        rc = main(["train", "--resume", run, "--kimg", (m["nimg"] + 16) / 1000])
        assert rc == 0 and ckpt.latest_valid(run)["nimg"] == m["nimg"] + 16


def test_sigkill_at_random_moments_then_resume_equals_uninterrupted(tmp_path):
    """Kill -9 a run at random moments (during start-up and during training, checkpoint writes
    included), resume each time; the final weights equal an uninterrupted run's, bitwise."""
    data = make_images(tmp_path / "imgs")
    kimg, opts = 0.096, small_args()
    ref = tmp_path / "ref"
    assert main(["train", "--preset", "tiny", "--data", data, "--kimg", kimg, "--out", ref, *opts]) == 0

    run = tmp_path / "R"
    rng = random.Random(int(os.environ.get("VITGAN_KILL_SEED", time.time_ns() % 10**6)))
    kills, attempts = 0, 0
    while True:
        attempts += 1
        assert attempts < 12, "the run never finished"
        if (run / "training_options.json").is_file():
            args = ["train", "--resume", run]
        else:
            args = ["train", "--preset", "tiny", "--data", data, "--kimg", kimg, "--out", run, *opts]
        proc = popen(*args)
        if kills == 0:
            time.sleep(rng.uniform(0.0, 2.0))  # anywhere in start-up (or training)
            killed = proc.poll() is None
        elif kills < 3:
            done_ticks = len(stats(run)) if (run / "stats.jsonl").is_file() else 0
            killed = _wait_for_ticks(proc, run, done_ticks + 1)
            if killed:
                time.sleep(rng.uniform(0.0, 0.15))  # mid-tick, mid-checkpoint, ...
                killed = proc.poll() is None
        else:
            killed = False
        if killed:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
            kills += 1
            continue
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        break
    assert kills >= 2
    assert_same_tensors(checkpoint_tensors(ref, 96), checkpoint_tensors(run, 96))
    for line in (run / "stats.jsonl").read_text().splitlines():  # appended lines stay whole
        assert line.startswith("{") and line.endswith("}")


@pytest.mark.parametrize("policy", ["stop", "rollback"])
def test_nan_stops_with_a_clear_message_or_rolls_back(tmp_path, capsys, monkeypatch, policy):
    from vitgan.train.trainer import Trainer

    original = Trainer.train_step
    injected = []

    def poisoned(self):
        original(self)
        if self.step == 5 and not injected:  # a weight goes NaN once, in the third tick
            injected.append(self.step)
            with torch.no_grad():
                next(self.G.parameters()).fill_(float("nan"))

    monkeypatch.setattr(Trainer, "train_step", poisoned)
    data = make_images(tmp_path / "imgs")
    run = tmp_path / "R"
    rc, out, err = main(["train", "--preset", "tiny", "--data", data, "--kimg", "0.064", "--out", run,
                         *small_args(nan_policy=policy, lr=0.002)], capsys)
    if policy == "stop":
        assert rc == 1 and "Traceback" not in err
        assert "training diverged: non-finite" in err and "at kimg 0.048 (step 6)" in err
        assert "the last good checkpoint is" in err and "ckpt-000000000032.json" in err
        assert ckpt.latest_valid(run)["nimg"] == 32  # nothing written after the NaN
        weights = checkpoint_tensors(run)
        assert all(torch.isfinite(v).all() for v in weights.values())
    else:
        assert rc == 0, err
        assert "rolled back to" in out and "lr G 0.001" in out
        weights = checkpoint_tensors(run)
        assert ckpt.latest_valid(run)["nimg"] == 64
        assert all(torch.isfinite(v).all() for v in weights.values())
        state = torch.load(ckpt.ckpt_paths(run, 64)["state"], weights_only=True)
        assert state["lr_scale"] == 0.5 and state["rollbacks"] == 1


def test_unwritable_output_is_one_line(tmp_path, capsys):
    data = make_images(tmp_path / "imgs")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rc, _, err = main(["train", "--preset", "tiny", "--data", data, "--out", blocker / "R", *small_args()], capsys)
    assert rc == 1 and "cannot write" in err and "Traceback" not in err and err.count("\n") == 1


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_folder_is_one_line(tmp_path, capsys):
    data = make_images(tmp_path / "imgs")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        rc, _, err = main(["train", "--preset", "tiny", "--data", data, "--out", ro / "R", *small_args()], capsys)
    finally:
        ro.chmod(0o700)
    assert rc == 1 and "permission denied" in err


def test_full_disk_while_saving_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    real = ckpt.atomic_write_bytes
    calls = []

    def full(path, data):
        if str(path).endswith(".pt"):
            calls.append(path)
            if len(calls) == 2:  # the second checkpoint's training state
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", full)
    data = make_images(tmp_path / "imgs")
    run = tmp_path / "R"
    rc, _, err = main(["train", "--preset", "tiny", "--data", data, "--kimg", "0.064", "--out", run,
                       *small_args()], capsys)
    assert rc == 1 and "Traceback" not in err
    assert "the disk is full" in err and "the last complete checkpoint is" in err
    assert ckpt.latest_valid(run)["nimg"] == 16
    assert not [p for p in (run / "checkpoints").iterdir() if ".tmp-" in p.name]
