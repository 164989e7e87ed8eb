"""Pre-norm transformer block shared by ViT-G and ViT-D; the norm layers are arguments.

    h' = MSA(Norm_1(h, w)) + h
    h  = MLP(Norm_2(h', w)) + h'

A separate norm per sub-layer: SLN(., w) in the generator, LayerNorm (w ignored) in D and in
the generator's "tokens" ablation.

``norm_stream=True`` is the block of the authors' PyTorch port of the generator (mlpc-ucsd/ViTGAN,
``TransformerBlock``), where the norm's output replaces the residual stream:

    h~ = Norm_1(h, w);   h' = MSA(h~) + h~
    h'~ = Norm_2(h', w); h  = MLP(h'~) + h'~

so with SLN every block re-normalises the stream and scales / shifts it by gamma(w), beta(w).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from vitgan.layers.equalized import make_linear


class MLP(nn.Sequential):
    """Linear(dim -> hidden), GELU, Linear(hidden -> dim). No dropout."""

    def __init__(self, *, dim: int, hidden: int, equalized: bool):
        super().__init__(make_linear(dim, hidden, equalized=equalized), nn.GELU(),
                         make_linear(hidden, dim, equalized=equalized))


class Block(nn.Module):
    """``attention``'s and the MLP's Linear layers come initialised by their parametrisation
    (``vitgan.layers.equalized``: std 1/sqrt(fan_in) equalised, ViT's 0.02 plain)."""

    def __init__(self, *, dim: int, mlp_dim: int, attention: nn.Module,
                 norm: Callable[[], nn.Module], equalized: bool, norm_stream: bool = False):
        super().__init__()
        self.norm1, self.attn = norm(), attention
        self.norm2, self.mlp = norm(), MLP(dim=dim, hidden=mlp_dim, equalized=equalized)
        self.norm_stream = norm_stream

    def forward(self, h: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm_stream:                     # the authors' port: the stream is the norm's output
            h = self.norm1(h, w)
            h = self.attn(h) + h
            h = self.norm2(h, w)
            return self.mlp(h) + h
        h = self.attn(self.norm1(h, w)) + h      # h' = MSA(Norm(h, w)) + h
        return self.mlp(self.norm2(h, w)) + h    # h  = MLP(Norm(h', w)) + h'


__all__ = ["MLP", "Block"]
