"""`vitgan inspect`: look inside a trained ViT GAN: where D and G attend, where D's score is sensitive.

    vitgan inspect R --out look/                           # 4 real images, 4 fakes (seeds 0-3)
    vitgan inspect hub-gd/ --out look/ --real 8 --fake 8 --token 27 --data ../shared/data/cifar10-yk-jpeg.tar.gz

For ``--real`` real images (drawn at random from the run's training data, or ``--data``, seeded by
``--seed``) and ``--fake`` fakes of the EMA generator (the latents of seeds S, S+1, ...: the
images ``vitgan sample --seed S`` draws), it writes into ``--out`` (a new or empty folder; written
beside it and renamed into place, as ``vitgan export`` does):

    d_attention.png   D's class-token attention over the patches, per block and head
    d_rollout.png     attention rollout of D's class token through block 1, ..., L
    g_attention.png   G's attention of token ``--token`` (default: the centre one) over its tokens
    d_saliency.png    |dD(x)/dx|, D's input-gradient saliency
    over_time/        a run folder's attention<nimg>.png (D's attention on one fixed real image
                      at every fakes grid), copied
    inspect.json      the numbers behind them (D's logits, gradient norms, self-attention shares)
    index.html        all of it side by side with the run's options, metrics and last diag/*

Attention comes from the layers' reference ``probabilities`` path on the inputs of one ordinary
forward (``vitgan.inspect.maps``), so the fused training path is untouched. A kind the networks
cannot give (no D in an export made without ``--what G,D``, StyleGAN2's G or D: no attention) is
left out and index.html says why; the real images are left out (with a note) when the run's data
cannot be opened and no ``--data`` is given.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from vitgan.errors import OptionError, UserError


def add_arguments(p) -> None:
    p.add_argument("run", metavar="RUN_OR_EXPORT",
                   help="a run folder, a .safetensors checkpoint or an export folder (with discriminator/ "
                        "from `vitgan export --what G,D` for D's views)")
    p.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder to write")
    p.add_argument("--real", type=int, default=4, metavar="N", help="real images to look at (default 4)")
    p.add_argument("--fake", type=int, default=4, metavar="N", help="fakes to look at (default 4)")
    p.add_argument("--seed", type=int, default=0, help="first fake's latent seed, and the draw of the reals")
    p.add_argument("--data", default=None, metavar="PATH",
                   help="where the real images come from (default: the run's training data)")
    p.add_argument("--split", default=None, help="split of --data (default: the run's, or train)")
    p.add_argument("--token", type=int, default=None, metavar="I",
                   help="G's token whose attention is drawn (row-major; default: the centre token)")
    p.add_argument("--truncation", "--trunc", dest="trunc", type=float, default=1.0, metavar="PSI",
                   help="truncation psi of the fakes (default 1: none)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def check_options(args) -> None:
    for name in ("real", "fake"):
        if not 0 <= getattr(args, name) <= 64:
            raise OptionError(f"--{name} must be between 0 and 64, got {getattr(args, name)}")
    if args.real + args.fake == 0:
        raise OptionError("--real 0 --fake 0 leaves nothing to look at")
    if not math.isfinite(args.trunc):
        raise OptionError(f"--truncation must be a finite number, got {args.trunc}")


def _reals(src, args, notes: list[str]):
    """(float images in [-1, 1] (N, C, H, W), labels or None, row names) or None."""
    import numpy as np
    import torch

    from vitgan.data import open_dataset

    train = (src.options or {}).get("train", {})
    data, split = args.data or train.get("data"), args.split or train.get("split") or "train"
    if not data:
        notes.append("real images left out: the source names no training data; give --data PATH")
        return None
    try:
        ds = open_dataset(data, resolution=src.cfg.resolution, channels=src.cfg.channels, split=split,
                          log=lambda m: None)
    except UserError as err:
        if args.data:
            raise
        notes.append(f"real images left out: the run's data {data} cannot be opened ({err}); give --data PATH")
        return None
    rng = np.random.default_rng(args.seed)
    idx = sorted(int(i) for i in rng.choice(len(ds), size=min(args.real, len(ds)), replace=False))
    x = torch.stack([torch.as_tensor(ds[i]) for i in idx]).float() / 127.5 - 1
    c = None if not src.cfg.classes else torch.as_tensor(ds.labels[idx])
    return x, c, [f"real #{i}" for i in idx]


def _fakes(src, args, device):
    import torch

    from vitgan.models.sampling import latents, sample_plan

    seeds, labels, _ = sample_plan(src.cfg, None, args.seed, args.fake)
    z = latents(seeds, src.cfg.z_dim).to(device)
    c = None if labels is None else labels.to(device)
    with torch.no_grad():
        w = src.G.mapping(z) if c is None else src.G.mapping(z, c)
        if args.trunc != 1:
            w = (src.G.w_avg if c is None else src.G.w_avg[c]).to(w.dtype).lerp(w, args.trunc)
        x = src.G.synthesis(w).float()
    return x, c, w, [f"seed {s}" for s in seeds]


def _cat(parts):
    import torch

    keep = [p for p in parts if p is not None]
    return torch.cat(keep) if keep else None


def draw_all(stage: Path, src, images, labels, names, fakes, token: int, notes: list[str]):
    """Write the grids into ``stage``; (sections for index.html, numbers for inspect.json)."""
    from vitgan.inspect import figures, maps
    from vitgan.models.sampling import to_uint8_hwc

    sections, numbers = [], {"images": names}
    D, G = src.D, src.G
    if images is not None and D is not None:
        rgb = to_uint8_hwc(images)
        ps = maps.d_maps(D, images, labels)
        if ps:
            rows, roll = maps.class_attention(ps).cpu().numpy(), maps.rollout(ps).cpu().numpy()
            figures.d_attention(rgb, names, rows).save(stage / "d_attention.png")
            figures.d_rollout(rgb, names, roll).save(stage / "d_rollout.png")
            numbers["d_class_self_attention"] = rows[..., 0].transpose(1, 0, 2).round(5).tolist()  # (B, blocks, heads)
            numbers["d_rollout_self"] = roll[..., 0].T.round(5).tolist()                          # (B, blocks)
            sections += [("D: class-token attention", "d_attention.png",
                          "Rows: images (reals, then fakes). Columns: block b, head h: the share of D's class "
                          "token's attention on each patch, one fixed colour scale for every cell; the bar: "
                          "its attention to itself."),
                         ("D: attention rollout", "d_rollout.png",
                          "The class token's attention rolled out through blocks 1..b (Abnar & Zuidema 2020: "
                          "mean over heads, plus the residual identity, multiplied block after block).")]
        else:
            notes.append(f"D's attention left out: d_arch={src.cfg.d_arch} has no attention layers")
        sal, norms, logits = maps.saliency(D, images, labels)
        figures.d_saliency(rgb, names, sal.cpu().numpy()).save(stage / "d_saliency.png")
        numbers["d_logit"] = logits.cpu().numpy().round(5).tolist()
        numbers["d_grad_norm"] = norms.cpu().numpy().round(5).tolist()
        sections.append(("D: input-gradient saliency", "d_saliency.png",
                         "|dD(x)/dx|, the largest over colour channels: where a change of the pixels moves D's "
                         "score most (each image on its own scale, up to its 99th percentile)."))
    elif D is None:
        notes.append("D's attention and saliency left out: this source holds no discriminator "
                     "(export it with `vitgan export --what G,D`)")
    if fakes is not None:
        x, _, w, fake_names = fakes
        rows = maps.token_attention(G, w, token)
        if rows.numel():
            figures.g_attention(to_uint8_hwc(x), fake_names, rows.cpu().numpy(), token).save(stage / "g_attention.png")
            numbers["g_token"] = token
            numbers["g_self_attention"] = rows[..., token].permute(1, 0, 2).cpu().numpy().round(5).tolist()
            sections.append((f"G: attention of token {token}", "g_attention.png",
                             f"Rows: fakes. Columns: block b, head h: the share of G's token {token} (outlined) "
                             "attention on each of G's tokens (each paints one patch); the bar: on itself."))
        else:
            notes.append(f"G's attention left out: g_arch={src.cfg.g_arch} has no attention layers")
    return sections, numbers


def _over_time(src, stage: Path) -> list[str]:
    """Copy a run folder's attention<nimg>.png into over_time/; their relative paths."""
    import shutil

    from vitgan.runs.layout import ATTENTION_PREFIX, is_run_folder

    run_dir = Path(src.origin.get("source", ""))
    if not is_run_folder(run_dir):
        return []
    found = sorted(p for p in run_dir.glob(f"{ATTENTION_PREFIX}*.png") if p.stem[len(ATTENTION_PREFIX):].isdigit())
    if found:
        (stage / "over_time").mkdir()
    for p in found:
        shutil.copyfile(p, stage / "over_time" / p.name)
    return [f"over_time/{p.name}" for p in found]


def _last_diag(src) -> dict:
    from vitgan.runs.layout import STATS_FILE, is_run_folder, read_jsonl

    run_dir = Path(src.origin.get("source", ""))
    rows = read_jsonl(run_dir / STATS_FILE) if is_run_folder(run_dir) else []
    if not rows:
        return {}
    return {"kimg": rows[-1].get("kimg"), **{k: v for k, v in rows[-1].items() if k.startswith("diag/")}}


def run(args) -> int:
    check_options(args)
    out = Path(args.out)
    from vitgan.commands.export import check_out, staged

    check_out(out)

    from vitgan.distributed import resolve_device
    from vitgan.inspect.page import write_index
    from vitgan.runs.source import open_run

    device = resolve_device(args.device)
    src = open_run(args.run, device=device, log=lambda m: None)
    cfg, notes = src.cfg, []
    grid = cfg.resolution // cfg.patch_size
    token = (grid // 2) * grid + grid // 2 if args.token is None else args.token
    if not 0 <= token < grid * grid:
        raise OptionError(f"--token {token}: G has {grid * grid} tokens (0-{grid * grid - 1}, row-major)")
    reals = _reals(src, args, notes) if (args.real and src.D is not None) else None
    fakes = _fakes(src, args, device) if (args.fake and src.G is not None) else None
    if src.G is None and args.fake:
        notes.append("fakes left out: this source holds no generator")
    images = _cat([None if reals is None else reals[0].to(device), None if fakes is None else fakes[0]])
    labels = None if not cfg.classes else _cat([None if reals is None else reals[1].to(device),
                                                None if fakes is None else fakes[1]])
    names = (reals[2] if reals else []) + (fakes[3] if fakes else [])
    with staged(out) as stage:
        sections, numbers = draw_all(stage, src, images, labels, names, fakes, token, notes)
        over_time = _over_time(src, stage)
        (stage / "inspect.json").write_text(json.dumps({"source": src.origin, "notes": notes, **numbers}, indent=1))
        title = f"vitgan inspect: {Path(args.run).name or args.run}"
        info = {**src.origin, "architecture": f"G {cfg.g_arch} ({cfg.g_head} head), D {cfg.d_arch}",
                "images": f"{cfg.resolution}x{cfg.resolution}, G {grid}x{grid} tokens",
                "fakes": f"seeds {args.seed}..{args.seed + args.fake - 1}, truncation {args.trunc:g}"}
        write_index(stage, title=title, source=info, sections=sections, over_time=over_time, notes=notes,
                    options=src.options, metrics=src.metrics, diag=_last_diag(src))
    for n in notes:
        print(f"note: {n}")
    files = [f for _, f, _ in sections] + (["over_time/"] if over_time else [])
    print(f"wrote {out}/: {', '.join(files + ['inspect.json', 'index.html'])}")
    return 0


__all__ = ["add_arguments", "run", "draw_all"]
