"""FIR up- and down-sampling by 2 with StyleGAN2's [1, 3, 3, 1] filter.

The 2-D filter is the outer product of f = [1, 3, 3, 1] with itself, normalised to sum 1::

    K = f f^T / (sum f)^2                                      (4 x 4)
    upsample2d(x)[i, j]   = 4 * sum_{a,b} K[a, b] * u[i + a - 2, j + b - 2]
                            u = x with a zero inserted after every sample (u[2i, 2j] = x[i, j])
    downsample2d(x)[i, j] = sum_{a,b} K[a, b] * x[2i + a - 1, 2j + b - 1]
                            (out-of-range samples are zero)

The gain 4 of the up-sampling keeps the mean (three of every four samples of u are zero).
K is symmetric, so correlation and convolution agree. ``blur(x, pad)`` is the plain filter with
``pad`` zeros on every side, used before a strided 3x3 convolution in StyleGAN2's D.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fir_filter(taps=(1.0, 3.0, 3.0, 1.0), device=None) -> torch.Tensor:
    """K = f f^T / (sum f)^2 as a (kh, kw) float32 tensor."""
    f = torch.as_tensor(taps, dtype=torch.float32, device=device)
    return torch.outer(f, f) / f.sum() ** 2


def _depthwise(x: torch.Tensor, k: torch.Tensor, pad: tuple[int, int, int, int], stride: int = 1):
    """Every channel filtered by k (same filter per channel); pad = (left, right, top, bottom)."""
    c = x.shape[1]
    weight = k.to(x.dtype)[None, None].expand(c, 1, *k.shape)
    return F.conv2d(F.pad(x, pad), weight, stride=stride, groups=c)


def upsample2d(x: torch.Tensor, k: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 2H, 2W): zero insertion, then 4 * K (pads 2 before, 1 after).

    Computed as one transposed convolution (stride 2, padding 1), which skips the inserted
    zeros: y[o] = sum_i x[i] 4K[o + 1 - 2i] = sum_i x[i] 4K[2i + 2 - o] (K is symmetric)."""
    k = fir_filter(device=x.device) if k is None else k
    c = x.shape[1]
    weight = (k * 4).to(x.dtype)[None, None].expand(c, 1, *k.shape)
    return F.conv_transpose2d(x, weight, stride=2, padding=1, groups=c)


def downsample2d(x: torch.Tensor, k: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H/2, W/2): K with one zero of padding on each side, stride 2."""
    k = fir_filter(device=x.device) if k is None else k
    return _depthwise(x, k, (1, 1, 1, 1), stride=2)


def blur(x: torch.Tensor, pad: int, k: torch.Tensor | None = None) -> torch.Tensor:
    """K applied at stride 1 with ``pad`` zeros on every side: (H, W) -> (H + 2 pad - 3, ...)."""
    k = fir_filter(device=x.device) if k is None else k
    return _depthwise(x, k, (pad,) * 4)


__all__ = ["fir_filter", "upsample2d", "downsample2d", "blur"]
