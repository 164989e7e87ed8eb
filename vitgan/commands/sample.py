"""`vitgan sample`: images from a checkpoint, run folder or export folder, always from the EMA generator.

    vitgan sample R --n 16 --out grid.png                  # a near-square grid (4 x 4 here)
    vitgan sample R --n 16 --out samples/                  # one PNG per sample
    vitgan sample R --n 4 --interp 30 --out walk.gif       # latent interpolation, 4 cells

Sample i uses the latent drawn from seed ``S + i``, so ``--seed 5 --n 1`` is sample 5 of
``--seed 0 --n 16``. ``--trunc T`` moves w towards the average w (truncation trick).
With ``--interp STEPS`` each of the ``--n`` cells walks through ``--keyframes`` random latents
and back to the first (a seamless loop), interpolating linearly in w space, ``STEPS`` frames
between keyframes.

A class-conditional run (``--set cond=true``): ``--class cat`` (a name or an index) gives every
sample that class, truncated toward that class's mean w; ``--class all`` writes one row per
class, ``--n`` samples each, the same latents in every row. Without ``--class``, sample i is of
class i mod K.
"""

from __future__ import annotations

from pathlib import Path

from vitgan.errors import OptionError


def add_arguments(p) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT_OR_RUN_DIR",
                   help="a run folder (newest complete checkpoint), an export folder (vitgan export) "
                        "or a .safetensors checkpoint")
    p.add_argument("--n", type=int, default=16, help="number of samples (grid cells) (default 16)")
    p.add_argument("--seed", type=int, default=0, help="first latent seed (default 0)")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi (default 1: none)")
    p.add_argument("--out", required=True, metavar="FILE.png|DIR/|FILE.gif",
                   help="grid image, folder for one PNG per sample, or GIF with --interp")
    p.add_argument("--interp", type=int, default=0, metavar="STEPS",
                   help="write a latent interpolation GIF with STEPS frames between keyframes")
    p.add_argument("--keyframes", type=int, default=4, help="latents each cell walks through (--interp)")
    p.add_argument("--fps", type=float, default=20.0, help="GIF frame rate (--interp)")
    p.add_argument("--batch", type=int, default=64, help="generator batch size")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--class", dest="cls", default=None, metavar="NAME|INDEX|all",
                   help="class-conditional runs: the class to sample, or 'all' for one row per class")


def __getattr__(name):  # latents / synthesize live in vitgan.models.sampling (torch: imported lazily)
    if name in ("latents", "synthesize", "class_index", "sample_plan"):
        from vitgan.models import sampling
        return getattr(sampling, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(args) -> int:
    if args.n <= 0:
        raise OptionError(f"--n must be a positive integer, got {args.n}")
    if args.batch <= 0:
        raise OptionError(f"--batch must be a positive integer, got {args.batch}")
    if args.interp < 0:
        raise OptionError(f"--interp must be >= 1 (frames between keyframes), got {args.interp}")
    out = Path(args.out)
    as_dir = args.out.endswith(("/", "\\")) or out.is_dir() or (not out.suffix and not args.interp)
    if args.interp:
        if out.suffix.lower() != ".gif":
            raise OptionError(f"--interp writes a GIF; give --out FILE.gif, not {args.out}")
        if args.keyframes < 2:
            raise OptionError(f"--keyframes must be >= 2, got {args.keyframes}")
        if args.fps <= 0:
            raise OptionError(f"--fps must be > 0, got {args.fps}")
    elif not as_dir and out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise OptionError(f"--out {args.out}: give FILE.png for a grid, DIR/ for one PNG per "
                          f"sample, or FILE.gif with --interp STEPS")

    from vitgan.distributed import resolve_device
    from vitgan.models.sampling import latents, sample_plan, synthesize
    from vitgan.train.checkpoint import load_generator
    from vitgan.train.run_dir import grid_image, near_square, writing

    device = resolve_device(args.device)
    G, cfg = load_generator(args.checkpoint, device=device, log=lambda m: print(m))
    if args.interp:
        frames = interpolation_frames(G, cfg, args, device)
        with writing(out):
            out.parent.mkdir(parents=True, exist_ok=True)
            frames[0].save(out, save_all=True, append_images=frames[1:], loop=0,
                           duration=int(round(1000 / args.fps)), optimize=False)
        print(f"wrote {out}: {len(frames)} frames of {args.n} cell(s)")
        return 0

    seeds, labels, cols = sample_plan(cfg, args.cls, args.seed, args.n)
    images = synthesize(G, latents(seeds, cfg.z_dim), args.trunc, args.batch, device, labels)
    names = [""] * len(seeds) if labels is None else [f"-{cfg.classes[k]}" for k in labels.tolist()]
    if as_dir:
        with writing(out):
            out.mkdir(parents=True, exist_ok=True)
            for s, name, img in zip(seeds, names, images):
                grid_image(img[None], nrow=1).save(out / f"seed{s:06d}{name}.png")
        print(f"wrote {len(seeds)} images to {out}/")
    else:
        cols = cols or near_square(len(seeds))[0]
        with writing(out):
            out.parent.mkdir(parents=True, exist_ok=True)
            grid_image(images, nrow=cols).save(out)
        what = ("" if labels is None else f", one row per class ({', '.join(cfg.classes)})" if args.cls == "all"
                else f", class {cfg.classes[int(labels[0])]}" if args.cls is not None
                else f", classes in turn ({', '.join(cfg.classes)}; pick one with --class)")
        print(f"wrote {out}: {len(seeds)} samples, {cols} per row{what}")
    return 0


def interpolation_frames(G, cfg, args, device):
    """PIL frames: each cell lerps in w space through ``keyframes`` latents, looping."""
    import torch

    from vitgan.models.sampling import latents, sample_plan
    from vitgan.train.run_dir import grid_image, near_square

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
                img = torch.cat([G.synthesis(wb).float().cpu() for wb in wt.split(args.batch)])
                frames.append(grid_image(img, nrow=cols).convert("RGB"))
    return frames


__all__ = ["add_arguments", "run", "latents", "synthesize", "class_index", "sample_plan",
           "interpolation_frames"]
