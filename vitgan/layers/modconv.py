"""StyleGAN2's modulated convolution, noise inputs, synthesis layer and toRGB.

Modulated convolution (StyleGAN2, eq. 1-3), for image b with style s_b = A(w_b) (an equalised
affine map of w whose bias starts at 1) and the equalised weight W = W_stored / sqrt(C_in k^2)::

    W'_b[o, i, :, :] = W[o, i, :, :] * s_b[i]                           modulation
    W''_b[o]         = W'_b[o] / sqrt(sum_{i,kh,kw} W'_b[o, i, kh, kw]^2 + eps)   demodulation
    y_b              = W''_b * x_b                                      (a 2-D convolution)

Computed without building per-sample weights (exact, one ordinary batched convolution)::

    y_b = d_b * (W * (s_b x_b)),   d_b[o] = rsqrt(sum_i s_b[i]^2 sum_{kh,kw} W[o, i]^2 + eps)

(``d_b = 1`` without demodulation). ``up=True`` first up-samples x by 2 with the [1, 3, 3, 1]
filter (``vitgan.layers.fir``): StyleGAN2's transposed convolution followed by the filter is the
same linear map as filtering first, up to the image border.

Synthesis layer:  x <- sqrt(2) * leaky_relu(modconv(x, w) + strength * noise + b, 0.2), noise
(B, 1, H, W) ~ N(0, 1) per pixel and ``strength`` a learned scalar starting at 0.
toRGB:            rgb = modconv_1x1(x, w) + b, modulated but never demodulated, no activation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vitgan.layers.equalized import EqualizedLinear, effective_weight, make_conv2d
from vitgan.layers.fir import upsample2d

NOISE_MODES = ("random", "const", "none")


def resolve_noise_mode(noise_mode: str | None, training: bool) -> str:
    """None -> "random" in training mode, "const" in eval mode (the same image for the same w)."""
    mode = noise_mode or ("random" if training else "const")
    if mode not in NOISE_MODES:
        raise ValueError(f"noise_mode={mode!r}; choose one of {NOISE_MODES}")
    return mode


class ModulatedConv2d(nn.Module):
    """x (B, C_in, H, W), w (B, w_dim) -> (B, C_out, H', W'); H' = 2H with ``up``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, w_dim: int,
                 demodulate: bool = True, up: bool = False, eps: float = 1e-8):
        super().__init__()
        self.demodulate, self.up, self.eps = demodulate, up, eps
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)   # s = A(w), starts ~1
        # the shared weight (and the layer's bias), equalised: W = W_stored / sqrt(C_in k^2)
        self.conv = make_conv2d(in_channels, out_channels, kernel_size, equalized=True,
                                padding=kernel_size // 2)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s = self.affine(w)                                            # (B, C_in)
        weight = effective_weight(self.conv)                          # W (C_out, C_in, k, k)
        if self.up:
            x = upsample2d(x)
        y = F.conv2d(x * s[:, :, None, None].to(x.dtype), weight.to(x.dtype),
                     padding=self.conv.padding)                       # W * (s x)
        if self.demodulate:                                           # d[b, o]
            d = torch.rsqrt(s.float().square() @ weight.float().square().sum((2, 3)).T + self.eps)
            y = y * d[:, :, None, None].to(y.dtype)
        return y

    @property
    def bias(self) -> torch.Tensor:
        return self.conv.bias


class SynthesisLayer(nn.Module):
    """A modulated 3x3 conv + noise + bias + leaky ReLU (x sqrt 2); ``up`` doubles the size."""

    def __init__(self, in_channels: int, out_channels: int, *, w_dim: int, resolution: int,
                 up: bool = False):
        super().__init__()
        self.modconv = ModulatedConv2d(in_channels, out_channels, 3, w_dim=w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))  # noise_mode="const"

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        x = self.modconv(x, w)
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength.to(x.dtype)
        elif noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * self.noise_strength.to(x.dtype)
        x = x + self.modconv.bias.to(x.dtype)[None, :, None, None]
        return F.leaky_relu(x, 0.2) * math.sqrt(2)


class ToRGB(nn.Module):
    """x (B, C, H, W), w -> rgb (B, channels, H, W): modulated 1x1 conv, no demodulation."""

    def __init__(self, in_channels: int, channels: int, *, w_dim: int):
        super().__init__()
        self.modconv = ModulatedConv2d(in_channels, channels, 1, w_dim=w_dim, demodulate=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.modconv(x, w) + self.modconv.bias.to(x.dtype)[None, :, None, None]


__all__ = ["ModulatedConv2d", "SynthesisLayer", "ToRGB", "NOISE_MODES", "resolve_noise_mode"]
