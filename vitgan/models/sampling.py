"""Seeded latents and batched no-grad sampling: the one definition `vitgan sample`, the export's
sample grid and its ONNX check share, so "sample i of seed S" is the same image everywhere."""

from __future__ import annotations

import torch


def latents(seeds, z_dim: int) -> torch.Tensor:
    """(len(seeds), z_dim): latent i drawn from ``torch.Generator().manual_seed(seeds[i])``."""
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


def synthesize(G, z, trunc: float, batch: int, device) -> torch.Tensor:
    """EMA generator, no grad, in batches: w = mapping(z), truncated, synthesis(w); float32 on the CPU."""
    out = []
    with torch.no_grad():
        for zb in z.split(batch):
            out.append(G(zb.to(device), truncation_psi=trunc).float().cpu())
    return torch.cat(out)


__all__ = ["latents", "synthesize"]
