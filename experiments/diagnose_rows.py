"""Compare the training-health diagnostics of several short runs, window by window of kimg.

    python experiments/diagnose_rows.py --out experiments/results/learn-small/diagnostics \
        A=/tmp/exp/A B=/tmp/exp/B ... [--window 4]

Each NAME=RUN is a ``vitgan train`` run folder. For every window of ``--window`` kimg, the mean
over its ticks of D's adversarial loss (D_real + D_fake; chance 2 ln 2 = 1.386), the clean logit
gap, r_t, the mean attention entropy of D (ln 65 = 4.17 is uniform attention over 64 patches and
the class token), the largest effective spectral norm of D's layers, G's loss and the fakes' layout
share (diag/layout_share: 1 = one layout in many colourings). Writes
--out/README.md (the table and each row's command, from its training_options.json) and copies each
row's stats.jsonl, training_options.json, log.txt and last grid to --out/NAME/. Any metric-*.jsonl
and an eval JSON (``vitgan eval RUN --json``, saved as RUN.eval.json beside the folder) go in too.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

COLUMNS = (("D adv", lambda r: r["loss/D_real"] + r["loss/D_fake"]), ("gap", "diag/logit_gap"),
           ("r_t", "diag/r_t"), ("attn entropy", "diag/attn_entropy_mean"),
           ("sigma max", "diag/sigma_max"), ("G loss", "loss/G"), ("layout share", "diag/layout_share"))


def value(row: dict, key) -> float:
    return key(row) if callable(key) else row.get(key, math.nan)


def summary(rows: list[dict], window: float) -> list[tuple[str, list[float]]]:
    out, lo = [], 0.0
    end = rows[-1]["kimg"] if rows else 0
    while lo < end - 1e-9:
        sel = [r for r in rows if lo < r["kimg"] <= lo + window + 1e-9]
        if sel:
            out.append((f"{lo:g}-{lo + window:g}",
                        [sum(value(r, k) for r in sel) / len(sel) for _, k in COLUMNS]))
        lo += window
    return out


def command(run: Path) -> str:
    try:
        return json.loads((run / "training_options.json").read_text()).get("command", "?")
    except (OSError, ValueError):
        return "?"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rows", nargs="+", help="NAME=RUN_FOLDER")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--window", type=float, default=4.0, help="kimg per window")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["| row | kimg | " + " | ".join(c for c, _ in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    cmds = []
    for item in args.rows:
        name, run = item.split("=", 1)
        run = Path(run)
        stats = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines() if x]
        for win, vals in summary(stats, args.window):
            lines.append(f"| {name} | {win} | " + " | ".join("-" if math.isnan(v) else f"{v:.3f}" for v in vals) + " |")
        cmds.append(f"- `{name}`: `{command(run)}`")
        dest = args.out / name
        dest.mkdir(exist_ok=True)
        for f in ["stats.jsonl", "training_options.json", "log.txt", *[q.name for q in run.glob("metric-*.jsonl")]]:
            if (run / f).exists():
                shutil.copy2(run / f, dest / f)
        grids = sorted(run.glob("fakes*.png"))
        if grids:
            shutil.copy2(grids[-1], dest / "fakes-final.png")
        ev = run.parent / f"{run.name}.eval.json"
        if ev.exists() and ev.stat().st_size:
            shutil.copy2(ev, dest / "eval.json")
    text = ("# Training-health diagnostics per window of kimg\n\n"
            f"`python experiments/diagnose_rows.py {' '.join(args.rows)} --out {args.out} --window {args.window:g}`\n\n"
            + "\n".join(lines) + "\n\nCommands:\n\n" + "\n".join(cmds) + "\n")
    (args.out / "README.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
