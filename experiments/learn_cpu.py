"""Does it learn? Train a small ViTGAN on the CIFAR-10 archive for a fixed wall-clock budget on
the CPU, then plot the loss curves, collect the sample grids and measure FID at a few snapshots.

    python experiments/learn_cpu.py --minutes 25 --out experiments/results/learn_cpu

The run is stopped by SIGINT at the deadline (the trainer saves a checkpoint and exits cleanly),
so its length in kimg is whatever the machine managed; everything it reports comes from the
run's own files (stats.jsonl, fakes*.png, network-snapshot-*.safetensors). FID is measured by
`vitgan eval` (EMA generator, --fid-n samples against the same number of real training images
of the same archive; see docs/metrics.md for why these numbers are not comparable with
published CIFAR-10 FIDs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-yk-jpeg.tar.gz"


def train(args, run: Path) -> float:
    cmd = [sys.executable, "-m", "vitgan", "train", "--preset", args.preset, "--data", str(args.data),
           "--out", str(run), "--kimg", "100000", "--batch", str(args.batch),
           "--set", f"tick_kimg={args.tick_kimg}", "--set", f"image_kimg={args.image_kimg}",
           "--set", f"snap_kimg={args.snap_kimg}", "--set", f"ckpt_kimg={args.snap_kimg}",
           "--set", "grid=8"] + [x for kv in args.set for x in ("--set", kv)]
    print("$", " ".join(cmd), flush=True)
    t0 = time.time()
    proc = subprocess.Popen(cmd, env={**os.environ, "TQDM_DISABLE": "1"})
    try:
        proc.wait(timeout=args.minutes * 60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # the trainer saves a checkpoint and exits
        proc.wait(timeout=600)
    return time.time() - t0


def plot_losses(run: Path, out: Path) -> list[dict]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines() if line]
    keys = sorted({k for r in rows for k in r if k.startswith("loss/")})
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k in keys:
        ax.plot([r["kimg"] for r in rows], [r.get(k) for r in rows], label=k.removeprefix("loss/"))
    ax.set_xlabel("kimg")
    ax.set_ylabel("loss (mean over tick)")
    ax.set_title(f"{run.name}: losses")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "losses.png", dpi=100)
    return rows


def fid(args, source: Path) -> dict:
    cmd = [sys.executable, "-m", "vitgan", "eval", str(source), "--metrics", "fid,kid",
           "-n", str(args.fid_n), "--real", str(args.data), "--split", "train", "--json"]
    print("$", " ".join(cmd), flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        return {"error": res.stderr.strip().splitlines()[-1:]}
    return json.loads(res.stdout)


def fid_untrained(args) -> dict:
    """FID/KID of the run's generator before any step (same seed, so the same initial weights)."""
    import torch

    from vitgan.config import ModelConfig
    from vitgan.data import open_dataset
    from vitgan.metrics import evaluate_generator
    from vitgan.models import build_generator

    opts = json.loads((args.run / "training_options.json").read_text())
    cfg = ModelConfig.from_dict(opts["model"])
    torch.manual_seed(opts["train"]["seed"])
    G = build_generator(cfg).eval()
    real = open_dataset(str(args.data), resolution=cfg.resolution, split="train",
                        max_images=args.fid_n, log=lambda *a: None)
    t0 = time.time()
    res = evaluate_generator(G, real, metrics=("fid", "kid"), n=args.fid_n, device="cpu")
    return {**res, "n": args.fid_n, "seconds": round(time.time() - t0, 1),
            "note": "untrained generator built from the run's model config and seed (not its exact initial weights)"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=25)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--data", type=Path, default=ARCHIVE)
    p.add_argument("--out", type=Path, default=REPO / "experiments" / "results" / "learn_cpu")
    p.add_argument("--run", type=Path, default=Path("/tmp/vitgan-learn-cpu"),
                   help="the run folder (large files stay here; the summary goes to --out)")
    p.add_argument("--tick-kimg", type=float, default=2)
    p.add_argument("--image-kimg", type=float, default=20)
    p.add_argument("--snap-kimg", type=float, default=40)
    p.add_argument("--fid-n", type=int, default=500)
    p.add_argument("--fid-snapshots", type=int, default=3, help="evaluate this many snapshots, spread out")
    p.add_argument("--set", action="append", default=[], help="extra --set for vitgan train")
    args = p.parse_args()

    if args.run.exists():
        shutil.rmtree(args.run)
    args.out.mkdir(parents=True, exist_ok=True)
    wall = train(args, args.run)
    rows = plot_losses(args.run, args.out)
    for f in sorted(args.run.glob("fakes*.png")) + [args.run / "training_options.json"]:
        shutil.copy2(f, args.out / f.name)
    shutil.copy2(args.run / "stats.jsonl", args.out / "stats.jsonl")

    snaps = sorted(args.run.glob("network-snapshot-*.safetensors"))
    pick = sorted({snaps[round(i * (len(snaps) - 1) / max(args.fid_snapshots - 1, 1))]
                   for i in range(args.fid_snapshots)}) if snaps else []
    fids = {"untrained": fid_untrained(args)}
    fids.update({s.name: fid(args, s) for s in pick})
    summary = {"command": " ".join(sys.argv), "minutes": args.minutes, "wall_s": round(wall, 1),
               "kimg": rows[-1]["kimg"] if rows else 0, "steps": rows[-1]["step"] if rows else 0,
               "images_per_s_median": sorted(r["images_per_s"] for r in rows)[len(rows) // 2] if rows else 0,
               "last_losses": {k: v for k, v in rows[-1].items() if k.startswith("loss/")} if rows else {},
               "fid": fids, "machine": f"{os.cpu_count()} CPU cores", "date": time.strftime("%Y-%m-%d")}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
