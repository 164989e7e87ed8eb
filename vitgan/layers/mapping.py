"""StyleGAN2 mapping network: w = MLP(normalise(z)) (paper, section 2).

Pixel norm of z, then ``layers`` fully connected layers with leaky ReLU(0.2) and equalised
learning rate: weights are stored as N(0, 1/lr_mult^2) and scaled at run time by
lr_mult / sqrt(fan_in) (biases by lr_mult), so Adam's effective step is lr * lr_mult.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vitgan.layers.equalized import EqualizedLinear


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) over the feature dimension."""
    return x * torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + eps)


class MappingLayer(EqualizedLinear):
    """y = sqrt(2) * leaky_relu((lr_mult / sqrt(in)) W x + lr_mult b, 0.2) (StyleGAN2's FC)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(super().forward(x), 0.2) * math.sqrt(2)  # sqrt(2): unit RMS kept


class MappingNetwork(nn.Module):
    """z: (B, z_dim) -> w: (B, w_dim)."""

    def __init__(self, *, z_dim: int, w_dim: int, layers: int = 8, lr_mult: float = 0.01):
        super().__init__()
        if layers == 0 and z_dim != w_dim:
            from vitgan.errors import OptionError
            raise OptionError(f"mapping_layers=0 needs z_dim == w_dim, got {z_dim} and {w_dim}")
        dims = [z_dim] + [w_dim] * layers
        self.layers = nn.Sequential(*[MappingLayer(i, o, lr_mult=lr_mult)
                                      for i, o in zip(dims[:-1], dims[1:])])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(pixel_norm(z))


__all__ = ["latents_for_synthesis", "pixel_norm", "MappingLayer", "MappingNetwork"]


def latents_for_synthesis(G: nn.Module, z: torch.Tensor, truncation_psi: float, update_w_avg: bool) -> torch.Tensor:
    """w = G.mapping(z), shared by every generator: in training mode (and ``update_w_avg``)
    w_avg <- beta * w_avg + (1 - beta) * mean(w); then truncation w <- w_avg + psi * (w - w_avg)."""
    w = G.mapping(z)
    if G.training and update_w_avg:
        with torch.no_grad():
            G.w_avg.lerp_(w.detach().mean(0).to(G.w_avg.dtype), 1 - G.w_avg_beta)
    if truncation_psi != 1:
        w = G.w_avg.to(w.dtype).lerp(w, truncation_psi)
    return w

