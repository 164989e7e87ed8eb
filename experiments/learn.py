"""The learning benchmark: does it learn, and which configuration learns best on this machine?

Every row trains the same preset for the same number of kimg on the CIFAR-10 archive with
``vitgan train`` and measures FID and KID in training (EMA generator, ``--fid-n`` samples from
fixed latents against the same number of real training images of the archive; real statistics
cached, so every row is compared with the same reals) at the row's points. One table:

    python experiments/learn.py --out experiments/results/learn                # every row
    python experiments/learn.py --rows default,plain-bcr10 --kimg 20           # a quick look

Each row's run folder (large files) stays under --runs; its summary (metrics, D's diagnostics,
the final grid, the curves) is copied to --out/<row>/, and --out/results.json and
--out/table.md are rewritten after every row, so a stopped benchmark keeps what it measured.
Results are at equal kimg, not equal wall time; the wall time and the machine's load (uptime)
before and after each row are recorded too. FID here is NOT comparable with published
CIFAR-10 numbers (JPEG-75 archive, N = 1000; docs/metrics.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-yk-jpeg.tar.gz"

# name -> (what it is, --set overrides on top of the preset's defaults, metric points, kimg share)
# points: FID/KID at kimg/points, 2 kimg/points, ... (4 for the rows the issue compares; fewer for
# the ablations, to fit the CPU budget: an N = 1000 FID costs ~100 s of Inception on 2 cores).
# kimg share: the ablations train for half of --kimg, their one FID comparable with the full
# rows' FID at that kimg (the table's columns are kimg, not rows' ends).
ROWS: dict[str, tuple[str, list[str], int, float]] = {
    "default": ("defaults: equalised lr, L2 qk gain, bCR 0.1, lr 0.002, L2 + ISN, overlap, INR", [], 4, 1),
    "bcr1": ("bCR 1 (the tiny default until 2026-12-02 evening; the larger presets' default)",
             ["bcr_real=1", "bcr_fake=1"], 4, 1),
    "plain-bcr10": ("the previous defaults: plain std-0.02 layers, bCR 10, lr 0.0002",
                    ["equalized_lr=false", "bcr_real=10", "bcr_fake=10", "lr=0.0002"], 4, 1),
    "bcr10": ("bCR 10 (the paper's weight)", ["bcr_real=10", "bcr_fake=10"], 2, 1),
    "plain": ("plain std-0.02 layers (bCR 1, at their lr 0.0002)",
              ["equalized_lr=false", "lr=0.0002", "bcr_real=1", "bcr_fake=1"], 1, 1),
    "stylegan2": ("StyleGAN2 G + D (preset tiny-stylegan2)", ["preset=tiny-stylegan2"], 1, 0.5),
    "hybrid": ("ViT-G + StyleGAN2-D (preset tiny-hybrid)", ["preset=tiny-hybrid"], 1, 0.5),
    "bcr0": ("no bCR", ["bcr_real=0", "bcr_fake=0"], 1, 0.5),
    "bcr0.1": ("bCR 0.1 (50 kimg; then made the tiny default)", ["bcr_real=0.1", "bcr_fake=0.1"], 1, 0.5),
    # the ablations below were run on top of bCR 1 (the tiny default when they ran): kept so
    "dot-sn": ("the 'vanilla ViT' D: dot-product attention + SN (bCR 1)",
               ["d_attention=dot", "d_norm=sn", "bcr_real=1", "bcr_fake=1"], 1, 0.5),
    "sn": ("SN instead of ISN (bCR 1)", ["d_norm=sn", "bcr_real=1", "bcr_fake=1"], 1, 0.5),
    "no-overlap": ("non-overlapping D patches (bCR 1)", ["d_overlap=false", "bcr_real=1", "bcr_fake=1"], 1, 0.5),
    "linear-head": ("linear patch head instead of the INR (bCR 1)",
                    ["g_head=linear", "bcr_real=1", "bcr_fake=1"], 1, 0.5),
    "qk1": ("equalised without the L2 qk gain (c = 1: D's class token attends only to itself; bCR 1)",
            ["d_qk_gain=1.0", "bcr_real=1", "bcr_fake=1"], 1, 0.5),
    "lr0.0002": ("lr 0.0002", ["lr=0.0002"], 1, 0.5),
    "seed1": ("defaults, seed 1 (what a second seed moves)", ["seed=1"], 2, 0.5),
    "seed2": ("defaults, seed 2", ["seed=2"], 2, 0.5),
    "bcr1-seed1": ("bCR 1, seed 1 (paired with seed1)", ["bcr_real=1", "bcr_fake=1", "seed=1"], 2, 0.5),
    "bcr0-seed1": ("no bCR, seed 1 (paired with seed1)", ["bcr_real=0", "bcr_fake=0", "seed=1"], 1, 0.5),
    "stylegan2-seed1": ("StyleGAN2 G + D (preset tiny-stylegan2), seed 1", ["preset=tiny-stylegan2", "seed=1"], 1, 0.5),
    # the small preset (issue 21): `--preset small --kimg 200 --points 0.125,0.25,0.5,1`, results in
    # experiments/results/learn-small; 4 metric points = every 50 kimg at 200
    "small": ("small, lr 0.002 (the preset's lr until 2026-12-05; width 128, paper structure; bCR 0.1)",
              ["preset=small", "d_qk_gain=none", "lr=0.002"], 4, 1),
    "small-bcr1": ("small, bCR 1 (the paper-size presets' weight)", ["preset=small", "d_qk_gain=none", "bcr_real=1",
                                                                     "bcr_fake=1"], 2, 0.5),
    "small-seed1": ("small defaults until 2026-12-07 (D's attention gain (2 sqrt(d_h))^-1/2), seed 1",
                    ["preset=small", "d_qk_gain=none", "seed=1"], 4, 1),
    # the rows on preset=small-stylegan2 pin g_lr / d_lr to none (= lr): the lr they ran with, before the
    # preset took the two-timescale pair (2026-12-08)
    "small-stylegan2": ("StyleGAN2 G + D of small's cost (preset small-stylegan2 until 2026-12-08: lr 0.001)",
                        ["preset=small-stylegan2", "g_lr=none", "d_lr=none"], 4, 1),
    "small-hybrid": ("ViT-G small + StyleGAN2-D (preset small-hybrid: lr 0.001; the INR head, the preset's "
                     "until 2026-12-07)", ["preset=small-hybrid", "g_head=inr"], 4, 1),
    "small-lr0.001": ("small, lr 0.001 for G and D (the preset's default since 2026-12-05; D's attention "
                      "gain (2 sqrt(d_h))^-1/2 until 2026-12-07)",
                      ["preset=small", "d_qk_gain=none", "lr=0.001"], 4, 1),
    # DiffAugment at p 0.2 instead of 0.8 (200 kimg is 4 epochs of CIFAR-10: nothing for D to
    # overfit, so augmentation only weakens D; diagnostics-conv: p 0.2 held the conv D's margin)
    "small-p0.2": ("small (lr 0.001), DiffAugment p 0.2", ["preset=small", "d_qk_gain=none", "augment_p=0.2"], 4, 1),
    "small-stylegan2-p0.2": ("small-stylegan2 (lr 0.001), DiffAugment p 0.2",
                             ["preset=small-stylegan2", "g_lr=none", "d_lr=none", "augment_p=0.2"], 4, 1),
    # the paper-size confirmation (issue 21): `--preset cifar10 --rows paper-b32 --kimg 96` (3000
    # steps of 32), results in experiments/results/learn-paper; lr 0.001 as small at batch 32
    "paper-b32": ("cifar10 preset (the paper's size) at batch 32, bf16, lr 0.001 (small's batch-32 lr)",
                  ["preset=cifar10", "batch=32", "precision=bf16", "lr=0.001"], 4, 1),
    # the same with D's L2-attention gain 0.5 (small's default since 2026-12-07: D attends and keeps
    # its margin at width 128; does it lift the paper size out of its one-scene collapse?)
    "paper-b32-qk0.5": ("paper-b32 with D's L2-attention gain 0.5 (small's default)",
                        ["preset=cifar10", "batch=32", "precision=bf16", "lr=0.001", "d_qk_gain=0.5"], 4, 1),
    # the small preset's probes (issue 21, one-layout G): 50 kimg, metric points at 25 and 50
    "small-sln1": ("small, SLN gamma/beta init spread 1.0 instead of 0.5", ["preset=small", "d_qk_gain=none", "sln_init_std=1.0"], 2, 1),
    "small-mbstd4": ("small, ViT-D minibatch stddev (group 4)", ["preset=small", "d_qk_gain=none", "d_mbstd_group=4"], 2, 1),
    # the conv D's drift to chance (issue 21), at lr 0.0025 where it drifts within ~25 kimg
    # (diagnostics-conv: sg2-lr0.0025): 28 kimg each, `--kimg 28 --points 1`
    "sg2-fast-dwide": ("small-stylegan2 at lr 0.0025, D channels x2",
                       ["preset=small-stylegan2", "g_lr=none", "d_lr=none", "lr=0.0025", "sg2_d_channel_mult=2"], 1, 1),
    "sg2-fast-dlr": ("small-stylegan2, G lr 0.00125, D lr 0.0025", ["preset=small-stylegan2", "g_lr=0.00125",
                                                                     "d_lr=0.0025"], 1, 1),
    "sg2-fast-p0": ("small-stylegan2 at lr 0.0025, no DiffAugment",
                    ["preset=small-stylegan2", "g_lr=none", "d_lr=none", "lr=0.0025", "augment_p=0"], 1, 1),
    "sg2-fast-mbstd32": ("small-stylegan2 at lr 0.0025, minibatch-stddev group 32 (ADA's cifar: 32)",
                         ["preset=small-stylegan2", "g_lr=none", "d_lr=none", "lr=0.0025", "sg2_mbstd_group=32"], 1, 1),
    "sg2-fast": ("small-stylegan2 at lr 0.0025 (the drift's reference, this CPU)",
                 ["preset=small-stylegan2", "g_lr=none", "d_lr=none", "lr=0.0025"], 1, 1),
    # the conv D held by a two-timescale lr (issue 21; conv-drift probes): 200 kimg, 4 points
    "small-stylegan2-ttur": ("small-stylegan2, G lr 0.00125, D lr 0.0025 (the conv-drift probes' best)",
                             ["preset=small-stylegan2", "g_lr=0.00125", "d_lr=0.0025"], 4, 1),
    "small-hybrid-ttur": ("small-hybrid, G lr 0.00125, D lr 0.0025",
                          ["preset=small-hybrid", "g_head=inr", "g_lr=0.00125", "d_lr=0.0025"], 4, 1),
    # the ViT with the conv baseline's lever (issue 21): D at twice G's lr, G at the preset's 0.001
    "small-ttur": ("small, G lr 0.001, D lr 0.002 (the two-timescale pair that held the conv D)",
                   ["preset=small", "d_qk_gain=none", "g_lr=0.001", "d_lr=0.002"], 4, 1),
    # probes against the wider ViT's collapse (issue 21): 50 kimg, `--kimg 50 --points 0.5,1`
    "small-rpgan": ("small, relativistic pairing loss (RpGAN, R3GAN's; without its R1 + R2, which "
                    "the paper says cripple a ViT D); D adv = its pair loss x 2", ["preset=small", "d_qk_gain=none",
                                                                 "gan_loss=relativistic"], 2, 1),
    "small-map2": ("small, 2-layer mapping MLP (StyleGAN2-ADA cifar's) instead of 8",
                   ["preset=small", "d_qk_gain=none", "mapping_layers=2"], 2, 1),
    "small-hybrid-gslow": ("small-hybrid, G lr 0.0005, D lr 0.0025 (the ViT-G outpaces the conv D: "
                           "frozen-G probe)", ["preset=small-hybrid", "g_head=inr", "g_lr=0.0005",
                                                                   "d_lr=0.0025"], 2, 1),
    # two structural levers at 200 kimg (issue 21; 2026-12-07 night): D's attention gain (at the
    # default (2 sqrt(d_h))^-1/2 D's attention is nearly uniform, mean entropy 4.14 of 4.17) and the batch the
    # authors' PyTorch port trains at (lr 1e-3 at batch 64; equal kimg = half the steps)
    "small-qk0.5": ("small, D's L2-attention gain 0.5 (D attends: its lowest head entropy 1.7 over the "
                    "last tenth, against 3.4-3.8 at the default gain)",
                    ["preset=small", "d_qk_gain=0.5"], 4, 1),
    "small-b64": ("small at batch 64 (the authors' PyTorch port: lr 0.001 at batch 64)",
                  ["preset=small", "d_qk_gain=none", "batch=64"], 4, 1),
    # the authors' PyTorch port's generator block (mlpc-ucsd/ViTGAN: h = SLN(h, w); h = MSA(h) + h):
    # w modulates the residual stream in every block (issue 21, the one-layout ViT-G)
    "small-gofficial": ("small, G block of the authors' PyTorch port (SLN's output is the residual stream)",
                        ["preset=small", "d_qk_gain=none", "g_block=official"], 4, 1),
    # the hybrid with the authors' port's default patch head (its INR head made a 4x4 patch grid
    # against the conv D even while that D separated: small-hybrid-gslow)
    "small-hybrid-conv": ("small-hybrid with g_head=conv (the authors' port's head: StyleGAN2 layers up from "
                          "the token grid, 64 / 32 channels at 16 / 32)", ["preset=small-hybrid", "g_head=conv"], 2, 1),
    # bCR between two independent DiffAugment draws (the official code's pairing, penalty.py)
    "small-bcr-da": ("small, bCR pairing two independent DiffAugment draws (the official code's) instead of "
                     "D(A(x)) vs D(T(A(x)))", ["preset=small", "d_qk_gain=none", "bcr_pairing=diffaugment"], 2, 1),
    # the same conv head on the all-ViT model (ViT-G + ViT-D): does it also undo the one-layout G?
    # (this row is D's gain 0.25; the preset small-convhead is the row small-convhead-qk0.5 below)
    "small-convhead": ("small with g_head=conv (64 / 32 channels at 16 / 32, as small-hybrid-conv) and the ViT-D",
                       ["preset=small", "d_qk_gain=none", "g_head=conv", "sg2_channel_base=1024",
                        "sg2_channel_max=128"], 2, 1),
    # the conv head's early lead with the D that keeps its margin (issue 21): small-convhead + d_qk_gain 0.5
    "small-convhead-qk0.5": ("small-convhead with D's L2-attention gain 0.5; stopped at 54 kimg by hand, "
                             "resumed alone at 2 threads to 100, then 150, then at 1 thread beside paper-b32-qk0.5 to 200 "
                             "(`vitgan train --resume RUN --kimg 100 / 150 / 200`)",
                             ["preset=small", "g_head=conv", "sg2_channel_base=1024", "sg2_channel_max=128",
                              "d_qk_gain=0.5"], 4, 1),
    # second seeds (issue 21): the candidate default and the hybrid that learns
    "small-qk0.5-seed1": ("small-qk0.5, seed 1", ["preset=small", "d_qk_gain=0.5", "seed=1"], 4, 1),
    "small-hybrid-conv-seed1": ("small-hybrid-conv, seed 1", ["preset=small-hybrid", "g_head=conv", "seed=1"],
                                4, 1),
    "small-convhead-qk0.5-seed1": ("small-convhead-qk0.5, seed 1",
                                   ["preset=small", "g_head=conv", "sg2_channel_base=1024", "sg2_channel_max=128",
                                    "d_qk_gain=0.5", "seed=1"], 4, 1),
    # the one-layout G (issue 21; layout share 0.11-0.17 at 200 kimg at small, reals 0.02-0.03): the paper's
    # own latent ablation, w as input tokens (Linear(w) + E_pos, LayerNorm with affine instead of SLN),
    # gives G a per-token path from z to the layout; a probe, `--kimg 50 --points 0.5,1`
    "small-tokens": ("small (D gain 0.5), g_latent=tokens: w as input tokens + LayerNorm instead of SLN "
                     "(the paper's latent ablation)", ["preset=small", "g_latent=tokens"], 2, 1),
    # the conv head at the paper's size (issue 21: paper-b32-qk0.5 learns but with recall 0 and one layout;
    # the head that lifted small): small-convhead's head (64 / 32 channels at 16 / 32) on the cifar10 ViTs
    "paper-b32-convhead": ("paper-b32-qk0.5 with g_head=conv (small-convhead's head: 64 / 32 channels at 16 / 32)",
                           ["preset=cifar10", "batch=32", "precision=bf16", "lr=0.001", "d_qk_gain=0.5",
                            "g_head=conv", "conv_head_channel_base=1024", "conv_head_channel_max=128"], 4, 1),
    # the conv baseline's second seed (issue 21: two seeds for the main rows)
    "small-stylegan2-ttur-seed1": ("small-stylegan2-ttur, seed 1",
                                   ["preset=small-stylegan2", "g_lr=0.00125", "d_lr=0.0025", "seed=1"], 4, 1),
    "cond": ("class-conditional (cond=true: class embedding in G's mapping, projection D; fakes in the "
             "data's class proportions, FID against all reals)", ["cond=true"], 1, 0.5),
}


def uptime() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


def run_row(name: str, args, sets: list[str], points: int, share: float) -> dict:
    run = args.runs / name
    preset = next((kv.split("=", 1)[1] for kv in sets if kv.startswith("preset=")), args.preset)
    sets = [kv for kv in sets if not kv.startswith("preset=")]
    if args.collect:  # a row trained (or resumed, or stopped) by hand: summarise its run folder
        stats = read_jsonl(run / "stats.jsonl")
        if not stats:
            raise SystemExit(f"{run}: no stats.jsonl to collect; train the row first")
        return summarise(name, args, run, preset, sets, points, exit_code=None,
                         wall=sum(r.get("sec_per_tick", 0.0) for r in stats), load0="?")
    if run.exists():
        shutil.rmtree(run)
    kimg = args.kimg * share
    every = kimg / points
    cmd = [sys.executable, "-m", "vitgan", "train", "--preset", preset, "--data", str(args.data),
           "--out", str(run), "--kimg", str(kimg),
           "--set", f"tick_kimg={args.tick_kimg}", "--set", f"metrics_kimg={every}",
           "--set", f"metrics={args.metrics}", "--set", f"metrics_n={args.fid_n}",
           "--set", f"image_kimg={every}", "--set", f"snap_kimg={kimg}",
           "--set", f"ckpt_kimg={every}"] + [x for kv in sets for x in ("--set", kv)]
    print("$", " ".join(cmd), flush=True)
    load0, t0 = uptime(), time.time()
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": str(args.threads)}
    with open(args.runs / f"{name}.log", "w") as log:  # (rows may run side by side: one log each)
        proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    return summarise(name, args, run, preset, sets, points, exit_code=proc.returncode,
                     wall=time.time() - t0, load0=load0)


def summarise(name: str, args, run: Path, preset: str, sets: list[str], points: int, *,
              exit_code, wall: float, load0: str) -> dict:
    """Copy a row's summary files to --out/<row>/ and return its results.json entry."""
    stats = read_jsonl(run / "stats.jsonl")
    fid = {r["kimg"]: r["fid"] for r in read_jsonl(run / "metric-fid.jsonl")}
    kid = {r["kimg"]: r["kid_mean"] for r in read_jsonl(run / "metric-kid.jsonl")}
    recall = {r["kimg"]: r["recall"] for r in read_jsonl(run / "metric-pr.jsonl")}
    precision = {r["kimg"]: r["precision"] for r in read_jsonl(run / "metric-pr.jsonl")}
    div = {r["kimg"]: r["div_ratio"] for r in read_jsonl(run / "metric-div.jsonl")}
    out = args.out / name
    out.mkdir(parents=True, exist_ok=True)
    for f in ("curves.png", "training_options.json", "stats.jsonl", "metric-fid.jsonl", "metric-kid.jsonl",
              "metric-pr.jsonl", "metric-div.jsonl", "log.txt"):
        if (run / f).exists():
            shutil.copy2(run / f, out / f)
    grids = sorted(run.glob("fakes*.png"))
    if grids:
        shutil.copy2(grids[-1], out / "fakes-final.png")
    if points > 1:  # the grid at each metric point (fakes<nimg>.png; nimg 0 is the start)
        for g in grids[1:-1]:
            shutil.copy2(g, out / g.name)
    resumes = read_json(run / "training_options.json").get("resumes", [])
    return {
        "row": name, "what": ROWS[name][0], "preset": preset, "set": sets, "exit": exit_code,
        "commit": args.commit, "date": time.strftime("%Y-%m-%d"),
        "kimg": stats[-1]["kimg"] if stats else 0, "wall_s": round(wall, 1),
        "load_before": load0, "load_after": uptime(), "threads": args.threads, "jobs": args.jobs,
        "collected": bool(args.collect), "resumed_at_kimg": [r.get("at_kimg") for r in resumes],
        "fid": fid, "kid": kid, "precision": precision, "recall": recall, "div_ratio": div,
        **health(stats),
    }


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def health(stats: list[dict]) -> dict:
    """D's losses at 20 kimg, the largest per-step D loss, and the training-health means over the
    last tenth and the last quarter of a run's stats."""
    for r in stats:  # D's adversarial loss alone (loss/D adds the bCR / LeCam terms): 2 ln 2 = chance
        # (relativistic rows: twice the pair loss, whose chance is ln 2, on the same scale)
        r["loss/D_adv"] = 2 * r["loss/D_pair"] if "loss/D_pair" in r else r["loss/D_real"] + r["loss/D_fake"]
    keys = ("loss/D", "loss/D_adv", "loss/G", "diag/r_t", "diag/logit_gap", "diag/logit_std", "diag/grad_real",
            "diag/attn_entropy_min", "diag/layout_share")

    def means(last: list[dict]) -> dict:
        return {k: round(sum(r[k] for r in last if k in r) / sum(k in r for r in last), 4)
                for k in keys if any(k in r for r in last)}

    at20 = min(stats, key=lambda r: abs(r["kimg"] - 20)) if stats else {}
    return {"D_loss_at_20kimg": at20.get("loss/D"), "D_adv_at_20kimg": at20.get("loss/D_adv"),
            "D_loss_max_per_step": max((r["loss/D_max"] for r in stats if "loss/D_max" in r), default=None),
            "last_tenth": means(stats[-max(1, len(stats) // 10):]),
            "last_quarter": means(stats[-max(1, len(stats) // 4):])}


def table(results: list[dict], points: list[float]) -> str:
    head = ("| row | what | " + " | ".join(f"FID@{p:g}" for p in points) + " | KID@end | recall@end | "
            "diversity@end | D loss@20 | "
            "D loss (last 10%) | D adv@20 | D adv (last 10%) | logit gap | r_t | wall |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        # a metric runs at the first tick end past its point (e.g. 25.6 kimg for 25 at 1-kimg ticks)
        got = {float(k): v for k, v in r["fid"].items()}
        fids = {p: got[min(got, key=lambda k: abs(k - p))] for p in points
                if got and min(abs(k - p) for k in got) < 2}
        end = lambda d: d[max(d, key=float)] if d else None  # noqa: E731  (the last point's value)
        kid_end, recall_end, div_end = end(r["kid"]), end(r.get("recall")), end(r.get("div_ratio"))
        lt = r["last_tenth"]
        cell = lambda v, f="{:.1f}": "-" if v is None else f.format(v)  # noqa: E731
        lines.append(f"| {r['row']} | {r['what']} | " + " | ".join(cell(fids.get(p)) for p in points)
                     + f" | {cell(kid_end, '{:.3f}')} | {cell(recall_end, '{:.3f}')} | {cell(div_end, '{:.2f}')} | "
                     f"{cell(r['D_loss_at_20kimg'], '{:.3f}')} | "
                     f"{cell(lt.get('loss/D'), '{:.3f}')} | {cell(r.get('D_adv_at_20kimg'), '{:.3f}')} | "
                     f"{cell(lt.get('loss/D_adv'), '{:.3f}')} | {cell(lt.get('diag/logit_gap'), '{:.2f}')} | "
                     f"{cell(lt.get('diag/r_t'), '{:.2f}')} | {r['wall_s'] / 60:.1f} min |")
    return "\n".join(lines) + "\n"


def header(meta: dict) -> str:
    full = [n for n, r in ROWS.items() if r[3] == 1]
    return (f"Learning benchmark: `{meta['command']}` (last command; {meta['preset']} preset unless the "
            f"row names another; {meta['kimg']:g} kimg for rows {', '.join(full)} and "
            f"{meta['kimg'] / 2:g} for the others; FID/KID at N = {meta['fid_n']} vs the archive's train "
            f"split; {meta['machine']}; each row's date and commit in results.json)\n\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default=",".join(ROWS), help="comma list of " + ", ".join(ROWS))
    p.add_argument("--preset", default="tiny")
    p.add_argument("--kimg", type=float, default=100)
    p.add_argument("--tick-kimg", type=float, default=1)
    p.add_argument("--fid-n", type=int, default=1000)
    p.add_argument("--metrics", default="fid,kid", help="metrics at each point (e.g. fid,kid,pr,div)")
    p.add_argument("--points", default="0.25,0.5,0.75,1",
                   help="the table's FID columns, as fractions of --kimg")
    p.add_argument("--data", type=Path, default=ARCHIVE)
    p.add_argument("--out", type=Path, default=REPO / "experiments" / "results" / "learn")
    p.add_argument("--runs", type=Path, default=Path("/tmp/vitgan-learn"))
    p.add_argument("--table-only", action="store_true", help="only rewrite table.md from results.json")
    p.add_argument("--collect", action="store_true",
                   help="train nothing: summarise the rows' existing run folders under --runs (a row "
                        "resumed or stopped by hand; wall = the sum of its ticks' seconds)")
    p.add_argument("--jobs", type=int, default=1,
                   help="rows trained side by side, each with cpu_count/jobs threads")
    args = p.parse_args()
    names = [n for n in args.rows.split(",") if n]
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        p.error(f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    res_file = args.out / "results.json"
    results = [r for r in (json.loads(res_file.read_text())["rows"] if res_file.exists() else [])
               if r["row"] not in names]  # re-running a row replaces it
    points = [args.kimg * float(f) for f in args.points.split(",")]  # the table's columns
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()  # the code the rows run
    if args.table_only:  # rewrite table.md from results.json (e.g. after changing the table)
        saved = json.loads(res_file.read_text())
        for r in saved["rows"]:  # rows recorded before a column existed: recompute from their stats
            kept = args.out / r["row"] / "stats.jsonl"
            if r.get("D_adv_at_20kimg") is None and kept.exists():
                r.update(health(read_jsonl(kept)))
        res_file.write_text(json.dumps(saved, indent=2))
        (args.out / "table.md").write_text(header(saved) + table(saved["rows"], points))
        print(table(saved["rows"], points))
        return 0
    args.runs.mkdir(parents=True, exist_ok=True)
    args.commit = commit  # each row records the code it ran (rows of one table may span commits)
    args.threads = max(1, (os.cpu_count() or 2) // args.jobs)
    lock = threading.Lock()

    def one(name: str) -> None:
        row = run_row(name, args, *ROWS[name][1:])
        with lock:  # rows finish in any order; the files always hold every finished row
            if res_file.exists():  # what another learn.py process (or --collect) wrote meanwhile wins
                fresh = {r["row"]: r for r in json.loads(res_file.read_text())["rows"]}
                results[:] = [fresh.pop(r["row"], r) for r in results] + list(fresh.values())
            results[:] = [r for r in results if r["row"] != name]
            results.append(row)
            results.sort(key=lambda r: list(ROWS).index(r["row"]))
            meta = {"command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]), "preset": args.preset,
                    "kimg": args.kimg, "fid_n": args.fid_n, "data": str(args.data.name),
                    "machine": f"{os.cpu_count()} CPU cores, {args.jobs} row(s) at a time x "
                               f"{args.threads} thread(s)", "date": time.strftime("%Y-%m-%d"),
                    "commit": commit}
            res_file.write_text(json.dumps({**meta, "rows": results}, indent=2))
            (args.out / "table.md").write_text(header(meta) + table(results, points))
            print(table(results, points), flush=True)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(one, names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
