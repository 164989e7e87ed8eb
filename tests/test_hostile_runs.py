"""Nothing lost, nothing silently wrong, round 2 (issue 15): the run folder and training options.

Each row makes its bad input itself and checks the exit code, the one line, that there is no
traceback, and what is on disk afterwards: two writers of one run folder, snapshots and grids
that never collide, snapshots with their own checksum, damaged and half-written checkpoints,
options that are not finite or that this machine cannot run, and messages that mislead.
"""

from __future__ import annotations

import errno
import json
import shlex
import signal
import time
from pathlib import Path

import pytest
import torch
from test_train_helpers import SMALL_MODEL, main, make_images, popen, small_args, stats

from vitgan.files import is_temporary
from vitgan.runs import checkpoint as ckpt
from vitgan.runs.lock import LOCK_NAME


def _one_line(err: str) -> None:
    assert "Traceback" not in err
    assert err.startswith("vitgan: error: ") and err.count("\n") == 1, err


def _wait_for_ticks(proc, run, n, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, proc.communicate()[1]
        path = run / "stats.jsonl"
        if path.is_file() and path.read_text().count("\n") >= n:
            return
        time.sleep(0.05)
    raise AssertionError("training made no progress")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_images(tmp_path_factory.mktemp("hostile") / "imgs")


@pytest.fixture(scope="module")
def resumed(data, tmp_path_factory):
    """A run to 0.016 kimg, resumed to 0.032 (snapshots at both ends), grids every tick."""
    run = tmp_path_factory.mktemp("resumed") / "R"
    opts = small_args(image_kimg=0.016)
    assert main(["train", "--preset", "tiny", "--data", data, "--kimg", "0.016", "--out", run, *opts]) == 0
    assert main(["train", "--resume", run, "--kimg", "0.032"]) == 0
    return run


# ===================================================================== options checked first
BAD = [
    (["--set", "lr=nan"], "lr=nan is not a finite number"),
    (["--set", "ema_kimg=nan"], "ema_kimg=nan is not a finite number"),
    (["--set", "lr=inf"], "lr=inf is not a finite number"),
    (["--kimg", "inf"], "kimg=inf is not a finite number"),
    (["--set", "bcr_real=nan"], "bcr_real=nan is not a finite number"),
    (["--set", "mapping_lr_mult=nan"], "mapping_lr_mult=nan is not a finite number"),
    (["--set", "precision=fp16", "--set", "device=cpu"], "precision=fp16 needs a CUDA device"),
    (["--set", "device=cuda:7"] if torch.cuda.is_available() else ["--set", "device=cuda"],
     "device=cuda"),
]


@pytest.mark.parametrize("dry", [False, True], ids=["run", "dry-run"])
@pytest.mark.parametrize("extra,message", BAD, ids=[m.split()[0] for _, m in BAD])
def test_bad_option_exit_2_one_line_no_run_folder(data, tmp_path, capsys, extra, message, dry):
    out = tmp_path / "R"
    # a short --kimg, so that a row that is not refused fails quickly instead of training on
    args = ["train", "--preset", "tiny", "--data", data, "--kimg", "0.016", "--out", out,
            *small_args(), *extra]
    rc, _, err = main(args + (["--dry-run"] if dry else []), capsys)
    assert rc == 2 and message in err, err
    _one_line(err)
    assert not out.exists()
    rc, _, err = main(args, capsys)  # the same command again: the same line, not "--out is not empty"
    assert rc == 2 and message in err and not out.exists()


def test_a_new_run_failing_before_its_first_checkpoint_leaves_no_folder(data, tmp_path, capsys):
    """lr=1e30 is finite and > 0, so training starts and diverges at the first tick, before any
    checkpoint: its folder is removed, so the same command (or a fixed one) can run again."""
    out = tmp_path / "R"
    args = ["train", "--preset", "tiny", "--data", data, "--kimg", "0.064", "--out", out,
            *small_args(lr=1e30, ckpt_kimg=1)]
    for _ in range(2):
        rc, _, err = main(args, capsys)
        assert rc == 1 and "training diverged" in err and "not empty" not in err, err
        _one_line(err)
        assert not out.exists()


# ===================================================================== one writer per run folder
def test_second_writer_refused_then_stale_lock_of_a_killed_run_is_taken(data, tmp_path, capsys):
    run = tmp_path / "my run"  # a space: the printed resume command must survive the shell
    first = popen("train", "--preset", "tiny", "--data", data, "--kimg", "1000", "--out", run,
                  *small_args(ckpt_kimg=1000, snap_kimg=1000, image_kimg=1000))
    try:
        _wait_for_ticks(first, run, 1)
        # the first run keeps writing meanwhile: its own transient temporaries and a redrawn
        # curves.png may come and go; what the refused commands would add must not appear
        def settled():
            return {p.name for p in run.iterdir() if not is_temporary(p.name)} - {"curves.png"}

        before = settled()
        log = (run / "log.txt").read_text()
        for args in (["--preset", "tiny", "--data", data, "--kimg", "0.016", "--out", run, *small_args()],
                     ["--resume", run, "--kimg", "0.032"], ["--resume", run, "--dry-run"]):
            rc, _, err = main(["train", *args], capsys)
            assert rc == 1 and "is being written by another vitgan train" in err, err
            assert f"pid {first.pid} on " in err
            _one_line(err)
        assert settled() == before  # touched nothing ...
        assert (run / "log.txt").read_text().startswith(log)
        n = len(stats(run))
        _wait_for_ticks(first, run, n + 1)  # ... and the first run keeps writing
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=60)
        assert first.returncode == 130, err
    finally:
        if first.poll() is None:
            first.kill()
    hint = out[out.index("continue with `") + 15:].split("`")[0]
    assert shlex.split(hint) == ["vitgan", "train", "--resume", str(run)]
    rc, _, err = main(["train", "--preset", "tiny", "--data", data, "--out", run], capsys)
    assert rc == 2 and f"--resume {shlex.quote(str(run))}" in err

    # a run killed with SIGKILL leaves its lock file; the OS dropped the lock with the process
    killed = popen("train", "--resume", run)
    _wait_for_ticks(killed, run, len(stats(run)) + 1)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    assert (run / LOCK_NAME).is_file()
    m = ckpt.latest_valid(run, log=lambda *_: None)
    assert main(["train", "--resume", run, "--kimg", (m["nimg"] + 16) / 1000]) == 0


# ===================================================================== snapshots and grids
def test_resume_across_a_fraction_of_a_kimg_keeps_both_snapshots(resumed, tmp_path):
    snaps = sorted(p.name for p in resumed.glob("network-snapshot-*"))
    assert snaps == ["network-snapshot-000000016.safetensors", "network-snapshot-000000032.safetensors"]
    a, b = (resumed / s for s in snaps)
    assert a.read_bytes() != b.read_bytes()
    # own files, not hard links to the rolling checkpoints' weights
    assert a.stat().st_nlink == 1 and b.stat().st_nlink == 1
    for s in (a, b):
        assert main(["sample", s, "--n", "1", "--out", tmp_path / f"{s.stem}.png"]) == 0


def test_grids_of_a_short_run_are_all_kept(resumed):
    grids = sorted(p.name for p in resumed.glob("fakes*.png"))
    assert grids == ["fakes000000000.png", "fakes000000016.png", "fakes000000032.png"]


def test_an_existing_snapshot_is_never_replaced(tmp_path):
    from vitgan.config import ModelConfig
    from vitgan.models import build_discriminator, build_generator

    cfg = ModelConfig(**SMALL_MODEL)
    run = tmp_path / "R"
    for seed in (0, 1):  # the same image count twice (a resumed run re-trained past it)
        torch.manual_seed(seed)
        mods = {"G": build_generator(cfg), "D": build_discriminator(cfg), "G_ema": build_generator(cfg)}
        ckpt.save_checkpoint(run, modules=mods, model_cfg=cfg, state={}, nimg=16, step=2, snapshot=True)
        if seed == 0:
            first = (run / "network-snapshot-000000016.safetensors").read_bytes()
    assert (run / "network-snapshot-000000016.safetensors").read_bytes() == first
    assert (run / "network-snapshot-000000016-2.safetensors").is_file()


def test_old_whole_kimg_snapshot_names_still_load_and_sort_by_images(resumed, tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    old = run / "network-snapshot-000001.safetensors"  # 1 kimg = 1000 images, before today's names
    old.write_bytes((resumed / "network-snapshot-000000016.safetensors").read_bytes())
    new = run / "network-snapshot-000000032.safetensors"
    new.write_bytes((resumed / "network-snapshot-000000032.safetensors").read_bytes())
    assert [p.name for p in ckpt.snapshots.list_snapshots(run)] == [new.name, old.name]
    assert ckpt.resolve_weights_path(run) == old


def test_bit_flipped_snapshot_is_refused_by_sample(resumed, tmp_path, capsys):
    snap = tmp_path / "network-snapshot-000000032.safetensors"
    data = bytearray((resumed / snap.name).read_bytes())
    data[len(data) - 200] ^= 0x01  # one bit in the tensor bytes: still a valid safetensors file
    snap.write_bytes(bytes(data))
    rc, _, err = main(["sample", snap, "--n", "1", "--out", tmp_path / "x.png"], capsys)
    assert rc == 1 and f"{snap} is damaged" in err and "sha256" in err
    _one_line(err)
    assert not (tmp_path / "x.png").exists()
    rc, _, err = main(["export", snap, "--out", tmp_path / "exported"], capsys)
    assert rc == 1 and f"{snap} is damaged" in err and not (tmp_path / "exported").exists()
    # the run's own snapshot is untouched (it was never a hard link of anything)
    assert main(["sample", resumed / snap.name, "--n", "1", "--out", tmp_path / "y.png"]) == 0


# ===================================================================== damaged and half checkpoints
def test_damaged_checkpoint_set_aside_whole_and_half_checkpoint_removed(data, tmp_path):
    run = tmp_path / "R"
    assert main(["train", "--preset", "tiny", "--data", data, "--kimg", "0.032", "--out", run,
                 *small_args()]) == 0
    ck = run / "checkpoints"
    state = ck / "ckpt-000000000032.pt"
    raw = bytearray(state.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # the state is damaged; its weights file is still good
    state.write_bytes(bytes(raw))
    weights = (ck / "ckpt-000000000032.safetensors").read_bytes()
    orphan = ck / "ckpt-000000000040.safetensors"  # a save that never wrote its manifest
    orphan.write_bytes(weights)
    assert main(["train", "--resume", run, "--kimg", "0.064"]) == 0
    names = {p.name for p in ck.iterdir()}
    assert {"ckpt-000000000032.json.damaged", "ckpt-000000000032.pt.damaged",
            "ckpt-000000000032.safetensors.damaged"} <= names
    assert (ck / "ckpt-000000000032.safetensors.damaged").read_bytes() == weights  # kept, intact
    assert orphan.name not in names
    log = (run / "log.txt").read_text()
    assert "set aside the damaged checkpoint ckpt-000000000032" in log
    assert f"removed {orphan.name}, part of a checkpoint save that never completed" in log
    assert ckpt.latest_valid(run)["nimg"] == 64


def test_disk_full_mid_checkpoint_leaves_no_half_checkpoint(data, tmp_path, capsys, monkeypatch):
    real, calls = ckpt.atomic_write_bytes, []

    def full(path, payload):
        if str(path).endswith(".pt"):
            calls.append(path)
            if len(calls) == 2:  # the second checkpoint's state, after its weights were written
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, payload)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", full)
    run = tmp_path / "R"
    rc, _, err = main(["train", "--preset", "tiny", "--data", data, "--kimg", "0.064", "--out", run,
                       *small_args()], capsys)
    assert rc == 1 and "the disk is full" in err
    _one_line(err)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "ckpt-000000000016.json", "ckpt-000000000016.pt", "ckpt-000000000016.safetensors"]


# ===================================================================== messages
def test_crafted_pickle_message_does_not_suggest_running_it(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    evil = tmp_path / "evil.pt"
    torch.save({"model_config": {}, "G_ema": {"w": torch.zeros(1)}, "x": Payload()}, evil)
    rc, _, err = main(["sample", evil, "--n", "1", "--out", tmp_path / "x.png"], capsys)
    assert rc == 1 and "refusing to load" in err and "could run code" in err
    # PyTorch's hint ("This file can still be loaded ... weights_only=False"), cut mid-sentence
    # and with terminal escapes, is not passed on; our own line names what the pickle calls
    assert "weights_only" not in err and "can still be loaded" not in err and "\x1b" not in err
    assert "(it names " in err and "open)" in err
    _one_line(err)
    assert not (tmp_path / "pwned").exists()


def test_state_dict_mismatch_names_the_keys(resumed, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    src = resumed / "network-snapshot-000000032.safetensors"
    tensors = load_file(str(src))
    meta = ckpt.load_weights(src)[1]
    meta.pop("sha256")  # an edited file (a checksum would refuse it before the keys are looked at)
    gone = sorted(k for k in tensors if k.startswith("G_ema."))[0]
    del tensors[gone]
    tensors["G_ema.extra.weight"] = torch.zeros(2)
    reshaped = sorted(k for k in tensors if k.startswith("G_ema.") and tensors[k].dim() == 2)[0]
    tensors[reshaped] = torch.zeros(3, 5)
    bad = tmp_path / "edited.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    rc, _, err = main(["sample", bad, "--n", "1", "--out", tmp_path / "x.png"], capsys)
    assert rc == 1, err
    _one_line(err)
    for text in ("1 missing", gone.removeprefix("G_ema."), "1 unexpected (extra.weight)",
                 "1 of another shape", reshaped.removeprefix("G_ema.") + ": (3, 5) in the file",
                 "for another model config"):
        assert text in err, (text, err)
    assert json.loads(meta["model_config"])["g_dim"] == SMALL_MODEL["g_dim"]
