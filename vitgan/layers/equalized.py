"""Equalised learning rate (StyleGAN / StyleGAN2; ViTGAN's implementation details).

A layer's weight is STORED at unit scale and multiplied by a constant gain at run time::

    W_eff = g * W,   g = lr_mult / sqrt(fan_in),   W ~ N(0, (init_std / g)^2) stored
    b_eff = lr_mult * b                               (b stored as bias_init / lr_mult)

With the default ``init_std = 1 / sqrt(fan_in)`` the stored weight is N(0, 1 / lr_mult^2), as in
StyleGAN2 and the official ViTGAN code (which wraps every spectral-normalised layer around such
an ``EqualLinear``). The function at initialisation is that of a layer initialised with std
``init_std``; what changes is the optimiser's step: Adam moves every stored weight by about
``lr`` per step, so the relative change of a weight is ``lr * lr_mult / |W_eff| * g`` and is the
same for every layer whatever its fan-in, instead of ``lr / 0.02`` for a ViT layer initialised
at std 0.02 (at the paper's lr 0.002, a 10 % change per step).

Weight normalisation (``vitgan.layers.isn``) is registered on the STORED weight: its power
iteration runs on the stored matrix and ISN's sigma(W_init) is the stored initial matrix's, so
an ISN layer's effective spectral norm is g * sigma(W_init) ~ 1 + sqrt(out / in), as in the
official code.

``make_linear`` / ``make_conv2d`` build either an equalised layer or, with ``equalized=False``,
the plain layer this project used before (``nn.Linear`` with ViT's truncated-normal std 0.02,
or PyTorch's default conv init), so the two parametrisations can be compared
(``ModelConfig.equalized_lr``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

VIT_STD = 0.02  # timm / ViT initialisation of Linear weights (the plain parametrisation)


class EqualizedLinear(nn.Linear):
    """y = x (g W)^T + lr_mult * b with g = gain * lr_mult / sqrt(in_features); W stored at unit
    scale. ``gain`` (default 1) scales the layer's function without changing Adam's relative step
    (used for the tied W_qk of L2 attention, ``vitgan.layers.attention``)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 lr_mult: float = 1.0, init_std: float | None = None, bias_init: float = 0.0,
                 gain: float = 1.0):
        super().__init__(in_features, out_features, bias=bias)
        self.weight_gain = gain * lr_mult / math.sqrt(in_features)
        self.bias_gain = lr_mult
        std = gain / math.sqrt(in_features) if init_std is None else init_std
        with torch.no_grad():
            self.weight.normal_(0.0, std / self.weight_gain)
            if self.bias is not None:
                self.bias.fill_(bias_init / lr_mult)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias * self.bias_gain if self.bias is not None else None
        return F.linear(x, self.weight * self.weight_gain, b)


class EqualizedConv2d(nn.Conv2d):
    """Conv2d with W_eff = W / sqrt(fan_in), fan_in = in_channels / groups * k_h * k_w."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 init_std: float | None = None, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, **kwargs)
        fan_in = self.weight[0].numel()
        self.weight_gain = 1.0 / math.sqrt(fan_in)
        self.bias_gain = 1.0
        std = self.weight_gain if init_std is None else init_std
        with torch.no_grad():
            self.weight.normal_(0.0, std / self.weight_gain)
            if self.bias is not None:
                self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.weight_gain, self.bias)


def make_linear(in_dim: int, out_dim: int, *, equalized: bool, bias: bool = True,
                init_std: float | None = None, bias_init: float = 0.0, gain: float = 1.0) -> nn.Linear:
    """A Linear layer in either parametrisation. ``init_std``: the effective weight's std at
    initialisation; None = the parametrisation's default (gain/sqrt(fan_in) equalised,
    trunc-normal 0.02 plain). ``gain`` applies to the equalised parametrisation only (the plain
    one stays this project's first parametrisation, for comparison)."""
    if equalized:
        return EqualizedLinear(in_dim, out_dim, bias, init_std=init_std, bias_init=bias_init, gain=gain)
    layer = nn.Linear(in_dim, out_dim, bias=bias)
    with torch.no_grad():
        if init_std is None:
            nn.init.trunc_normal_(layer.weight, std=VIT_STD)
        else:
            layer.weight.normal_(0.0, init_std)
        if bias:
            layer.bias.fill_(bias_init)
    return layer


def make_conv2d(in_channels: int, out_channels: int, kernel_size: int, *, equalized: bool,
                **kwargs) -> nn.Conv2d:
    """A Conv2d in either parametrisation (plain: PyTorch's default initialisation)."""
    cls = EqualizedConv2d if equalized else nn.Conv2d
    return cls(in_channels, out_channels, kernel_size, **kwargs)


def weight_gain(layer: nn.Module) -> float:
    """g: the run-time factor between the stored and the effective weight (1 for plain layers)."""
    return float(getattr(layer, "weight_gain", 1.0))


def effective_weight(layer: nn.Module) -> torch.Tensor:
    """The weight the layer multiplies by (after weight normalisation and the run-time gain)."""
    return layer.weight * weight_gain(layer)


__all__ = ["EqualizedLinear", "EqualizedConv2d", "make_linear", "make_conv2d", "weight_gain",
           "effective_weight", "VIT_STD"]
