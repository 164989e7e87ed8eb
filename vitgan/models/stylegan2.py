"""StyleGAN2's generator and discriminator (Karras et al. 2020), the paper's convolutional
baselines and the halves of its hybrids. Sizes follow StyleGAN2-ADA's ``cifar`` config by
default (``ModelConfig.sg2_*``); every layer is equalised (StyleGAN2's definition, whatever
``cfg.equalized_lr`` says, which applies to the ViTs).

Generator ("skip" architecture), one w for every layer (no style mixing, as ADA's cifar config)::

    w        = MLP(normalise(z))                                  the project's mapping network
    x_4      = const (C_4, 4, 4);  x_4 = L(x_4, w);  img_4 = toRGB_4(x_4, w)
    x_r      = L(L_up(x_{r/2}, w), w)                             r = 8, 16, ..., resolution
    img_r    = up(img_{r/2}) + toRGB_r(x_r, w)                    up: [1, 3, 3, 1] FIR
    images   = img_resolution

L is a synthesis layer (modulated 3x3 conv, noise, bias, leaky ReLU; ``vitgan.layers.modconv``).

Discriminator ("resnet" architecture; ``sg2_d_residual=False`` is ADA's "orig")::

    x        = fromRGB(images)                                    1x1 conv + leaky ReLU
    x_{r/2}  = sqrt(1/2) (conv_down(conv(x_r)) + skip_down(x_r))  r = resolution, ..., 8
    D(x)     = FC_out(FC(conv(mbstd(x_4))))                       epilogue at 4x4
    D(x, c)  = D(x) + <V c, FC(conv(mbstd(x_4)))>                 class-conditional (projection)

Channels at resolution r: C_r = min(sg2_channel_base // r, sg2_channel_max). ``mbstd`` mixes
images of a batch, so the D has ``cross_sample = True`` (see ``vitgan.models``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vitgan.config import ModelConfig
from vitgan.layers.equalized import EqualizedLinear, effective_weight, make_conv2d
from vitgan.layers.fir import blur, downsample2d, upsample2d
from vitgan.layers.conditioning import Projection, check_labels
from vitgan.layers.mapping import MappingNetwork, latents_for_synthesis, w_avg_buffer
from vitgan.layers.mbstd import MinibatchStd
from vitgan.layers.modconv import SynthesisLayer, ToRGB, resolve_noise_mode
from vitgan.models.hub import HubMixin


def _resolutions(cfg: ModelConfig) -> list[int]:
    """4, 8, ..., cfg.resolution."""
    return [2 ** i for i in range(2, int(math.log2(cfg.resolution)) + 1)]


# ================================================================================ generator
class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: (x_{r/2}, img_{r/2}) -> (x_r, img_r)."""

    def __init__(self, in_channels: int, out_channels: int, *, resolution: int, w_dim: int,
                 image_channels: int):
        super().__init__()
        first = resolution == 4
        self.const = nn.Parameter(torch.randn(out_channels, 4, 4)) if first else None
        self.conv0 = None if first else SynthesisLayer(in_channels, out_channels, w_dim=w_dim,
                                                       resolution=resolution, up=True)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution)
        self.torgb = ToRGB(out_channels, image_channels, w_dim=w_dim)

    def forward(self, x, img, w, noise_mode: str):
        if self.const is not None:
            x = self.const.to(w.dtype)[None].repeat(w.shape[0], 1, 1, 1)  # (not a view of the leaf)
        else:
            x = self.conv0(x, w, noise_mode)
        x = self.conv1(x, w, noise_mode)
        y = self.torgb(x, w)
        img = y if img is None else upsample2d(img).to(y.dtype) + y  # img_r = up(img_{r/2}) + toRGB
        return x, img


class StyleGAN2Generator(nn.Module, HubMixin):
    """z (B, z_dim) -> images (B, C, H, W), roughly in [-1, 1]; the ViT Generator's interface.

    ``noise_mode``: "random" (fresh per-pixel noise), "const" (each layer's stored noise
    buffer: the same image for the same z) or "none"; None = "random" in training mode,
    "const" in eval mode (so sampling, evaluation and a rebuilt checkpoint are deterministic)."""

    def __init__(self, cfg: ModelConfig, *, w_avg_beta: float = 0.995):
        super().__init__()
        self.cfg, self.w_avg_beta = cfg, w_avg_beta
        self.mapping = MappingNetwork(z_dim=cfg.z_dim, w_dim=cfg.w_dim, layers=cfg.mapping_layers,
                                      lr_mult=cfg.mapping_lr_mult, num_classes=cfg.num_classes)
        self.register_buffer("w_avg", w_avg_buffer(cfg))   # for truncation (per class if conditional)
        self.blocks = nn.ModuleList(
            SynthesisBlock(cfg.sg2_channels(max(r // 2, 4)), cfg.sg2_channels(r), resolution=r,
                           w_dim=cfg.w_dim, image_channels=cfg.channels)
            for r in _resolutions(cfg))

    def synthesis(self, w: torch.Tensor, *, noise_mode: str | None = None) -> torch.Tensor:
        """w (B, w_dim) -> images (B, C, H, W)."""
        mode = resolve_noise_mode(noise_mode, self.training)
        x = img = None
        for block in self.blocks:
            x, img = block(x, img, w, mode)
        return img

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, *, c: torch.Tensor | None = None,
                update_w_avg: bool = True, noise_mode: str | None = None) -> torch.Tensor:
        w = latents_for_synthesis(self, z, truncation_psi, update_w_avg, c)  # w_avg, truncation
        return self.synthesis(w, noise_mode=noise_mode)


# ================================================================================ discriminator
class ConvLayer(nn.Module):
    """y = gain * act(conv(x) + b); ``down``: FIR-filter then stride 2 (StyleGAN2's resampling):
    a 3x3 conv sees blur(x, pad 2) at stride 2, a 1x1 conv sees downsample2d(x)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, down: bool = False,
                 bias: bool = True, act: bool = True, gain: float = 1.0):
        super().__init__()
        self.kernel, self.down, self.act, self.gain = kernel_size, down, act, gain
        self.conv = make_conv2d(in_channels, out_channels, kernel_size, equalized=True, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = effective_weight(self.conv).to(x.dtype)
        b = None if self.conv.bias is None else self.conv.bias.to(x.dtype)
        if self.down and self.kernel > 1:
            x = F.conv2d(blur(x, pad=2), w, b, stride=2)
        elif self.down:
            x = F.conv2d(downsample2d(x), w, b)
        else:
            x = F.conv2d(x, w, b, padding=self.kernel // 2)
        if self.act:
            x = F.leaky_relu(x, 0.2) * math.sqrt(2)
        return x * self.gain if self.gain != 1 else x


class DiscriminatorBlock(nn.Module):
    """(B, C_r, r, r) -> (B, C_{r/2}, r/2, r/2)."""

    def __init__(self, in_channels: int, out_channels: int, *, residual: bool):
        super().__init__()
        g = math.sqrt(0.5) if residual else 1.0  # keeps the variance of the sum of two paths
        self.conv0 = ConvLayer(in_channels, in_channels, 3)
        self.conv1 = ConvLayer(in_channels, out_channels, 3, down=True, gain=g)
        self.skip = (ConvLayer(in_channels, out_channels, 1, down=True, bias=False, act=False, gain=g)
                     if residual else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(self.conv0(x))
        return y + self.skip(x) if self.skip is not None else y


class StyleGAN2Discriminator(nn.Module, HubMixin):
    """images (B, C, H, W) in [-1, 1] -> logits (B,)."""

    hub_role = "discriminator"
    cross_sample = True  # minibatch stddev: the loss must not mix real, fake and bCR views

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.sg2_d_channels
        self.fromrgb = ConvLayer(cfg.channels, ch(cfg.resolution), 1)
        self.blocks = nn.ModuleList(DiscriminatorBlock(ch(r), ch(r // 2), residual=cfg.sg2_d_residual)
                                    for r in reversed(_resolutions(cfg)[1:]))
        c4 = ch(4)
        self.mbstd = MinibatchStd(cfg.sg2_mbstd_group)
        self.conv = ConvLayer(c4 + 1, c4, 3)
        self.fc = EqualizedLinear(c4 * 16, c4)
        self.out = EqualizedLinear(c4, 1)
        # class-conditional: + <V c, phi(x)> on the FC features (equalised, like every layer here)
        self.projection = Projection(cfg.num_classes, c4, equalized=True) if cfg.num_classes else None

    def forward(self, images: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self, c, images.shape[0])
        x = self.fromrgb(images)
        for block in self.blocks:
            x = block(x)
        x = self.conv(self.mbstd(x))                                      # (B, C_4, 4, 4)
        x = F.leaky_relu(self.fc(x.flatten(1)), 0.2) * math.sqrt(2)     # phi(x), (B, C_4)
        logits = self.out(x).squeeze(-1)
        return logits if c is None else logits + self.projection(x, c)


__all__ = ["StyleGAN2Generator", "StyleGAN2Discriminator", "SynthesisBlock", "DiscriminatorBlock",
           "ConvLayer"]
