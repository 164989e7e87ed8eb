"""The generator's output head: an implicit neural representation that paints each patch.

    E_fou(x, y) = sin(Linear(x, y))                     pixel coordinates of a P x P patch in [-1, 1]
    patch_i     = f_{theta, y_i}(E_fou)                 a 2-layer MLP shared by all patches,
                                                        weight-modulated by the patch's token y_i
Layer 1 (fourier_dim -> hidden) is modulated, and demodulated when ``demodulate``; layer 2
(hidden -> C) is modulated, never demodulated (StyleGAN2's ToRGB). Patches are tiled without
overlap into the image. ``LinearHead`` is the ablation: a linear map token -> P*P*C pixels.

Resolution-free rendering (``INRHead.forward(y, coords=...)``, ``render_coords(p)``): the head is
a function of continuous in-patch coordinates, so evaluating it at the cell centres of a finer
P' x P' grid over the same [-1, 1]^2 square renders every patch with P' x P' pixels (P' = 2P:
the image at 2x) from the same tokens, without retraining. Patch borders: every patch is still
evaluated only inside its own square and the patches are tiled edge to edge, exactly as at 1x;
nothing is blended or extrapolated across a border, so a seam between two patches (if the 1x
image has one) stays where it is, at the same place, only drawn with more pixels. ``coords=None``
is the training grid itself (the 1x image, bit for bit).

Fast path (``fused=True``): with style s (B, L, F) and shared weight W (H, F),
    (W * s) x = W (s * x)                     modulate the input features, then ONE matmul over
                                              all B*L*P*P pixels with the shared weight
    demod_o  = rsqrt(sum_f W_of^2 s_f^2 + eps) = rsqrt(s^2 @ (W^2)^T + eps)
The reference path builds every patch's modulated weight explicitly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vitgan.layers.equalized import make_linear


def grid_centres(n: int) -> torch.Tensor:
    """(n*n, 2) (x, y) centres of an n x n grid of cells spanning [-1, 1]^2, row-major."""
    c = (2 * torch.arange(n, dtype=torch.float32) + 1) / n - 1
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([xx, yy], dim=-1).reshape(n * n, 2)


def render_coords(pixels: int) -> torch.Tensor:
    """In-patch coordinates for a patch drawn with ``pixels`` x ``pixels`` pixels: the centres of
    that grid of cells over the patch's [-1, 1]^2 square (``grid_centres``); ``pixels = P`` is the
    training grid, ``s * P`` the same patch at s x its resolution."""
    if pixels < 1:
        raise ValueError(f"a patch needs at least 1 pixel per side, got {pixels}")
    return grid_centres(pixels)


def tile_patches(patches: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, L, P*P, C) patches, token i = row-major grid cell i -> (B, C, grid*P, grid*P) image."""
    p = math.isqrt(patches.shape[2])
    return rearrange(patches, "b (gh gw) (p1 p2) c -> b c (gh p1) (gw p2)", gh=grid, gw=grid, p1=p, p2=p)


class SineEmbedding(nn.Module):
    """E(p) = sin(Linear(p)) for 2-D coordinates p; CIPS's learned Fourier-feature init.

    Never equalised: the weights ARE the frequencies (uniform in +-sqrt(9/2) = +-2.1), already
    of unit scale, so Adam's relative step is what equalisation would give (equalising would
    only divide the stored values by sqrt(2)); keeping a plain Linear keeps the frequencies
    readable in the state dict."""

    def __init__(self, *, out_dim: int, in_dim: int = 2):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        bound = math.sqrt(9 / in_dim)  # CIPS (Anokhin et al. 2021), first layer
        nn.init.uniform_(self.linear.weight, -bound, bound)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.linear(coords))


def modulated_mlp_fused(x, s1, w1, b1, s2, w2, b2, *, demodulate: bool, eps: float = 1e-8):
    """x (P2, F) shared features; s1 (B, L, F), s2 (B, L, H) styles; w1 (H, F), w2 (C, H)."""
    h = (x * s1.unsqueeze(2)) @ w1.t()                                   # W (s * x): (B, L, P2, H)
    # The hidden activations are the largest tensors of G (B*L*P2*H): touch them as few times as
    # possible. Demodulation and bias in one addcmul; the activation's sqrt(2) gain is folded into
    # the (tiny) modulated second-layer weight, since leaky_relu(x) * g = leaky_relu(x) and then
    # the layer is linear.
    if demodulate:
        demod = torch.rsqrt(s1.square() @ w1.square().t() + eps)         # rsqrt(s^2 @ (W^2)^T)
        h = torch.addcmul(b1.to(h.dtype), h, demod.unsqueeze(2).to(h.dtype))
    else:
        h = h + b1.to(h.dtype)
    h = F.leaky_relu(h, 0.2)
    w2_mod = w2 * (s2 * math.sqrt(2)).unsqueeze(2)                       # (B, L, C, H), tiny
    return h @ w2_mod.transpose(-1, -2).to(h.dtype) + b2                 # (B, L, P2, C)


def modulated_mlp_reference(x, s1, w1, b1, s2, w2, b2, *, demodulate: bool, eps: float = 1e-8):
    """The same function with an explicit modulated weight per patch."""
    w1_mod = w1 * s1.unsqueeze(2)                                        # (B, L, H, F)
    if demodulate:
        w1_mod = w1_mod * torch.rsqrt(w1_mod.square().sum(-1, keepdim=True) + eps)
    h = torch.einsum("pf,blhf->blph", x, w1_mod)
    h = F.leaky_relu(h + b1, 0.2) * math.sqrt(2)
    w2_mod = w2 * s2.unsqueeze(2)                                        # (B, L, C, H)
    return torch.einsum("blph,blch->blpc", h, w2_mod) + b2


class ModulatedMLP(nn.Module):
    """features (P2, F), tokens (B, L, D) -> per-patch outputs (B, L, P2, out_dim)."""

    def __init__(self, *, style_dim: int, in_dim: int, hidden: int, out_dim: int,
                 demodulate: bool = True, fused: bool = True, equalized: bool):
        super().__init__()
        self.demodulate, self.fused = demodulate, fused
        # style affines (StyleGAN2): s = A y + 1, A initialised at std 1/sqrt(style_dim)
        affine = lambda n: make_linear(style_dim, n, equalized=equalized,  # noqa: E731
                                       init_std=1 / math.sqrt(style_dim), bias_init=1.0)
        self.affine1, self.affine2 = affine(in_dim), affine(hidden)
        # shared weights, equalised: stored N(0, 1), scaled by 1/sqrt(fan_in) at run time
        self.weight1 = nn.Parameter(torch.randn(hidden, in_dim))
        self.bias1 = nn.Parameter(torch.zeros(hidden))
        self.weight2 = nn.Parameter(torch.randn(out_dim, hidden))
        self.bias2 = nn.Parameter(torch.zeros(out_dim))

    def forward(self, features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        w1 = self.weight1 / math.sqrt(self.weight1.shape[1])
        w2 = self.weight2 / math.sqrt(self.weight2.shape[1])
        mlp = modulated_mlp_fused if self.fused else modulated_mlp_reference
        return mlp(features, self.affine1(tokens), w1, self.bias1, self.affine2(tokens), w2,
                   self.bias2, demodulate=self.demodulate)


class INRHead(nn.Module):
    """Output tokens y (B, L, D) -> image (B, C, H, W): each token paints its P x P patch."""

    def __init__(self, *, dim: int, patch_size: int, grid: int, channels: int, fourier_dim: int,
                 hidden: int, demodulate: bool = True, fused: bool = True, equalized: bool):
        super().__init__()
        self.grid = grid
        self.register_buffer("coords", grid_centres(patch_size), persistent=False)  # (P*P, 2)
        self.fourier = SineEmbedding(out_dim=fourier_dim)
        self.mlp = ModulatedMLP(style_dim=dim, in_dim=fourier_dim, hidden=hidden, out_dim=channels,
                                demodulate=demodulate, fused=fused, equalized=equalized)

    def forward(self, y: torch.Tensor, coords: torch.Tensor | None = None) -> torch.Tensor:
        """``coords``: (P'*P', 2) in-patch pixel coordinates (``render_coords(P')``) to paint each
        patch at P' x P' pixels; None: the training grid (P x P)."""
        coords = self.coords if coords is None else coords.to(self.coords)
        e_fou = self.fourier(coords)                                     # same for every patch
        return tile_patches(self.mlp(e_fou, y), self.grid)


class LinearHead(nn.Module):
    """Ablation: token -> Linear -> P*P*C pixel values, tiled."""

    def __init__(self, *, dim: int, patch_size: int, grid: int, channels: int, equalized: bool):
        super().__init__()
        self.grid, self.channels = grid, channels
        self.linear = make_linear(dim, patch_size * patch_size * channels, equalized=equalized)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        patches = rearrange(self.linear(y), "b l (p2 c) -> b l p2 c", c=self.channels)
        return tile_patches(patches, self.grid)


__all__ = ["grid_centres", "render_coords", "tile_patches", "SineEmbedding", "ModulatedMLP", "INRHead", "LinearHead",
           "modulated_mlp_fused", "modulated_mlp_reference"]
