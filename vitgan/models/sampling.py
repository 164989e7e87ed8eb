"""Seeded latents and batched no-grad sampling: the one definition `vitgan sample`, the export's
sample grid and its ONNX check share, so "sample i of seed S" is the same image everywhere."""

from __future__ import annotations

import torch

from vitgan.errors import OptionError


def latents(seeds, z_dim: int) -> torch.Tensor:
    """(len(seeds), z_dim): latent i drawn from ``torch.Generator().manual_seed(seeds[i])``."""
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


def synthesize(G, z, trunc: float, batch: int, device, c=None) -> torch.Tensor:
    """EMA generator, no grad, in batches: w = mapping(z[, c]), truncated, synthesis(w); float32 on
    the CPU. ``c``: (B,) class indices for a class-conditional G (None otherwise)."""
    out = []
    with torch.no_grad():
        for i, zb in enumerate(z.split(batch)):
            kw = {} if c is None else {"c": c[i * batch:(i + 1) * batch].to(device)}
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


def sample_plan(cfg, cls: str | None, seed: int, n: int):
    """(seeds, labels or None, columns) of the images to draw: ``--class all`` is one row per class
    with the same seeds in each row; a class, every sample of it; None, class i mod K."""
    classes = list(cfg.classes)
    if not classes:
        if cls is not None:
            raise OptionError("--class: this run is not class-conditional (train with --set cond=true)")
        return list(range(seed, seed + n)), None, None
    if cls == "all":
        seeds = list(range(seed, seed + n)) * len(classes)
        return seeds, torch.arange(len(classes)).repeat_interleave(n), n
    seeds = list(range(seed, seed + n))
    if cls is None:
        return seeds, torch.arange(n) % len(classes), None
    return seeds, torch.full((n,), class_index(classes, cls), dtype=torch.long), None


__all__ = ["latents", "synthesize", "class_index", "sample_plan"]
