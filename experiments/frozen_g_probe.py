"""Can a run's D separate its generator's fakes from reals when the generator stands still?

Loads a checkpoint's discriminator and EMA generator, freezes the generator, and trains the
discriminator alone for ``--steps`` steps with the training loop's own D step
(``ViTGANLoss.accumulate_gradients("Dmain")``: logistic loss on the run's DiffAugment views; no R1
or bCR) and Adam at the run's D lr and betas: D's adversarial loss (chance 2 ln 2 = 1.386)
and clean logit gap at the start and every ``--every`` steps. A D that separates the frozen fakes
within a few hundred steps has the capacity, and its drift to chance in training is the game's
dynamics (G moving faster than D follows); a D that cannot is short of capacity or blind to
what tells the fakes apart.

    python experiments/frozen_g_probe.py RUN/checkpoints/ckpt-*.json --steps 300 --out F.json
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from vitgan.runtime import configure_openmp

configure_openmp()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from record import save  # noqa: E402  (experiments/record.py)
from vitgan.data import open_dataset  # noqa: E402
from vitgan.runs.source import open_run  # noqa: E402
from vitgan.train.augment import DiffAugment  # noqa: E402
from vitgan.train.loss import ViTGANLoss  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-yk-jpeg.tar.gz"


def logits(D, x: torch.Tensor) -> torch.Tensor:
    return D(x).float()


def measure(D, G, reals: torch.Tensor, aug, z_dim: int, gen: torch.Generator, n: int = 256) -> dict:
    """D's adversarial loss on augmented views and its clean logit gap, over n reals and n fakes."""
    with torch.no_grad():
        fake = G(torch.randn(n, z_dim, generator=gen)).float()
        real = reals[torch.randint(0, len(reals), (n,), generator=gen)]
        lr_c, lf_c = logits(D, real), logits(D, fake)
        lr_a, lf_a = logits(D, aug(real, gen)), logits(D, aug(fake, gen))
    adv = (F.softplus(-lr_a).mean() + F.softplus(lf_a).mean()).item()
    return {"D_adv": round(adv, 4), "clean_gap": round((lr_c.mean() - lf_c.mean()).item(), 3)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="a run's checkpoint (.json manifest) or run folder")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=None, help="D's lr (default: the run's d_lr or lr)")
    p.add_argument("--data", type=Path, default=ARCHIVE)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    t0 = time.time()
    torch.manual_seed(0)
    src = open_run(args.checkpoint, device="cpu")
    G, D = src.G, src.D
    train = (src.options or {}).get("train", {})
    lr = args.lr or train.get("d_lr") or train.get("lr", 0.002)
    aug = DiffAugment(train.get("augment", "translation,color,cutout,scale"), train.get("augment_p", 0.8))
    ds = open_dataset(str(args.data), resolution=src.cfg.resolution, split="train", max_images=5000)
    reals = ds.images.float() / 127.5 - 1
    D.train().requires_grad_(True)
    G.eval().requires_grad_(False)
    opt = torch.optim.Adam(D.parameters(), lr=lr, betas=(train.get("beta1", 0.0), train.get("beta2", 0.99)))
    loss = ViTGANLoss(G, D, aug, bcr_real=0.0, bcr_fake=0.0, r1_gamma=0.0)  # the D step, nothing added
    gen = torch.Generator().manual_seed(1)
    curve = [{"step": 0, **measure(D, G, reals, aug, src.cfg.z_dim, gen)}]
    for step in range(1, args.steps + 1):
        real = reals[torch.randint(0, len(reals), (args.batch,), generator=gen)]
        opt.zero_grad(set_to_none=True)
        loss.accumulate_gradients("Dmain", real, torch.randn(args.batch, src.cfg.z_dim, generator=gen))
        opt.step()
        if step % args.every == 0 or step == args.steps:
            curve.append({"step": step, **measure(D, G, reals, aug, src.cfg.z_dim, gen)})
            print(curve[-1], flush=True)
    save("frozen_g_probe.py", argv, {
        "checkpoint": str(args.checkpoint), "kimg": src.origin.get("kimg"), "g_arch": src.cfg.g_arch,
        "d_arch": src.cfg.d_arch, "d_lr": lr, "augment": repr(aug), "batch": args.batch,
        "chance": round(2 * math.log(2), 4), "curve": curve, "seconds": round(time.time() - t0, 1)}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
