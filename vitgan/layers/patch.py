"""The discriminator's patch embedding, with overlapping patches (paper, section 3).

Each P x P patch is extended by o = P/2 pixels on every side: a (P + 2o) x (P + 2o) window at
stride P, zero-padded by o so that there are still L = (H/P)^2 tokens. Each window is flattened
and linearly projected to D. A Conv2d with kernel P + 2o, stride P and padding o computes exactly
"unfold + Linear" (its weight, reshaped to (D, C(P+2o)^2), is the linear map, which is also the
matrix that weight normalisation sees). With ``overlap=False``: P x P windows at stride P.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from vitgan.layers.equalized import make_conv2d


class PatchEmbedding(nn.Module):
    """images (B, C, H, W) -> tokens (B, (H/P)^2, dim), row-major over the patch grid."""

    def __init__(self, *, channels: int, dim: int, patch_size: int, overlap: bool = True,
                 equalized: bool):
        super().__init__()
        assert not overlap or patch_size % 2 == 0, "overlapping patches need an even patch size"
        o = patch_size // 2 if overlap else 0
        self.window = patch_size + 2 * o
        self.proj = make_conv2d(channels, dim, self.window, stride=patch_size, padding=o,
                                equalized=equalized)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return rearrange(self.proj(images), "b d gh gw -> b (gh gw) d")


__all__ = ["PatchEmbedding"]
