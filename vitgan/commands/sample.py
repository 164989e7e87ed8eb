"""`vitgan sample`: images from a checkpoint, run folder or export folder, always from the EMA generator.

    vitgan sample R --n 16 --out grid.png                  # a near-square grid (4 x 4 here)
    vitgan sample R --n 16 --out samples/                  # one PNG per sample (+ samples.json)
    vitgan sample R --n 16 --seed 16 --append --out samples/  # 16 more of the same checkpoint
    vitgan sample R -n 100000 --out samples.npz             # uint8 (N, H, W, C) under "images"
    vitgan sample R --n 4 --interp 30 --out walk.gif       # latent interpolation, 4 cells

Sample i uses the latent drawn from seed ``S + i``, so ``--seed 5 --n 1`` is sample 5 of
``--seed 0 --n 16``. ``--truncation T`` (or ``--trunc T``) moves w towards the average w
(truncation trick). Images are generated ``--batch`` at a time and written as they come (a
folder: one PNG each; .npz: streamed into the archive), so memory does not grow with ``--n``;
a grid is held whole and so holds at most ``GRID_MAX`` images. A folder holds one model's
samples and its ``samples.json`` says whose (``--append`` adds more; ``sample_folder``).
Progress goes to stderr (a bar on a terminal, a plain line every few seconds elsewhere). Images are G's output clamped to [-1, 1]
and mapped to 0-255 (``vitgan.models.sampling.to_uint8_hwc``).
With ``--interp STEPS`` each of the ``--n`` cells walks through ``--keyframes`` random latents
and back to the first (a seamless loop), interpolating linearly in w space, ``STEPS`` frames
between keyframes.

``--scale S`` renders every sample at S x the training resolution from the same latents (ViT-G's
INR head evaluated on an S-times finer grid of in-patch coordinates; ``--scale 1`` is the
training output bit for bit); the linear head and StyleGAN2's G refuse it (one line, exit 2).
The generator batch is divided by S^2 (at least 1), so memory stays about what it is at 1x.

A class-conditional run (``--set cond=true``): ``--class cat`` (a name or an index) gives every
sample that class, truncated toward that class's mean w; ``--class all`` writes one row per
class, ``--n`` samples each, the same latents in every row. Without ``--class``, sample i is of
class i mod K.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

from vitgan.errors import OptionError, UserError
from vitgan.files import atomic_write, writing
from vitgan.grids import grid_image, near_square, uint8_grid


GRID_MAX = 1024  # images in one grid file (held in memory whole); more go to a folder or .npz
GRID_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def add_arguments(p) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT_OR_RUN_DIR",
                   help="a run folder (newest complete checkpoint), an export folder (vitgan export) "
                        "or a .safetensors checkpoint")
    p.add_argument("-n", "--n", type=int, default=16, metavar="N", help="number of samples (default 16)")
    p.add_argument("--seed", type=int, default=0, help="first latent seed (default 0)")
    p.add_argument("--truncation", "--trunc", dest="trunc", type=float, default=1.0, metavar="PSI",
                   help="truncation psi (default 1: none)")
    p.add_argument("--out", required=True, metavar="FILE.png|DIR/|FILE.npz|FILE.gif",
                   help=f"grid image (at most {GRID_MAX} samples), folder for one PNG per sample, .npz of "
                        "uint8 (N, H, W, C) 'images' with their 'seeds' (and 'labels'), or GIF with --interp")
    p.add_argument("--interp", type=int, default=0, metavar="STEPS",
                   help="write a latent interpolation GIF with STEPS frames between keyframes")
    p.add_argument("--keyframes", type=int, default=4, help="latents each cell walks through (--interp)")
    p.add_argument("--fps", type=float, default=20.0, help="GIF frame rate (--interp)")
    p.add_argument("--batch", type=int, default=64, help="generator batch size (default 64)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--scale", type=float, default=1.0, metavar="S",
                   help="render at S x the training resolution (ViT-G's INR head; S x patch size whole "
                        "pixels; default 1)")
    p.add_argument("--append", action="store_true",
                   help="--out DIR/: add to the samples already there (only the same checkpoint, truncation, "
                        "scale and class; see DIR/samples.json)")
    p.add_argument("--class", dest="cls", default=None, metavar="NAME|INDEX|all",
                   help="class-conditional runs: the class to sample, or 'all' for one row per class")


def __getattr__(name):  # latents / synthesize live in vitgan.models.sampling (torch: imported lazily)
    if name in ("latents", "synthesize", "class_index", "sample_plan"):
        from vitgan.models import sampling
        return getattr(sampling, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def output_kind(args) -> str:
    """"dir", "grid", "npz" or "gif" from --out (and --interp); OptionError for anything else."""
    out = Path(args.out)
    suffix = out.suffix.lower()
    if args.out.endswith(("/", "\\")) or out.is_dir() or (not suffix and not args.interp):
        kind = "dir"
    else:
        kind = {".gif": "gif", ".npz": "npz"}.get(suffix, "grid" if suffix in GRID_SUFFIXES else None)
    if args.interp:
        if kind != "gif":
            raise OptionError(f"--interp writes a GIF; give --out FILE.gif, not {args.out}")
    elif kind in (None, "gif"):
        raise OptionError(f"--out {args.out}: give FILE.png for a grid, DIR/ for one PNG per sample, "
                          f"FILE.npz for an array of them, or FILE.gif with --interp STEPS")
    return kind


def check_options(args) -> str:
    """Every number and --out checked before the checkpoint is read; returns the output kind."""
    if args.n <= 0:
        raise OptionError(f"--n must be a positive integer, got {args.n}")
    if args.batch <= 0:
        raise OptionError(f"--batch must be a positive integer, got {args.batch}")
    if not (math.isfinite(args.scale) and args.scale > 0):
        raise OptionError(f"--scale must be a positive number (2: twice the resolution), got {args.scale}")
    if not math.isfinite(args.trunc):
        raise OptionError(f"--truncation must be a finite number (1: none, 0.7: typical), got {args.trunc}")
    if args.interp < 0:
        raise OptionError(f"--interp must be >= 1 (frames between keyframes), got {args.interp}")
    kind = output_kind(args)
    if args.interp:
        if args.keyframes < 2:
            raise OptionError(f"--keyframes must be >= 2, got {args.keyframes}")
        if not (math.isfinite(args.fps) and args.fps > 0):
            raise OptionError(f"--fps must be > 0, got {args.fps}")
    if kind == "grid" and args.n > GRID_MAX:
        raise OptionError(grid_too_big(args.n))
    out = Path(args.out)
    if kind == "dir" and out.exists() and not out.is_dir():
        raise OptionError(f"--out {out} is a file; give a folder (DIR/) for one PNG per sample")
    if getattr(args, "append", False) and kind != "dir":
        raise OptionError(f"--append adds to a folder of samples (--out DIR/), not to {args.out}")
    for above in out.parents:  # the nearest one that exists must be a folder
        if above.exists():
            if not above.is_dir():
                raise OptionError(f"--out's parent {above} is a file, not a folder; give a path in a folder")
            break
    if kind == "dir":
        from vitgan.commands.sample_folder import check_folder

        check_folder(out, getattr(args, "append", False))  # other files, or samples without --append
    return kind


def grid_too_big(count: int) -> str:
    return (f"a grid holds at most {GRID_MAX} images, not {count}; write --out DIR/ (one PNG per "
            f"sample) or --out FILE.npz for more")


def run(args) -> int:
    kind = check_options(args)
    out = Path(args.out)

    from vitgan.distributed import resolve_device
    from vitgan.models.sampling import plan_size, plan_slice, sample_batches
    from vitgan.models.vit_generator import check_render_scale
    from vitgan.progress import progress
    from vitgan.runs.source import open_run

    device = resolve_device(args.device)
    src = open_run(args.checkpoint, device=device, discriminator=False, log=lambda m: print(m, flush=True))
    G, cfg = src.G, src.cfg
    check_render_scale(cfg, args.scale)  # the linear head / StyleGAN2 G refuse --scale != 1
    batch = max(1, int(args.batch // args.scale ** 2))
    res = int(round(cfg.resolution * args.scale))
    if kind == "gif":
        frames = interpolation_frames(G, cfg, args, device)
        with writing(out), terminated_cleanly(out):  # the one atomic write: an old GIF stays whole
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(out, lambda f: frames[0].save(f, format="GIF", save_all=True, append_images=frames[1:],
                                                       loop=0, duration=int(round(1000 / args.fps)), optimize=False))
        print(f"wrote {out}: {len(frames)} frames of {args.n} cell(s)")
        return 0

    plan_slice(cfg, args.cls, args.seed, args.n, 0, 0)  # a bad --class stops here
    total = plan_size(cfg, args.cls, args.n)
    if kind == "dir":  # which weights and seeds make this set; --append of another's is refused here
        from vitgan.commands import sample_folder

        record = sample_folder.new_set(args, src.weights, cfg, total)
        sets = sample_folder.check_append(out, record)
    if kind == "grid" and total > GRID_MAX:
        raise OptionError(grid_too_big(total))
    bar = progress(total, "sample", unit="img")

    def batches():
        for item in sample_batches(G, cfg, cls=args.cls, seed=args.seed, n=args.n, trunc=args.trunc,
                                   batch=batch, device=device, scale=args.scale):
            yield item
            bar.update(len(item[0]))

    try:
        with writing(out), terminated_cleanly(out):
            if kind == "dir":
                write_folder(out, batches(), cfg.classes, sets, record)
            elif kind == "npz":
                out.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(out, lambda f: write_npz(f, batches(), total, cfg, args, res))
            else:
                out.parent.mkdir(parents=True, exist_ok=True)
                image = grid_of([imgs for _, _, imgs in batches()], args.n if args.cls == "all" else None)
                fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(out.suffix.lower(), "PNG")
                atomic_write(out, lambda f: image.save(f, format=fmt))
    finally:
        bar.close()
    if kind == "dir":
        print(f"wrote {total} images to {out}/")
    elif kind == "npz":
        print(f"wrote {out}: images uint8 {(total, res, res, cfg.channels)} "
              f"(N, H, W, C), seeds{', labels' if cfg.classes else ''}")
    else:
        cols = args.n if args.cls == "all" and cfg.classes else near_cols(total)
        labels = cfg.classes
        what = ("" if not labels else f", one row per class ({', '.join(labels)})" if args.cls == "all"
                else f", class {args.cls if args.cls in labels else labels[int(args.cls)]}" if args.cls is not None
                else f", classes in turn ({', '.join(labels)}; pick one with --class)")
        size = "" if args.scale == 1 else f", {res}x{res} ({args.scale:g}x)"
        print(f"wrote {out}: {total} samples, {cols} per row{what}{size}")
    return 0


@contextlib.contextmanager
def terminated_cleanly(out: Path):
    """SIGTERM while writing: one line, exit 143, and the temporary file removed (as Ctrl-C does)."""
    import signal
    import threading

    def stop(signum, frame):
        raise UserError(f"terminated (SIGTERM) while writing {out}; nothing half-written was kept",
                        exit_code=128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def near_cols(n: int) -> int:
    return near_square(n)[0]


def grid_of(parts, cols: int | None):
    """uint8 (N, H, W, C) batches -> a PIL grid image, ``cols`` wide (default: near square)."""
    import numpy as np

    x = np.concatenate(parts)
    return uint8_grid(x, cols or near_cols(len(x)))


def write_folder(out: Path, batches, classes, sets: list[dict], record: dict) -> None:
    """One PNG per sample, each complete when it appears (the one atomic write, vitgan.files);
    ``samples.json`` lists ``record`` (complete: false) before the first and is marked at the end."""
    from vitgan.commands.sample_folder import write_manifest

    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, [*sets, record])
    for seeds, labels, imgs in batches:
        names = [""] * len(seeds) if labels is None else [f"-{classes[k]}" for k in labels.tolist()]
        for s, name, a in zip(seeds, names, imgs):
            image = uint8_grid(a[None], 1)
            atomic_write(out / f"seed{s:06d}{name}.png", lambda f: image.save(f, format="PNG"))
    write_manifest(out, [*sets, {**record, "complete": True}])


def write_npz(f, batches, total: int, cfg, args, res: int) -> None:
    """An .npz that ``np.load`` reads: "images" uint8 (total, H, W, C) streamed batch by batch
    into the zip member after its .npy header, then "seeds" (and "labels") int64."""
    import zipfile

    import numpy as np

    from vitgan.models.sampling import plan_slice

    def header(m, shape, dtype):
        np.lib.format.write_array_header_1_0(m, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                 "fortran_order": False, "shape": tuple(shape)})

    shape = (total, res, res, cfg.channels)
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        with zf.open("images.npy", "w", force_zip64=True) as m:
            header(m, shape, np.uint8)
            written = 0
            for _, _, imgs in batches:
                if imgs.shape[1:] != shape[1:]:
                    raise RuntimeError(f"generator made {imgs.shape[1:]} images, expected {shape[1:]}")
                m.write(np.ascontiguousarray(imgs, dtype=np.uint8).tobytes())
                written += len(imgs)
            if written != total:
                raise RuntimeError(f"wrote {written} images, expected {total}")
        keys = ("seeds", "labels") if cfg.classes else ("seeds",)
        chunk = 1 << 20
        for j, key in enumerate(keys):  # recomputed from the plan, a chunk at a time
            with zf.open(f"{key}.npy", "w", force_zip64=True) as m:
                header(m, (total,), np.int64)
                for start in range(0, total, chunk):
                    part = plan_slice(cfg, args.cls, args.seed, args.n, start, min(start + chunk, total))[j]
                    m.write(np.asarray(part, dtype=np.int64).tobytes())


def interpolation_frames(G, cfg, args, device):
    """PIL frames: each cell lerps in w space through ``keyframes`` latents, looping."""
    import torch

    from vitgan.models.sampling import latents, sample_plan, scale_kwargs

    n, k, steps = args.n, args.keyframes, args.interp
    if args.cls == "all":
        raise OptionError("--interp walks one class per cell: give --class NAME or leave it out")
    seeds = [args.seed + j * n + c for j in range(k) for c in range(n)]  # keyframe-major
    z = latents(seeds, cfg.z_dim).to(device)
    _, labels, _ = sample_plan(cfg, args.cls, args.seed, n)  # each cell keeps its class
    c = None if labels is None else labels.repeat(k).to(device)
    with torch.no_grad():
        w = torch.cat([G.mapping(zb) if c is None else G.mapping(zb, cb)
                       for zb, cb in zip(z.split(args.batch), (z if c is None else c).split(args.batch))])
        if args.trunc != 1:
            centre = G.w_avg if c is None else G.w_avg[c]
            w = centre.to(w.dtype).lerp(w, args.trunc)
        w = w.view(k, n, -1)
        cols, _ = near_square(n)
        frames = []
        for j in range(k):
            a, b = w[j], w[(j + 1) % k]
            for s in range(steps):
                wt = torch.lerp(a, b, s / steps)
                img = torch.cat([G.synthesis(wb, **scale_kwargs(args.scale)).float().cpu()
                                 for wb in wt.split(args.batch)])
                frames.append(grid_image(img, nrow=cols).convert("RGB"))
    return frames


__all__ = ["add_arguments", "run", "latents", "synthesize", "class_index", "sample_plan",
           "interpolation_frames"]
