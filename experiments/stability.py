"""Is a training run stable? Summarise a run folder's stats.jsonl: loss peaks, whether D keeps
separating real from fake, and the training-health diagnostics, over windows of steps.

    python experiments/stability.py RUN --out experiments/results/cifar10-1000-steps

Writes --out/summary.json and --out/README.md (a table per window of steps), and copies
curves.png, stats.jsonl, training_options.json and the last sample grid. The run itself is a
plain ``vitgan train`` (the command is in the README this writes, from training_options.json).
Criteria (issue 10): finite losses, no D-loss spike above 3 (``loss/D_max``, the per-step peak
of each tick), and a D whose clean logits on real and fake images do not both collapse to one
constant (``diag/logit_gap`` > 0, ``diag/logit_std`` > 0).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

KEYS = ("loss/D", "loss/D_max", "loss/G", "diag/r_t", "diag/logit_real", "diag/logit_fake",
        "diag/logit_gap", "diag/logit_std", "diag/grad_real", "diag/attn_entropy_min", "diag/update_D")


def windows(rows: list[dict], size: int) -> list[dict]:
    out = []
    last = rows[-1]["step"] if rows else 0
    for start in range(0, last, size):
        part = [r for r in rows if start < r["step"] <= start + size]
        if not part:
            continue
        w = {"steps": f"{start + 1}-{min(start + size, last)}"}
        for k in KEYS:
            vals = [r[k] for r in part if k in r]
            if vals:
                w[k] = max(vals) if k.endswith("_max") else sum(vals) / len(vals)
        out.append(w)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--window", type=int, default=100, help="steps per table row")
    args = p.parse_args()
    rows = [json.loads(x) for x in (args.run / "stats.jsonl").read_text().splitlines() if x]
    if not rows:
        p.error(f"{args.run}/stats.jsonl has no rows")
    opts = json.loads((args.run / "training_options.json").read_text())
    finite = all(math.isfinite(r[k]) for r in rows for k in r if k.startswith("loss/"))
    peak = max(r.get("loss/D_max", r["loss/D"]) for r in rows)
    late = [r for r in rows if r["step"] > rows[-1]["step"] // 2]
    summary = {
        "run": str(args.run), "steps": rows[-1]["step"], "kimg": rows[-1]["kimg"],
        "preset": opts.get("preset"), "batch": opts["train"]["batch"], "lr": opts["train"]["lr"],
        "precision": opts["train"]["precision"], "finite": finite, "loss_D_peak": peak,
        "spike_above_3": peak > 3,
        "second_half_min_logit_gap": min(r["diag/logit_gap"] for r in late if "diag/logit_gap" in r),
        "second_half_mean_logit_gap": sum(r["diag/logit_gap"] for r in late) / len(late),
        "second_half_min_logit_std": min(r["diag/logit_std"] for r in late if "diag/logit_std" in r),
        "images_per_s_median": sorted(r["images_per_s"] for r in rows)[len(rows) // 2],
        "windows": windows(rows, args.window),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    for f in ("curves.png", "stats.jsonl", "training_options.json"):
        if (args.run / f).exists():
            shutil.copy2(args.run / f, args.out / f)
    grids = sorted(args.run.glob("fakes*.png"))
    if grids:
        shutil.copy2(grids[-1], args.out / "fakes-last.png")
    head = "| steps | " + " | ".join(KEYS) + " |"
    lines = [head, "|" + "---|" * (len(KEYS) + 1)]
    for w in summary["windows"]:
        lines.append(f"| {w['steps']} | " + " | ".join(f"{w[k]:.3g}" if k in w else "-" for k in KEYS) + " |")
    (args.out / "README.md").write_text(
        f"# {summary['preset']} preset, {summary['steps']} steps (batch {summary['batch']}, lr {summary['lr']}, "
        f"{summary['precision']})\n\n"
        f"Made with `{opts.get('command', 'vitgan train ...')}`, summarised with "
        f"`python experiments/stability.py {args.run} --out {args.out}`.\n\n"
        f"- finite losses: {finite}; largest per-step D loss: {peak:.3f} (spike above 3: {peak > 3})\n"
        f"- second half: logit gap min {summary['second_half_min_logit_gap']:.3f}, mean "
        f"{summary['second_half_mean_logit_gap']:.3f}; logit std min {summary['second_half_min_logit_std']:.3f}\n"
        f"- median images/s {summary['images_per_s_median']}\n\n"
        "Means over each window of steps (loss/D_max: the largest):\n\n" + "\n".join(lines) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "windows"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
