"""Seeded latents and batched no-grad sampling: the one definition `vitgan sample`, the export's
sample grid and its ONNX check share, so "sample i of seed S" is the same image everywhere."""

from __future__ import annotations

import numpy as np
import torch

from vitgan.cores import sharing_cores
from vitgan.errors import OptionError


def latents(seeds, z_dim: int) -> torch.Tensor:
    """(len(seeds), z_dim): latent i drawn from ``torch.Generator().manual_seed(seeds[i])``."""
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


def scale_kwargs(scale: float) -> dict:
    """The keyword a generator call gets for ``scale``: none at 1 (every generator's own path,
    StyleGAN2's too), ``scale=s`` otherwise (ViT-G's INR head; ``check_render_scale``)."""
    return {} if scale == 1 else {"scale": scale}


def synthesize(G, z, trunc: float, batch: int, device, c=None, scale: float = 1) -> torch.Tensor:
    """EMA generator, no grad, in batches: w = mapping(z[, c]), truncated, synthesis(w); float32 on
    the CPU. ``c``: (B,) class indices for a class-conditional G (None otherwise); ``scale``: render
    at s x the resolution (ViT-G with the INR head)."""
    out = []
    with torch.no_grad():
        for i, zb in enumerate(z.split(batch)):
            kw = scale_kwargs(scale) if c is None else {"c": c[i * batch:(i + 1) * batch].to(device),
                                                        **scale_kwargs(scale)}
            out.append(G(zb.to(device), truncation_psi=trunc, **kw).float().cpu())
    return torch.cat(out)


def class_index(classes: list[str], text: str) -> int:
    """A class given by name (exact) or index -> its index, or OptionError naming the choices."""
    if text in classes:
        return classes.index(text)
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(classes):
        return int(text)
    raise OptionError(f"--class {text!r} is not a class of this run; choose a name or an index "
                      f"0-{len(classes) - 1}: {', '.join(classes)} (or 'all')")


def plan_size(cfg, cls: str | None, n: int) -> int:
    """How many images ``sample_plan(cfg, cls, seed, n)`` draws: n, or n per class with ``all``."""
    return n * len(cfg.classes) if cls == "all" and cfg.classes else n


def plan_slice(cfg, cls: str | None, seed: int, n: int, start: int, stop: int):
    """(seeds, labels or None) of images ``start:stop`` of the plan (see ``sample_plan``), made
    without the rest: ``vitgan sample --n 100000000`` holds one batch at a time."""
    classes = list(cfg.classes)
    if not classes:
        if cls is not None:
            raise OptionError("--class: this run is not class-conditional (train with --set cond=true)")
        return list(range(seed + start, seed + stop)), None
    i = torch.arange(start, stop)
    if cls == "all":
        return (seed + i % n).tolist(), i // n
    if cls is None:
        return (seed + i).tolist(), i % len(classes)
    return (seed + i).tolist(), torch.full((stop - start,), class_index(classes, cls), dtype=torch.long)


def sample_plan(cfg, cls: str | None, seed: int, n: int):
    """(seeds, labels or None, columns) of the images to draw: ``--class all`` is one row per class
    with the same seeds in each row; a class, every sample of it; None, class i mod K."""
    seeds, labels = plan_slice(cfg, cls, seed, n, 0, plan_size(cfg, cls, n))
    return seeds, labels, (n if cls == "all" and cfg.classes else None)


def to_uint8_hwc(images: torch.Tensor) -> np.ndarray:
    """Generator output (N, C, H, W), not bounded, -> uint8 (N, H, W, C): clamped to [-1, 1],
    then (x + 1) * 127.5 rounded (the conversion of every sample grid)."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def sample_batches(G, cfg, *, cls: str | None, seed: int, n: int, trunc: float, batch: int, device,
                   scale: float = 1):
    """Yield (seeds, labels or None, uint8 (B, H, W, C)) of the plan in batches of ``batch``:
    latents, generation and conversion one batch at a time, so memory does not grow with n."""
    total = plan_size(cfg, cls, n)
    with sharing_cores(device) as share:  # CPU: threads = the cores other processes leave free
        for start in range(0, total, batch):
            seeds, labels = plan_slice(cfg, cls, seed, n, start, min(start + batch, total))
            x = synthesize(G, latents(seeds, cfg.z_dim), trunc, batch, device, labels, scale)
            yield seeds, labels, to_uint8_hwc(x)
            if share is not None:
                share.poll()


__all__ = ["latents", "scale_kwargs", "synthesize", "class_index", "sample_plan", "plan_size", "plan_slice",
           "to_uint8_hwc", "sample_batches"]
