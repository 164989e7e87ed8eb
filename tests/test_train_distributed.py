"""Data-parallel training with torchrun (issue 5): 2 CPU processes, gloo."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch.distributed as dist
from test_train_helpers import (REPO, assert_same_tensors, checkpoint_tensors, env, make_images,
                                small_args)

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

# accumulation (2 rounds of 2 per process), lazy R1 every 2 steps, LeCam: every sync path
EXTRA = dict(batch_gpu=2, r1_gamma=0.1, r1_interval=2, fused_attention="false", lecam_weight=0.1)


def torchrun(*args, timeout=240):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *map(str, args)]
    e = env()
    e.pop("LOCAL_RANK", None)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e, cwd=REPO)


SCRIPT = textwrap.dedent("""
    import sys, torch, torch.distributed as dist
    from vitgan.train import loop
    from vitgan.train.options import resolve_options
    opts = resolve_options("tiny", data=sys.argv[1], overrides=dict(a.split("=", 1) for a in sys.argv[3:]))
    opts["run_dir"] = sys.argv[2]
    cfg, mcfg = loop.TrainConfig.from_dict(opts["train"]), loop.ModelConfig.from_dict(opts["model"])
    d = loop.init_distributed("cpu")
    t = loop.Trainer(opts, d, loop.RunFiles(sys.argv[2], rank=d.rank), loop.open_training_data(cfg, mcfg, log=lambda *_: None))
    for _ in range(5):
        t.train_step()
    flat = lambda ts: torch.cat([x.detach().float().flatten() for x in ts])
    mine = {"G": flat(t.G.parameters()), "D": flat(t.D.parameters()), "G_ema": flat(t.ema.module.parameters()),
            "D_buffers": flat(t.D.buffers()), "z_gen": t.z_gen.get_state(), "data": t.data.indices(0)}
    every = [None] * d.world_size
    dist.all_gather_object(every, mine)
    if d.rank == 0:
        a, b = every
        for k in ("G", "D", "G_ema", "D_buffers"):
            assert torch.equal(a[k], b[k]), k
        assert not torch.equal(a["z_gen"], b["z_gen"]), "latent streams must differ per rank"
        assert not set(a["data"].tolist()) & set(b["data"].tolist()), "data shards must be disjoint"
        print("RANKS-IDENTICAL", a["G"].numel() + a["D"].numel())
    dist.destroy_process_group()
""")


def test_parameters_and_ema_stay_identical_on_every_rank(tmp_path):
    data = make_images(tmp_path / "imgs")
    script = tmp_path / "check.py"
    script.write_text(SCRIPT)
    sets = [a for a in small_args(**EXTRA) if a != "--set"]
    proc = torchrun(script, data, tmp_path / "R", *sets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RANKS-IDENTICAL" in proc.stdout


def test_torchrun_end_to_end_one_run_folder_and_exact_resume(tmp_path):
    data = make_images(tmp_path / "imgs")
    straight, run = tmp_path / "A", tmp_path / "B"
    common = ["-m", "vitgan", "train", "--preset", "tiny", "--data", data, *small_args(**EXTRA)]
    proc = torchrun(*common, "--kimg", "0.048", "--out", straight)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = torchrun(*common, "--kimg", "0.032", "--out", run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    opts = json.loads((run / "training_options.json").read_text())
    assert opts["world_size"] == 2 and opts["accumulation_rounds"] == 2
    assert len([p for p in run.iterdir() if p.name.startswith("events.out")]) == 1  # rank 0 only
    assert (run / "log.txt").read_text().count("vitgan train:") == 1
    proc = torchrun("-m", "vitgan", "train", "--resume", run, "--kimg", "0.048")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in (run / "log.txt").read_text()
    assert_same_tensors(checkpoint_tensors(straight, 48), checkpoint_tensors(run, 48))
