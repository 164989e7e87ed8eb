"""How much does the Inception network's precision move FID and KID, and how much faster is bf16?

For one generator (a run folder, checkpoint or export) and the CIFAR-10 archive: the features of
the same N fakes (seeded latents) and N reals (the fixed subset training uses) in fp32 and in
bf16 (``vitgan.metrics.inception``'s channels-last bf16 copy), FID / KID from each, their
difference, and the seconds each feature pass took. Also reals against reals (the archive's test
split against its train split), where FID is small and a fixed error shows most.

    python experiments/inception_precision.py RUN --n 1000 --out benchmarks/inception-precision.json
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

from vitgan.data import open_dataset  # noqa: E402
from vitgan.metrics.features import dataset_features, generator_features, subset_indices  # noqa: E402
from vitgan.metrics.inception import load_inception  # noqa: E402
from vitgan.metrics.registry import compute_metrics  # noqa: E402
from vitgan.metrics.stats_cache import FeatureSet  # noqa: E402
from vitgan.runtime import cpu_has_bf16, cpu_model  # noqa: E402
from vitgan.runs.source import open_run  # noqa: E402
from record import save  # noqa: E402  (experiments/record.py)

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-yk-jpeg.tar.gz"


def fid_kid(a, b) -> dict:
    """FID and KID exactly as training and `vitgan eval` compute them (the metric registry)."""
    v = compute_metrics(FeatureSet.from_features(a.numpy()), FeatureSet.from_features(b.numpy()),
                        ["fid", "kid"], seed=0)
    return {"fid": round(float(v["fid"]), 3), "kid": round(float(v["kid_mean"]), 5)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="run folder, checkpoint or export of the generator")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--data", type=Path, default=ARCHIVE)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--out", type=Path, default=None, help="write the result as JSON here too")
    args = p.parse_args(argv)
    G = open_run(args.run, device="cpu").G
    train = open_dataset(str(args.data), resolution=32, split="train")
    test = open_dataset(str(args.data), resolution=32, split="test")
    idx_train, idx_test = subset_indices(len(train), args.n), subset_indices(len(test), args.n)
    feats, seconds = {}, {}
    for precision in ("fp32", "bf16"):
        ext = load_inception(None, "cpu", precision=precision)
        t0 = time.perf_counter()
        feats[precision, "fake"] = generator_features(ext, G, args.n, batch=args.batch, seed=0)[0]
        t1 = time.perf_counter()
        feats[precision, "train"] = dataset_features(ext, train, idx_train, batch=args.batch)[0]
        t2 = time.perf_counter()
        feats[precision, "test"] = dataset_features(ext, test, idx_test, batch=args.batch)[0]
        seconds[precision] = {"fake (G + features)": round(t1 - t0, 1), "reals": round(t2 - t1, 1),
                              "reals img/s": round(args.n / (t2 - t1), 1)}
    rows = {}
    for pair in (("fake", "train"), ("test", "train")):
        rows[" vs ".join(pair)] = {pr: fid_kid(feats[pr, pair[0]], feats[pr, pair[1]]) for pr in ("fp32", "bf16")}
        r = rows[" vs ".join(pair)]
        r["fid_diff"] = round(r["bf16"]["fid"] - r["fp32"]["fid"], 3)
        r["kid_diff"] = round(r["bf16"]["kid"] - r["fp32"]["kid"], 5)
    rel = ((feats["fp32", "train"] - feats["bf16", "train"]).norm(dim=1)
           / feats["fp32", "train"].norm(dim=1))
    save("inception_precision.py", argv, {
        "cpu": cpu_model(), "bf16_units": cpu_has_bf16(), "threads": torch.get_num_threads(),
        "load": os.getloadavg()[0], "n": args.n, "generator": str(args.run),
        "metrics": rows, "seconds": seconds,
        "feature_relative_error": {"median": round(float(rel.median()), 4), "max": round(float(rel.max()), 4)},
    }, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
