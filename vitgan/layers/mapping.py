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

from vitgan.layers.conditioning import ClassEmbedding, check_labels, update_class_means
from vitgan.layers.equalized import EqualizedLinear


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) over the feature dimension."""
    return x * torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + eps)


class MappingLayer(EqualizedLinear):
    """y = sqrt(2) * leaky_relu((lr_mult / sqrt(in)) W x + lr_mult b, 0.2) (StyleGAN2's FC)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(super().forward(x), 0.2) * math.sqrt(2)  # sqrt(2): unit RMS kept


class MappingNetwork(nn.Module):
    """z: (B, z_dim) [, c: (B,) class indices] -> w: (B, w_dim).

    ``num_classes`` > 0: StyleGAN2-ADA's conditional mapping, the MLP's input is
    cat[pixel_norm(z), pixel_norm(embed(c))] (``vitgan.layers.conditioning.ClassEmbedding``)."""

    def __init__(self, *, z_dim: int, w_dim: int, layers: int = 8, lr_mult: float = 0.01,
                 num_classes: int = 0):
        super().__init__()
        in_dim = z_dim + (w_dim if num_classes else 0)
        if layers == 0 and in_dim != w_dim:
            from vitgan.errors import OptionError
            raise OptionError(f"mapping_layers=0 needs z_dim == w_dim (and no classes), got {z_dim} and {w_dim}")
        self.embed = ClassEmbedding(num_classes, w_dim) if num_classes else None
        dims = [in_dim] + [w_dim] * layers
        self.layers = nn.Sequential(*[MappingLayer(i, o, lr_mult=lr_mult)
                                      for i, o in zip(dims[:-1], dims[1:])])

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = pixel_norm(z)
        if self.embed is not None:
            if c is None:
                raise ValueError("a class-conditional mapping network needs c, the class indices (B,)")
            x = torch.cat([x, self.embed(c).to(x.dtype)], dim=1)
        return self.layers(x)


__all__ = ["latents_for_synthesis", "w_avg_buffer", "pixel_norm", "MappingLayer", "MappingNetwork"]


def latents_for_synthesis(G: nn.Module, z: torch.Tensor, truncation_psi: float, update_w_avg: bool,
                          c: torch.Tensor | None = None) -> torch.Tensor:
    """w = G.mapping(z[, c]), shared by every generator: in training mode (and ``update_w_avg``)
    w_avg <- beta * w_avg + (1 - beta) * mean(w); then truncation w <- w_avg + psi * (w - w_avg).
    A conditional G (w_avg of shape (K, w_dim)) keeps and truncates toward each class's mean w."""
    check_labels(G, c, z.shape[0])
    w = G.mapping(z) if c is None else G.mapping(z, c)
    if G.training and update_w_avg:
        with torch.no_grad():
            if c is None:
                G.w_avg.lerp_(w.detach().mean(0).to(G.w_avg.dtype), 1 - G.w_avg_beta)
            else:
                update_class_means(G.w_avg, w, c, G.w_avg_beta)
    if truncation_psi != 1:
        centre = G.w_avg if c is None else G.w_avg[c]
        w = centre.to(w.dtype).lerp(w, truncation_psi)
    return w


def w_avg_buffer(cfg) -> torch.Tensor:
    """The truncation centre a generator of ``cfg`` keeps: (w_dim,), or (K, w_dim) per class."""
    return torch.zeros(cfg.num_classes, cfg.w_dim) if cfg.num_classes else torch.zeros(cfg.w_dim)
