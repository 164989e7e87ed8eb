"""Every architecture preset, as a user runs it: train 1 kimg from the CIFAR-10 archive on the CPU,
then `vitgan sample` and `vitgan eval` on the run's checkpoint (issue 11's done-when).

    python experiments/presets_smoke.py                                  # every conv / hybrid preset
    python experiments/presets_smoke.py --presets cifar10-hybrid --kimg 1

The 64x64 presets train on the 32x32 archive upsampled to 64x64 (the data pipeline resizes to the
preset's resolution), which is what a user without CelebA gets; their numbers are run checks, not
learning results. One row per preset in --out/table.md and results.json: exit codes, wall times,
the files the run folder holds, the eval's FID at -n (not comparable with anything: 1 kimg of
training, tiny N). The machine's load (uptime) before and after each run is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-yk-jpeg.tar.gz"
PRESETS = ["cifar10-stylegan2", "cifar10-hybrid", "cifar10-vitd-sg2g",
           "celeba64-stylegan2", "celeba64-hybrid", "celeba64-vitd-sg2g"]


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def timed(cmd: list[str], log: Path, env: dict) -> tuple[int, float]:
    t0 = time.time()
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    return rc, round(time.time() - t0, 1)


def one(preset: str, args) -> dict:
    run = args.runs / preset
    if run.exists():
        shutil.rmtree(run)
    log = args.runs / f"{preset}.log"
    log.write_text("")
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": str(args.threads)}
    vg = [sys.executable, "-m", "vitgan"]
    row = {"preset": preset, "load_before": load()}
    # image_kimg / snap_kimg at the end: the run folder then holds what a longer run holds
    train = vg + ["train", "--preset", preset, "--data", str(args.data), "--kimg", str(args.kimg),
                  "--out", str(run), "--set", f"tick_kimg={args.kimg / 4}",
                  "--set", f"image_kimg={args.kimg}", "--set", f"snap_kimg={args.kimg}"]
    row["train_cmd"] = " ".join(["vitgan"] + train[3:])
    row["train_exit"], row["train_s"] = timed(train, log, env)
    row["run_files"] = sorted(p.name for p in run.iterdir()) if run.exists() else []
    stats = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()] if (run / "stats.jsonl").exists() else []
    if stats:
        last = stats[-1]
        row.update(kimg=last["kimg"], step=last["step"], loss_D=round(last["loss/D"], 3),
                   loss_G=round(last["loss/G"], 3), images_per_s=round(last.get("images_per_s", 0), 1),
                   logit_gap=round(last.get("diag/logit_gap", float("nan")), 3))
    grid = args.runs / f"{preset}-samples.png"
    row["sample_exit"], row["sample_s"] = timed(vg + ["sample", str(run), "--n", "16", "--out", str(grid),
                                                      "--device", "cpu"], log, env)
    ev = vg + ["eval", str(run), "--real", str(args.data), "-n", str(args.eval_n), "--metrics", "fid,kid",
               "--device", "cpu", "--json", "--cache-dir", str(args.runs / "cache")]
    t0 = time.time()
    proc = subprocess.run(ev, capture_output=True, text=True, env=env)
    row["eval_exit"], row["eval_s"] = proc.returncode, round(time.time() - t0, 1)
    with open(log, "a") as f:
        f.write("$ " + " ".join(ev) + "\n" + proc.stdout + proc.stderr)
    if proc.returncode == 0:
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        row.update(fid=round(res["fid"], 1), kid=round(res["kid_mean"], 4), eval_n=res["n"])
    out = args.out / preset
    out.mkdir(parents=True, exist_ok=True)
    for f in [run / "curves.png", run / "stats.jsonl", run / "training_options.json", grid, log]:
        if f.exists():
            shutil.copy2(f, out / f.name)
    row["load_after"] = load()
    return row


def table(rows: list[dict]) -> str:
    head = "| preset | train exit | kimg | steps | wall | img/s | D loss | G loss | logit gap | sample | eval | FID (n) | load |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['train_exit']} | {r.get('kimg', '-')} | {r.get('step', '-')} | "
                     f"{r['train_s'] / 60:.1f} min | {r.get('images_per_s', '-')} | {r.get('loss_D', '-')} | "
                     f"{r.get('loss_G', '-')} | {r.get('logit_gap', '-')} | exit {r['sample_exit']} | "
                     f"exit {r['eval_exit']} | {r.get('fid', '-')} ({r.get('eval_n', '-')}) | "
                     f"{r['load_before']}-{r['load_after']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--kimg", type=float, default=1.0)
    p.add_argument("--eval-n", type=int, default=100)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--data", type=Path, default=ARCHIVE)
    p.add_argument("--out", type=Path, default=REPO / "experiments" / "results" / "presets-1kimg")
    p.add_argument("--runs", type=Path, default=Path("/tmp/vitgan-presets"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.runs.mkdir(parents=True, exist_ok=True)
    res = args.out / "results.json"
    names = [n for n in args.presets.split(",") if n]
    rows = [r for r in (json.loads(res.read_text())["rows"] if res.exists() else []) if r["preset"] not in names]
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    for name in names:
        rows.append({**one(name, args), "commit": commit, "date": time.strftime("%Y-%m-%d %H:%M"),
                     "command": " ".join(["presets_smoke.py"] + sys.argv[1:])})
        rows.sort(key=lambda r: PRESETS.index(r["preset"]) if r["preset"] in PRESETS else 99)
        meta = {"command": " ".join(["presets_smoke.py"] + sys.argv[1:]),
                "machine": f"{os.cpu_count()} CPU cores, {args.threads} thread(s)"}
        res.write_text(json.dumps({**meta, "rows": rows}, indent=2))
        (args.out / "table.md").write_text(
            f"Presets, 1 run each, by `presets_smoke.py --presets P --kimg K --threads T` (last: "
            f"`{meta['command']}`; {meta['machine']}; each row's kimg, date and commit in results.json; "
            f"load = uptime before-after; FID at tiny n after so few kimg is a run check, not a "
            f"result)\n\n" + table(rows))
        print(table(rows), flush=True)
    return 0 if all(r["train_exit"] == r["sample_exit"] == r["eval_exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
