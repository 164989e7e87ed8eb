"""Class conditioning, shared by both generators and both discriminators.

Labels ``c`` travel as int64 class indices (B,); the layers turn them into one-hot rows and embed
them with a bias-free Linear layer (an embedding matrix that weight normalisation and the
equalised parametrisation treat like any other Linear weight).

Generator (StyleGAN2-ADA's MappingNetwork)::

    x = cat[ norm2(z), norm2(E c) ]        E: Linear(K -> w_dim), norm2: 2nd-moment (pixel) norm
    w = MLP(x)                             so the class reaches every SLN / modulation through w

Discriminator, projection (Miyato & Koyama 2018, "cGANs with projection discriminator")::

    D(x, c) = psi(phi(x)) + < V c, phi(x) >     phi: D's final features (ViT-D: LN of the class
                                                token), psi: D's unconditional head, V: (dim, K)

Truncation toward the per-class mean w: a conditional G keeps ``w_avg`` of shape (K, w_dim), row
k the running mean of w over class k (``update_class_means``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vitgan.layers.equalized import EqualizedLinear, effective_weight, make_linear


def one_hot(c: torch.Tensor, num_classes: int, dtype=torch.float32) -> torch.Tensor:
    """int64 labels (B,) -> (B, K) one-hot rows (checked: a label outside [0, K) raises)."""
    if c.dtype not in (torch.int64, torch.int32) or c.ndim != 1:
        raise ValueError(f"class labels must be an integer tensor of shape (B,), got {c.dtype} {tuple(c.shape)}")
    return F.one_hot(c.long(), num_classes).to(dtype)


def check_labels(module: nn.Module, c: torch.Tensor | None, batch: int) -> None:
    """A conditional network needs labels, an unconditional one takes none (no silent defaults)."""
    k = module.cfg.num_classes
    if k and c is None:
        raise ValueError(f"{type(module).__name__} is class-conditional ({k} classes): pass c, "
                         "the class indices (B,)")
    if not k and c is not None:
        raise ValueError(f"{type(module).__name__} is unconditional: it takes no class labels")
    if c is not None and c.shape != (batch,):
        raise ValueError(f"class labels of shape {tuple(c.shape)} for a batch of {batch}")


class ClassEmbedding(nn.Module):
    """c (B,) -> norm2(E onehot(c)) (B, dim): the class half of a conditional mapping input.
    E is an equalised Linear (StyleGAN2-ADA's ``embed``), stored N(0, 1), lr multiplier 1."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.embed = EqualizedLinear(num_classes, dim)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        y = self.embed(one_hot(c, self.num_classes, self.embed.weight.dtype))
        return y * torch.rsqrt(y.square().mean(dim=-1, keepdim=True) + 1e-8)


class Projection(nn.Module):
    """The projection term < V onehot(c), phi > (B,). V is a bias-free Linear(K -> dim) whose
    effective entries start at std 1/sqrt(dim), so the term starts at about unit scale for unit-RMS
    features phi (like the unconditional head's logit); the discriminator weight-normalises it with
    its other layers (``apply_weight_norm``)."""

    def __init__(self, num_classes: int, dim: int, *, equalized: bool):
        super().__init__()
        self.num_classes = num_classes
        if equalized:  # stored N(0, 1), gain sqrt(K / dim) / sqrt(K) = 1 / sqrt(dim) at run time
            self.embed = make_linear(num_classes, dim, equalized=True, bias=False,
                                     gain=math.sqrt(num_classes / dim))
        else:
            self.embed = make_linear(num_classes, dim, equalized=False, bias=False,
                                     init_std=1.0 / math.sqrt(dim))

    def forward(self, features: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        e = self.embed(one_hot(c, self.num_classes, features.dtype))   # V c, (B, dim)
        return (e * features).sum(dim=-1)

    def matrix(self) -> torch.Tensor:
        """V (dim, K) as the forward uses it (after weight normalisation and the run-time gain)."""
        return effective_weight(self.embed)


@torch.no_grad()
def update_class_means(w_avg: torch.Tensor, w: torch.Tensor, c: torch.Tensor, beta: float) -> None:
    """w_avg[k] <- lerp(w_avg[k], mean of w over class k in this batch, 1 - beta), for the classes
    present (rows of absent classes unchanged); no host sync."""
    onehot = one_hot(c, w_avg.shape[0], w.dtype)                      # (B, K)
    counts = onehot.sum(0)                                            # (K,)
    means = (onehot.t() @ w.detach()) / counts.clamp_min(1)[:, None]  # (K, w_dim)
    moved = w_avg.lerp(means.to(w_avg.dtype), 1 - beta)
    w_avg.copy_(torch.where(counts[:, None] > 0, moved, w_avg))


__all__ = ["one_hot", "check_labels", "ClassEmbedding", "Projection", "update_class_means"]
