"""Minibatch standard deviation (Karras et al. 2018; StyleGAN2's D epilogue).

The batch of N images is split into n = N / G groups of G images; image i belongs to group
i mod n (StyleGAN2-ADA's layout). For x (N, C, H, W), per group g::

    sigma_g  = mean_{c, h, w} sqrt( mean_{i in g} (x_i - mean_{j in g} x_j)^2 + 1e-8 )
    out_i    = concat(x_i, sigma_{g(i)} broadcast to (1, H, W))          -> (N, C + 1, H, W)

G = min(group_size, N), lowered to the largest divisor of N (StyleGAN2-ADA asserts that G divides
N instead). This mixes images across the batch: a D using it is ``cross_sample`` and must see
the real, fake and consistency-regularisation views in separate forwards
(train/loss.py).
"""

from __future__ import annotations

import torch
from torch import nn


def group_size(n: int, group: int) -> int:
    """min(group, n), lowered until it divides n."""
    g = max(1, min(group, n))
    while n % g:
        g -= 1
    return g


class MinibatchStd(nn.Module):
    def __init__(self, group_size: int = 4, eps: float = 1e-8):
        super().__init__()
        self.group, self.eps = group_size, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = group_size(n, self.group)
        y = x.float().reshape(g, n // g, c, h, w)                     # [member, group, ...]
        y = (y - y.mean(0)).square().mean(0)                          # variance within each group
        y = (y + self.eps).sqrt().mean((1, 2, 3))                     # sigma_g, (n // g,)
        y = y.repeat(g).reshape(n, 1, 1, 1).expand(n, 1, h, w)        # image i -> group i mod n/g
        return torch.cat([x, y.to(x.dtype)], dim=1)


__all__ = ["MinibatchStd", "group_size"]
