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
import os
import sys
import time
from pathlib import Path

from vitgan.runtime import configure_openmp

configure_openmp()

import torch  # noqa: E402

from record import save  # noqa: E402  (experiments/record.py)
from vitgan.data import open_dataset  # noqa: E402
from vitgan.metrics.features import dataset_feature_set, generator_features  # noqa: E402
from vitgan.metrics.inception import load_inception  # noqa: E402
from vitgan.metrics.manifold import knn_radii, precision_recall  # noqa: E402
from vitgan.metrics.stats_cache import StatsCache  # noqa: E402
from vitgan.runs.source import open_run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-yk-jpeg.tar.gz"


def clumping(fake, real, k: int = 3) -> dict:
    """The nearest-neighbour figures of the module docstring, for (N, D) feature arrays (N of a
    few thousand: the N x N distances are held at once, in float64)."""
    x, y = torch.as_tensor(fake, dtype=torch.float64), torch.as_tensor(real, dtype=torch.float64)
    rf, rr = torch.as_tensor(knn_radii(x.numpy(), k)), torch.as_tensor(knn_radii(y.numpy(), k))
    med = lambda t: t.quantile(0.5)  # noqa: E731  (numpy's median: the mean of the middle two)
    d_rf, d_rr, d_ff = torch.cdist(y, x), torch.cdist(y, y), torch.cdist(x, x)
    d_rr.fill_diagonal_(float("inf"))
    d_ff.fill_diagonal_(float("inf"))
    precision, recall = precision_recall(x.numpy(), y.numpy(), k=k)
    widened = (d_rf <= med(rr)).any(dim=1).double().mean()  # every fake ball at the reals' radius
    r3 = lambda v: round(float(v), 3)  # noqa: E731
    return {"k": k, "median_knn_radius_fake": r3(med(rf)), "median_knn_radius_real": r3(med(rr)),
            "radius_ratio_fake_over_real": r3(med(rf) / med(rr)),
            "median_real_to_nearest_fake": r3(med(d_rf.min(dim=1).values)),
            "median_real_to_nearest_other_real": r3(med(d_rr.min(dim=1).values)),
            "median_fake_to_nearest_other_fake": r3(med(d_ff.min(dim=1).values)),
            "precision": r3(precision), "recall": r3(recall),
            "recall_with_fake_balls_at_the_reals_median_radius": r3(widened)}


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
    save("clumping.py", argv, {"generator": str(args.run), "n": args.n, "network": ext.name,
                               "load": os.getloadavg()[0], **clumping(fake, real),
                               "seconds": round(time.time() - t0, 1)}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
