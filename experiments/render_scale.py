"""Resolution-free rendering, measured: the same seeds at 1x, 2x, 4x next to bicubic upsampling.

    python experiments/render_scale.py RUN --out experiments/results/render-scale [--seeds 0-5] [--n-measure 64]

Writes --out/figure.png (rows: seeds; columns: the 1x image, the 2x and 4x INR renders
(``G(z, scale=s)``, what ``vitgan sample --scale s`` writes) and the 1x image upsampled 4x
bicubically, each shown at 4x the training resolution, nearest neighbour) and --out/results.json:
over ``--n-measure`` latents (seeds 0..N-1), the mean and max |avg_pool(s x render, s) - 1x| in
G's [-1, 1] units and in 0-255 pixels of the clamped images, the same for bicubic upsampling
averaged back, and between two different latents (a yardstick).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vitgan.inspect import draw  # noqa: E402
from vitgan.models.sampling import latents, to_uint8_hwc  # noqa: E402
from vitgan.runs.source import open_run  # noqa: E402


def _pixels(x):
    return ((x.clamp(-1, 1) + 1) * 127.5).round()


def measure(G, cfg, n: int, batch: int = 16) -> dict:
    z = latents(range(n), cfg.z_dim)
    out = {"latents": n}
    with torch.no_grad():
        one = torch.cat([G(zb) for zb in z.split(batch)])
        renders = {s: torch.cat([G(zb, scale=s) for zb in z.split(batch)]) for s in (2, 4)}
    renders["bicubic2"] = F.interpolate(one, scale_factor=2, mode="bicubic", align_corners=False)
    for key, big in renders.items():
        s = big.shape[-1] // one.shape[-1]
        d = F.avg_pool2d(big, s) - one
        du = F.avg_pool2d(_pixels(big), s) - _pixels(one)
        out[f"{key}x" if isinstance(key, int) else key] = {
            "mean_abs": round(d.abs().mean().item(), 5), "max_abs": round(d.abs().max().item(), 4),
            "mean_abs_255": round(du.abs().mean().item(), 3), "max_abs_255": round(du.abs().max().item(), 1)}
    out["between_latents_mean_abs"] = round((one - one.roll(1, 0)).abs().mean().item(), 4)
    return out


def figure(G, cfg, seeds: list[int]):
    z = latents(seeds, cfg.z_dim)
    with torch.no_grad():
        one = G(z)
        cols = {"1x": one, "2x (INR)": G(z, scale=2), "4x (INR)": G(z, scale=4),
                "bicubic 4x": F.interpolate(one, scale_factor=4, mode="bicubic", align_corners=False)}
    size = 4 * cfg.resolution
    cells = []
    for i in range(len(seeds)):
        row = []
        for x in cols.values():
            img = to_uint8_hwc(x[i:i + 1])[0]
            k = size // img.shape[0]
            row.append(img.repeat(k, 0).repeat(k, 1))
        cells.append(row)
    return draw.labelled_grid(cells, rows=[f"seed {s}" for s in seeds], cols=list(cols),
                              footer="each column shown at 4x the training size (nearest neighbour)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", default="0-5", help="first-last seed of the figure's rows")
    ap.add_argument("--n-measure", type=int, default=64)
    args = ap.parse_args()
    src = open_run(args.run, device="cpu", discriminator=False)
    G, cfg = src.G, src.cfg
    first, last = (int(v) for v in args.seeds.split("-"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figure(G, cfg, list(range(first, last + 1))).save(out / "figure.png", optimize=True)
    result = {"run": args.run, "resolution": cfg.resolution, "patch_size": cfg.patch_size, **measure(G, cfg, args.n_measure)}
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
