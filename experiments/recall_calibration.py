"""What recall can a set of a given FID have? Real images degraded in quality or in diversity.

Recall (k = 3, N = 1000, ``vitgan.metrics.manifold``) mixes two things: whether the fakes cover
the reals' variety and whether they are close enough to real images that a real falls inside a
fake's k-NN ball. This script separates them with sets whose answer is known. Every probe set is
N CIFAR-10 *test* images scored against N *train* images (the same train features training and
`vitgan eval` use), on the same Inception features:

- ``quality``: all N distinct test images (full diversity), made worse by a Gaussian blur of std
  ``s`` pixels or by additive pixel noise of std ``s`` (in units of the [0, 255] range / 255);
- ``diversity``: only ``m`` distinct test images, each repeated N / m times with a random shift of
  up to 2 pixels and a random horizontal flip (full quality, few modes: a collapsed generator).

A quality row whose FID matches a generator's tells the recall a *fully diverse* set of that FID
gets: if it is far below a target, the target cannot be met at that FID whatever the diversity.
``--results`` adds the learning benchmark's generators (each row's last FID / recall point) to
``--plot``, a recall-against-FID figure with the probe sets as curves.

    python experiments/recall_calibration.py --n 1000 --out experiments/results/recall-calibration/calibration.json \
        --plot experiments/results/recall-calibration/recall-vs-fid.png \
        --results experiments/results/learn-small/results.json experiments/results/learn-paper/results.json
    python experiments/recall_calibration.py --from .../calibration.json --out .../calibration.json ...
        # keeps the earlier rows, computes only the probe sets they lack (none: redraws the figure)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from vitgan.runtime import configure_openmp

configure_openmp()

import torch  # noqa: E402
import torchvision.transforms.v2.functional as TF  # noqa: E402

from record import save  # noqa: E402  (experiments/record.py)
from vitgan.data import open_dataset  # noqa: E402
from vitgan.metrics.features import dataset_feature_set, dataset_features, subset_indices  # noqa: E402
from vitgan.metrics.inception import load_inception  # noqa: E402
from vitgan.metrics.registry import compute_metrics  # noqa: E402
from vitgan.metrics.stats_cache import FeatureSet, StatsCache  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-yk-jpeg.tar.gz"
BLUR = (0.5, 1.0, 1.25, 1.5, 2.0, 3.0)
NOISE = (0.05, 0.1, 0.2, 0.3)
MODES = (10, 50, 200)
# the main configurations, one marker each in the figure (every other row: a grey dot)
FAMILIES = (("ViT, small-convhead", ("small-convhead-qk0.5", "small-convhead-qk0.5-seed1"), "*"),
            ("ViT, small (INR head)", ("small-qk0.5", "small-qk0.5-seed1"), "D"),
            ("conv baseline, two-timescale lr", ("small-stylegan2-ttur", "small-stylegan2-ttur-seed1"), "P"),
            ("hybrid, small-hybrid", ("small-hybrid-conv", "small-hybrid-conv-seed1"), "X"),
            ("ViT, paper size (96 kimg)", ("paper-b32-qk0.5", "paper-b32-convhead"), "v"))


def blurred(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> the same blurred by a Gaussian of std ``sigma`` pixels (kernel 6 sigma + 1,
    reflected borders)."""
    k = 2 * int(3 * sigma) + 1
    return TF.gaussian_blur(images.float(), [k, k], [sigma, sigma]).round().clamp(0, 255).to(torch.uint8)


def noisy(images: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    """uint8 -> uint8 plus Gaussian pixel noise of std ``std * 255``."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=g) * (std * 255)
    return (images.float() + noise).round().clamp(0, 255).to(torch.uint8)


def few_modes(images: torch.Tensor, m: int, seed: int = 0) -> torch.Tensor:
    """N images made of the first ``m`` of ``images`` only: each repeated, shifted by up to 2 pixels
    (reflection padding) and flipped at random, so that no two copies are identical."""
    n, _, h, w = images.shape
    g = torch.Generator().manual_seed(seed)
    src = images[torch.arange(n) % m].float()
    padded = torch.nn.functional.pad(src, (2, 2, 2, 2), mode="reflect")
    dx, dy = torch.randint(0, 5, (n,), generator=g), torch.randint(0, 5, (n,), generator=g)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]                 # (n, 1, h, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]                 # (n, 1, 1, w)
    out = padded[torch.arange(n)[:, None, None, None], torch.arange(padded.shape[1])[None, :, None, None],
                 rows, cols]                                                  # one gather: each copy's crop
    flip = torch.rand(n, generator=g) < 0.5
    out[flip] = out[flip].flip(-1)
    return out.round().clamp(0, 255).to(torch.uint8)


def last_points(results: list[Path]) -> list[dict]:
    """(row, kimg, FID, recall) at the last point where a learning-benchmark row has both."""
    out = []
    for path in results:
        for r in json.loads(path.read_text())["rows"]:
            both = [k for k in (r.get("recall") or {}) if k in (r.get("fid") or {})]
            if both:
                k = max(both, key=float)
                out.append({"row": r["row"], "kimg": round(float(k)), "fid": r["fid"][k], "recall": r["recall"][k]})
    return out


def plot(rows: list[dict], generators: list[dict], path: Path) -> None:
    """Recall against FID: one line per probe family, one dot per generator."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    clean = [r for r in rows if r["level"] == 0]
    for what, marker in (("gaussian blur, std (pixels)", "o-"), ("pixel noise, std (/255)", "s-"),
                         ("distinct images (shifted + flipped copies)", "^-")):
        family = sorted(clean + [r for r in rows if r["what"] == what], key=lambda r: r["fid"])
        ax.plot([r["fid"] for r in family], [r["recall"] for r in family], marker, label=f"reals: {what}")
        for r in family:
            if r["level"]:
                ax.annotate(f"{r['level']:g}", (r["fid"], r["recall"]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
    if generators:
        named = {row for _, rows_, _ in FAMILIES for row in rows_}
        rest = [g for g in generators if g["row"] not in named]
        ax.scatter([g["fid"] for g in rest], [g["recall"] for g in rest], c="grey", s=10,
                   label="other learning-benchmark rows (last point)", zorder=3)
        for label, rows_, marker in FAMILIES:
            mine = [g for g in generators if g["row"] in rows_]
            if mine:
                ax.scatter([g["fid"] for g in mine], [g["recall"] for g in mine], marker=marker, s=45,
                           edgecolors="k", linewidths=0.5, label=label, zorder=4)
    ax.axhline(0.3, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("FID@1000 (against 1000 train images)")
    ax.set_ylabel("recall (k = 3, N = 1000)")
    ax.set_title("What recall a set of a given FID can have (CIFAR-10 test images, degraded)")
    ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


class Images(torch.utils.data.Dataset):
    """A uint8 tensor as the dataset the feature functions read (``.images`` for batched reads)."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--data", type=Path, default=ARCHIVE)
    p.add_argument("--precision", default="auto", help="the Inception network's: auto, fp32 or bf16")
    p.add_argument("--out", type=Path, default=None, help="write the result as JSON here too")
    p.add_argument("--plot", type=Path, default=None, help="write the recall-against-FID figure here")
    p.add_argument("--results", type=Path, nargs="*", default=[],
                   help="learning-benchmark results.json files whose rows the figure shows as dots")
    p.add_argument("--from", dest="saved", type=Path, default=None,
                   help="an earlier output: keep its rows and compute only the probe sets it lacks "
                        "(none lacking: no features, only the figure redrawn with today's --results)")
    args = p.parse_args(argv)
    t0 = time.time()
    earlier = json.loads(args.saved.read_text()) if args.saved is not None else {"rows": []}
    rows = earlier["rows"]
    have = {(r["what"], r["level"]) for r in rows}
    wanted = ([("quality", "clean test images", 0.0, lambda x: x)]
              + [("quality", "gaussian blur, std (pixels)", s, lambda x, s=s: blurred(x, s)) for s in BLUR]
              + [("quality", "pixel noise, std (/255)", s, lambda x, s=s: noisy(x, s)) for s in NOISE]
              + [("diversity", "distinct images (shifted + flipped copies)", m, lambda x, m=m: few_modes(x, m))
                 for m in MODES])
    todo = [w for w in wanted if (w[1], w[2]) not in have]
    network = earlier.get("network")
    if todo:
        ext = load_inception(None, "cpu", precision=args.precision)
        network = ext.name
        train = open_dataset(str(args.data), resolution=32, split="train")
        real = dataset_feature_set(ext, train, args.n, split="train", cache=StatsCache())
        test = open_dataset(str(args.data), resolution=32, split="test")
        clean = torch.stack([test[int(i)] for i in subset_indices(len(test), args.n, seed=0)])
    for kind, what, level, make in todo:
        feats = dataset_features(ext, Images(make(clean)), range(args.n))[0]
        m = compute_metrics(FeatureSet.from_features(feats.numpy()), real, ("fid", "kid", "pr", "div"))
        rows.append({"kind": kind, "what": what, "level": level, **{k: round(float(v), 4) for k, v in m.items()}})
        print(f"{kind:9s} {what:45s} {level:6} FID {m['fid']:7.1f} precision {m['precision']:.3f} "
              f"recall {m['recall']:.3f}", file=sys.stderr, flush=True)
    order = [(w[1], w[2]) for w in wanted]
    rows.sort(key=lambda r: order.index((r["what"], r["level"])) if (r["what"], r["level"]) in order else len(order))
    generators = last_points(args.results)
    if args.plot is not None:
        plot(rows, generators, args.plot)
    extends = {"extends": {k: earlier[k] for k in ("command", "date", "load", "seconds")}} if args.saved else {}
    save("recall_calibration.py", argv, {"n": args.n, "network": network, "reference": "train split",
                                         "load": os.getloadavg()[0], "rows": rows, "generators": generators,
                                         "seconds": round(time.time() - t0, 1), **extends}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
