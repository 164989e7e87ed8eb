"""The standings of the learning benchmark at the `small` size: one table of every 200-kimg row.

Reads the learning benchmark's results.json (experiments/learn.py) and writes standings.md beside
it: FID at 50 / 100 / 150 / 200 kimg, recall and diversity at the end, D's adversarial loss and
clean logit gap over the last tenth, and, for configurations run at more than one seed, the mean
and the spread (max - min) of the seeds, which is what a difference between rows must exceed.

    python experiments/standings.py                       # experiments/results/learn-small
    python experiments/standings.py --results R/results.json --stdout
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "experiments" / "results" / "learn-small" / "results.json"
POINTS = (50, 100, 150, 200)

# (configuration, its learn.py rows: one per seed)
GROUPS: list[tuple[str, list[str]]] = [
    ("ViTGAN, `small` defaults until 2026-12-07 (D's attention gain (2 sqrt(d_h))^-1/2)",
     ["small-lr0.001", "small-seed1"]),
    ("ViTGAN, `small` defaults (D's attention gain 0.5)", ["small-qk0.5", "small-qk0.5-seed1"]),
    ("conv baseline, `small-stylegan2` (lr 0.001)", ["small-stylegan2"]),
    ("conv baseline, two-timescale lr (G 0.00125, D 0.0025)", ["small-stylegan2-ttur", "small-stylegan2-ttur-seed1"]),
    ("hybrid, `small-hybrid` (ViT-G with the conv head + conv D)",
     ["small-hybrid-conv", "small-hybrid-conv-seed1"]),
    ("hybrid with the paper's INR head (the preset's until 2026-12-07), two-timescale lr",
     ["small-hybrid-ttur"]),
    ("ViT-G with the conv head + ViT-D at the formula's gain 0.25 (a probe; the preset `small-convhead` "
     "is the next row)", ["small-convhead"]),
    ("`small-convhead`: ViT-G with the authors' conv patch head + ViT-D (gain 0.5)",
     ["small-convhead-qk0.5", "small-convhead-qk0.5-seed1"]),
]


def at(series: dict | None, kimg: float) -> float | None:
    """The metric at `kimg` (results.json keys are the kimg the point was taken at, within 2)."""
    for key, value in (series or {}).items():
        if abs(float(key) - kimg) < 2:
            return value
    return None


def fmt(value: float | None, spec: str = "{:.1f}") -> str:
    return "-" if value is None else spec.format(value)


def seed_of(row: dict) -> str:
    return next((s.split("=", 1)[1] for s in row.get("set", []) if s.startswith("seed=")), "0")


def spread(values: list[float | None], spec: str) -> str:
    """'mean ± half the range' of the seeds that reached the point, '-' when fewer than two did."""
    got = [v for v in values if v is not None]
    if len(got) < 2:
        return "-"
    mean = sum(got) / len(got)
    return f"{spec.format(mean)} ± {spec.format((max(got) - min(got)) / 2)}"


def table(results: dict) -> str:
    rows = {r["row"]: r for r in results["rows"]}
    head = ("| configuration | seed | " + " | ".join(f"FID@{p}" for p in POINTS)
            + " | recall@200 | diversity@200 | D adv / gap (last tenth) | wall |")
    lines = [head, "|" + "---|" * 10]
    for name, keys in GROUPS:
        present = [rows[k] for k in keys if k in rows]
        for row in present:
            tenth = row.get("last_tenth") or {}
            adv, gap = tenth.get("loss/D_adv"), tenth.get("diag/logit_gap")
            lines.append(
                f"| {name} (`{row['row']}`) | {seed_of(row)} | "
                + " | ".join(fmt(at(row.get("fid"), p)) for p in POINTS)
                + f" | {fmt(at(row.get('recall'), 200), '{:.3f}')} | {fmt(at(row.get('div_ratio'), 200), '{:.2f}')}"
                + f" | {fmt(adv, '{:.3f}')} / {fmt(gap, '{:.2f}')} | {row['wall_s'] / 60:.0f} min |")
        if len(present) > 1:
            lines.append(
                f"| *{name}: mean ± half-range of {len(present)} seeds* | - | "
                + " | ".join(spread([at(r.get("fid"), p) for r in present], "{:.1f}") for p in POINTS)
                + f" | {spread([at(r.get('recall'), 200) for r in present], '{:.3f}')} | - | - | - |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=RESULTS, help="the learning benchmark's results.json")
    p.add_argument("--stdout", action="store_true", help="print the table instead of writing standings.md")
    args = p.parse_args(argv)
    text = table(json.loads(args.results.read_text()))
    if args.stdout:
        print(text, end="")
    else:
        out = args.results.with_name("standings.md")
        try:
            shown = args.results.resolve().relative_to(REPO)
        except ValueError:
            shown = args.results
        out.write_text(f"Standings at 200 kimg: `python experiments/standings.py --results {shown}` (each "
                       "row's command, date and machine in table.md and results.json)\n\n" + text)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
