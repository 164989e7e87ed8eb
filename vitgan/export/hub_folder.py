"""A Hugging Face Hub model folder of a trained run, written with the networks' ``save_pretrained``.

    <out>/config.json            the ModelConfig (+ vitgan_format, vitgan_role)   } the EMA generator,
    <out>/model.safetensors      the EMA generator's state dict                   } HubMixin.save_pretrained
    <out>/README.md              the model card: use, samples, metrics, training options
    <out>/samples.png            16 samples, seeds 0-15, truncation 1 (= `vitgan sample <out> --n 16`)
    <out>/training_options.json  the run's resolved options (when it has them)
    <out>/metrics.json           every metric row of the run (metric-<name>.jsonl), by metric
    <out>/export.json            where it came from: run, checkpoint file, its sha256, kimg
    <out>/discriminator/         with --what G,D: the discriminator's config.json, model.safetensors, card

``Generator.from_pretrained(out)`` and ``vitgan sample out`` read it; ``G.push_to_hub(repo_id)``
(the library's call) uploads the same files.
"""

from __future__ import annotations

import json
from pathlib import Path

from vitgan.files import atomic_write, atomic_write_text
from vitgan.grids import grid_image, near_square
from vitgan.runs.layout import D_FOLDER, EXPORT_FILE, METRICS_FILE, OPTIONS_FILE
from vitgan.runs.source import Source

SAMPLES_FILE = "samples.png"
SAMPLE_SEEDS = range(16)
ARCH_NAMES = {("generator", "vit"): "ViT-G", ("generator", "stylegan2"): "StyleGAN2 generator",
              ("discriminator", "vit"): "ViT-D", ("discriminator", "stylegan2"): "StyleGAN2 discriminator"}


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def metrics_table(metrics: dict[str, list]) -> str:
    """Markdown: the newest row of each metric (value keys, kimg, n, data)."""
    from vitgan.metrics.registry import METRICS

    lines = ["| metric | value | kimg | n | real data |", "|---|---|---|---|---|"]
    for name, rows in sorted(metrics.items()):
        row = rows[-1]
        keys = METRICS[name].keys if name in METRICS else [k for k in row if k == name or k.startswith(name + "_")]
        values = ", ".join(f"{k} {_fmt(row[k])}" for k in keys if row.get(k) is not None)
        if values:
            lines.append(f"| {name} | {values} | {_fmt(row.get('kimg'))} | {row.get('n')} | {row.get('data')} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def _params(module) -> str:
    return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f}M parameters"


def card_kwargs(src: Source, role: str, module) -> dict:
    """The model card's fields (vitgan.models.hub.CARD_TEMPLATE) for ``module`` of ``src``."""
    cfg, origin = src.cfg, src.origin
    arch = ARCH_NAMES[(role, cfg.g_arch if role == "generator" else cfg.d_arch)]
    options = src.options or {}
    data = (options.get("train") or {}).get("data") if isinstance(options.get("train"), dict) else None
    preset = f"`{options['preset']}` preset" if options.get("preset") else None
    kimg = origin.get("kimg")
    trained = f", trained for {kimg:g} kimg" if isinstance(kimg, (int, float)) else ""
    summary = (f"The {'EMA generator' if role == 'generator' else 'discriminator'} ({arch}, {_params(module)}, "
               f"{cfg.resolution}x{cfg.resolution}, {cfg.channels} channels) of a vitgan run"
               f"{f' ({preset})' if preset else ''}{trained}"
               f"{f' on {data}' if data else ''}, exported by `vitgan export` from {origin.get('weights', 'an export folder')}"
               f"{' (sha256 ' + origin['weights_sha256'][:12] + ')' if origin.get('weights_sha256') else ''}. "
               f"vitgan is a PyTorch implementation of ViTGAN (Lee et al., ICLR 2022, https://arxiv.org/abs/2107.04589).")
    if role == "generator":
        usage = ("import torch\nfrom vitgan import Generator\n\n"
                 "G = Generator.from_pretrained(\"THIS_FOLDER_OR_REPO_ID\")   # the architecture config.json names\n"
                 f"z = torch.randn(16, {cfg.z_dim})\n"
                 f"images = G(z, truncation_psi=1.0)   # (16, {cfg.channels}, {cfg.resolution}, {cfg.resolution}), not clamped\n"
                 "# or: vitgan sample THIS_FOLDER --n 16 --out grid.png")
    else:
        usage = ("from vitgan import Discriminator\n\n"
                 "D = Discriminator.from_pretrained(\"THIS_FOLDER/discriminator\")\n"
                 "logits = D(images)   # images (B, C, H, W) in [-1, 1] -> (B,)")
    out = dict(title=f"vitgan {arch}, {cfg.resolution}x{cfg.resolution}", summary=summary, usage=usage,
               architecture=json.dumps({"g_arch": cfg.g_arch, "d_arch": cfg.d_arch, "resolution": cfg.resolution,
                                        "channels": cfg.channels, "z_dim": cfg.z_dim, "parameters": _params(module)},
                                       indent=2),
               metrics_table=metrics_table(src.metrics),
               training_options=json.dumps(src.options, indent=2) if src.options else "")
    if role == "generator":
        out.update(sample_image=SAMPLES_FILE,
                   sample_note=f"{len(SAMPLE_SEEDS)} samples of the EMA generator, latents from seeds 0-"
                               f"{len(SAMPLE_SEEDS) - 1}, truncation 1: what `vitgan sample THIS_FOLDER --n "
                               f"{len(SAMPLE_SEEDS)} --out samples.png` draws.")
    return out


def write_samples(G, cfg, path: Path, device="cpu") -> None:
    from vitgan.models.sampling import latents, sample_plan, synthesize

    # a conditional G: classes in turn, as `vitgan sample THIS_FOLDER` draws them
    _, labels, _ = sample_plan(cfg, None, SAMPLE_SEEDS[0], len(SAMPLE_SEEDS))
    images = synthesize(G, latents(SAMPLE_SEEDS, cfg.z_dim), 1.0, 64, device, labels)
    cols, _ = near_square(len(SAMPLE_SEEDS))
    image = grid_image(images, nrow=cols)
    atomic_write(path, lambda f: image.save(f, format="PNG"))


def write_hub_folder(src: Source, folder: Path, *, what=("G",), device="cpu") -> list[Path]:
    """Write ``src``'s networks (``what``: "G" and/or "D") into ``folder`` (see the module);
    returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if "G" in what:
        write_samples(src.G, src.cfg, folder / SAMPLES_FILE, device)
        src.G.save_pretrained(folder, model_card_kwargs=card_kwargs(src, "generator", src.G))
    if "D" in what:
        src.D.save_pretrained(folder / D_FOLDER, model_card_kwargs=card_kwargs(src, "discriminator", src.D))
    if src.options:
        atomic_write_text(folder / OPTIONS_FILE, json.dumps(src.options, indent=2) + "\n")
    if src.metrics:
        atomic_write_text(folder / METRICS_FILE, json.dumps(src.metrics, indent=2) + "\n")
    import vitgan

    record = {k: v for k, v in src.origin.items() if v is not None}
    atomic_write_text(folder / EXPORT_FILE, json.dumps({**record, "what": list(what),
                                                        "vitgan_version": vitgan.__version__}, indent=2) + "\n")
    return sorted(p for p in folder.rglob("*") if p.is_file())


__all__ = ["write_hub_folder", "write_samples", "card_kwargs", "metrics_table", "SAMPLES_FILE", "SAMPLE_SEEDS"]
