"""The convolutional patch head of the authors' PyTorch port (mlpc-ucsd/ViTGAN, ``vit_generator.py``
with ``use_nerf_proj=False``, its default and its README's first hybrid: "Convolutional Network
for Patch Generation").

    x_g = the tokens y (B, L, D) laid out as a D-channel g x g feature map, g = H / P
    x_r = L(L_up(x_{r/2}, w), w)          r = 2g, 4g, ..., H   (StyleGAN2 synthesis layers)
    img = toRGB(x_H, w)                     one modulated 1x1 conv at the end (no skip images)

L is StyleGAN2's synthesis layer (modulated, demodulated 3x3 conv, per-pixel noise, bias, leaky
ReLU; ``vitgan.layers.modconv``), all modulated by the same w. Channels at resolution r are
``ModelConfig.conv_head_channels(r)`` = min(base // r, max) with ``conv_head_channel_base / _max``
(0: the StyleGAN2 ``sg2_channel_base / _max``); the port's ``cnn_channels`` are 384 up to 64 and
halve above (base 24576, max 384: the hybrid presets' values). Unlike the INR head, neighbouring
patches share pixels through the 3x3 convolutions, so the image has no patch grid by
construction, and it renders only at the training resolution. Our switch ``g_head=conv``.
"""

from __future__ import annotations

from typing import Callable

import torch
from einops import rearrange
from torch import nn

from vitgan.layers.modconv import SynthesisLayer, ToRGB


class ConvHead(nn.Module):
    """y (B, g*g, dim), w (B, w_dim) -> images (B, image_channels, resolution, resolution);
    resolution = g x a power of two (``ModelConfig.validate`` refuses other patch sizes)."""

    def __init__(self, *, dim: int, grid: int, resolution: int, w_dim: int, image_channels: int,
                 channels: Callable[[int], int]):
        super().__init__()
        self.grid = grid
        layers, c_in, r = [], dim, grid
        while r < resolution:
            r *= 2
            c = channels(r)
            layers += [SynthesisLayer(c_in, c, w_dim=w_dim, resolution=r, up=True),
                       SynthesisLayer(c, c, w_dim=w_dim, resolution=r)]
            c_in = c
        self.layers = nn.ModuleList(layers)
        self.torgb = ToRGB(c_in, image_channels, w_dim=w_dim)

    def forward(self, y: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        x = rearrange(y, "b (h v) d -> b d h v", h=self.grid)
        for layer in self.layers:
            x = layer(x, w, noise_mode)
        return self.torgb(x, w)


__all__ = ["ConvHead"]
