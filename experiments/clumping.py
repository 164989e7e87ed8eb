"""Why is recall low when precision and the fakes' overall spread are not? Nearest-neighbour radii.

Recall (Kynkaanniemi et al. 2019, ``vitgan.metrics.manifold``) counts the reals inside some fake's
k-NN ball, whose radius is that fake's distance to its k-th nearest other fake. For one generator
(a run folder, checkpoint or export) and the CIFAR-10 archive, on the Inception features FID uses,
this prints: the median k-NN radius within the fakes and within the reals, the median distance
from a real to its nearest fake and to its nearest other real, precision / recall, and recall
again with every fake ball scaled to the reals' median radius ("what recall would be if the fakes
were spread like the reals at their own positions"). Fake radii far below the reals' radii with
reals far from every fake = tight clumps of near-duplicates (a one-layout generator).

    python experiments/clumping.py RUN --n 1000 --out experiments/results/.../clumping.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from vitgan.runtime import configure_openmp

configure_openmp()

import numpy as np  # noqa: E402

from vitgan.data import open_dataset  # noqa: E402
from vitgan.metrics.features import dataset_feature_set, generator_features  # noqa: E402
from vitgan.metrics.inception import load_inception  # noqa: E402
from vitgan.metrics.manifold import _blocks, _inside, knn_radii, precision_recall  # noqa: E402
from vitgan.metrics.stats_cache import StatsCache  # noqa: E402
from vitgan.runs.source import open_run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-yk-jpeg.tar.gz"


def nearest(probes: np.ndarray, points: np.ndarray, *, same: bool = False) -> np.ndarray:
    """(P,) distance of each probe to its nearest point (itself excluded when ``same``)."""
    out = np.empty(probes.shape[0])
    for start, d in _blocks(probes, points):
        if same:
            d[np.arange(d.shape[0]), start + np.arange(d.shape[0])] = np.inf
        out[start:start + d.shape[0]] = d.min(axis=1)
    return out


def clumping(fake: np.ndarray, real: np.ndarray, k: int = 3) -> dict:
    fake, real = fake.astype(np.float64), real.astype(np.float64)
    rf, rr = knn_radii(fake, k), knn_radii(real, k)
    precision, recall = precision_recall(fake, real, k=k)
    spread = _inside(real, fake, np.full(fake.shape[0], np.median(rr))).mean()
    r3 = lambda x: round(float(x), 3)  # noqa: E731
    return {"k": k, "median_knn_radius_fake": r3(np.median(rf)), "median_knn_radius_real": r3(np.median(rr)),
            "radius_ratio_fake_over_real": r3(np.median(rf) / np.median(rr)),
            "median_real_to_nearest_fake": r3(np.median(nearest(real, fake))),
            "median_real_to_nearest_other_real": r3(np.median(nearest(real, real, same=True))),
            "median_fake_to_nearest_other_fake": r3(np.median(nearest(fake, fake, same=True))),
            "precision": r3(precision), "recall": r3(recall),
            "recall_with_fake_balls_at_the_reals_median_radius": r3(spread)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="run folder, checkpoint or export of the generator")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--data", type=Path, default=ARCHIVE)
    p.add_argument("--precision", default="auto", help="the Inception network's: auto, fp32 or bf16")
    p.add_argument("--out", type=Path, default=None, help="write the result as JSON here too")
    args = p.parse_args(argv)
    t0 = time.time()
    run = open_run(args.run, device="cpu")
    ext = load_inception(None, "cpu", precision=args.precision)
    fake = generator_features(ext, run.G, args.n, seed=0)[0].numpy()
    train = open_dataset(str(args.data), resolution=run.G.cfg.resolution, split="train")
    real = dataset_feature_set(ext, train, args.n, split="train", cache=StatsCache()).features
    result = {
        "command": " ".join(["python", "experiments/clumping.py", *(argv or sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True).stdout.strip(),
        "generator": str(args.run), "n": args.n, "network": ext.name, "load": os.getloadavg()[0],
        **clumping(fake, real), "seconds": round(time.time() - t0, 1),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
