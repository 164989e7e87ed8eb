"""Self-modulated LayerNorm (paper, section 2) and a plain LayerNorm with the same call signature.

    SLN(h, w) = gamma(w) * (h - mean(h)) / std(h) + beta(w)

Statistics over each token's features; [gamma, beta] = A w + b is a learned affine map of w, one
per SLN layer. At initialisation b = [1, 0] and A is small, so gamma ~ 1 and beta ~ 0 (SLN starts
close to LayerNorm) while w already changes the output and receives gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vitgan.layers.equalized import make_linear


class SLN(nn.Module):
    """h: (B, N, dim), w: (B, w_dim) -> (B, N, dim)."""

    def __init__(self, *, dim: int, w_dim: int, init_std: float, equalized: bool, eps: float = 1e-5,
                 unit_storage: bool = True):
        super().__init__()
        self.dim, self.eps = dim, eps
        # for w of unit RMS (the mapping network's output): gamma = 1 +- init_std, beta = 0 +- init_std.
        # unit_storage (equalised only): A stored N(0, 1), init_std in the run-time gain, so Adam's
        # relative step is that of every other equalised layer; else A stored at std init_std.
        unit = unit_storage and equalized and init_std > 0
        self.affine = make_linear(w_dim, 2 * dim, equalized=equalized, gain=init_std if unit else 1.0,
                                  init_std=None if unit else init_std / w_dim ** 0.5)
        with torch.no_grad():  # b = [1, 0] (stored / bias_gain, which is 1 here)
            self.affine.bias.copy_(torch.cat([torch.ones(dim), torch.zeros(dim)]))

    def forward(self, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.affine(w).unsqueeze(1).chunk(2, dim=-1)      # (B, 1, dim) each
        # gamma(w) * (h - mean) / std + beta(w)
        return torch.addcmul(beta, gamma, F.layer_norm(h, (self.dim,), eps=self.eps))


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm (with affine) taking an ignored ``w``, so blocks can swap it for SLN."""

    def forward(self, h: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(h)


__all__ = ["SLN", "LayerNorm"]
