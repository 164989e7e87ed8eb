"""Pre-norm transformer block shared by ViT-G and ViT-D; the norm layers are arguments.

    h' = MSA(Norm_1(h, w)) + h
    h  = MLP(Norm_2(h', w)) + h'

A separate norm per sub-layer: SLN(., w) in the generator, LayerNorm (w ignored) in D and in
the generator's "tokens" ablation.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class MLP(nn.Sequential):
    """Linear(dim -> hidden), GELU, Linear(hidden -> dim). No dropout."""

    def __init__(self, *, dim: int, hidden: int):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class Block(nn.Module):
    def __init__(self, *, dim: int, mlp_dim: int, attention: nn.Module,
                 norm: Callable[[], nn.Module]):
        super().__init__()
        self.norm1, self.attn = norm(), attention
        self.norm2, self.mlp = norm(), MLP(dim=dim, hidden=mlp_dim)
        init_vit_(self.attn)
        init_vit_(self.mlp)

    def forward(self, h: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        h = self.attn(self.norm1(h, w)) + h      # h' = MSA(Norm(h, w)) + h
        return self.mlp(self.norm2(h, w)) + h    # h  = MLP(Norm(h', w)) + h'


def init_vit_(module: nn.Module, std: float = 0.02) -> None:
    """ViT initialisation (timm): Linear weights ~ trunc N(0, std^2), biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


__all__ = ["MLP", "Block", "init_vit_"]
