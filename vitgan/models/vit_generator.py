"""ViT-G, the ViTGAN generator (paper, section 2).

    w      = MLP(normalise(z))                        mapping network
    h_0[i] = E_pos[i] = sin(Linear(p_i))              p_i: centre of patch i in [-1, 1]^2
    h'     = MSA(SLN(h, w)) + h ;  h = MLP(SLN(h', w)) + h'      (L blocks, one SLN per sub-layer)
    y      = SLN(h_L, w)
    x      = tile_i f_{theta, y_i}(E_fou)             INR head: each token paints its P x P patch

Every Linear layer except the sine embeddings' is equalised (``cfg.equalized_lr``, the paper's
StyleGAN2 setting; ``vitgan.layers.equalized``); the mapping network always is (lr_mult 0.01).

Ablations (``ModelConfig``): ``g_latent="tokens"`` feeds w as input tokens (Linear(w) added to
E_pos) and uses LayerNorm with affine in place of SLN; ``g_head="linear"`` maps each token
linearly to its P*P*C pixels; ``g_head="conv"`` paints the image with StyleGAN2 synthesis layers
up from the token grid (the authors' PyTorch port's default head, ``vitgan.layers.conv_head``);
``g_demodulate`` switches the INR's demodulation. ``g_block="official"`` is the block of the
authors' PyTorch port (``vitgan.layers.block``: h = SLN(h, w), then h' = MSA(h) + h, so w
modulates the residual stream in every block, not only each branch's input).

Resolution-free rendering (``scale``): the INR head is a function of in-patch coordinates, so
``G(z, scale=2)`` / ``G.synthesis(w, scale=2)`` paints every patch on a 2x finer grid of cell
centres: the same image at 2x (any scale s with s*P a whole number of pixels). ``scale=1`` runs
exactly the training path. Only the INR head can (``check_render_scale``: the linear head and
StyleGAN2's G refuse with OptionError). Patch borders: see ``vitgan.layers.inr``.

Class-conditional (``cfg.classes``): w = MLP(cat[norm(z), norm(embed(c))]) (StyleGAN2-ADA's
mapping, ``vitgan.layers.conditioning``), so the class reaches every SLN and the INR head.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from vitgan.config import ModelConfig
from vitgan.errors import OptionError
from vitgan.layers.attention import Attention
from vitgan.layers.block import Block
from vitgan.layers.conv_head import ConvHead
from vitgan.layers.equalized import make_linear
from vitgan.layers.inr import INRHead, LinearHead, SineEmbedding, grid_centres, render_coords
from vitgan.layers.mapping import MappingNetwork, latents_for_synthesis, w_avg_buffer
from vitgan.layers.modconv import resolve_noise_mode
from vitgan.layers.sln import SLN, LayerNorm
from vitgan.models.hub import HubMixin


def check_render_scale(cfg: ModelConfig, scale: float) -> int:
    """Pixels per patch side when rendering at ``scale`` (P at 1), or OptionError (one line) for a
    generator that cannot render at another resolution or a scale that is not whole pixels."""
    if scale == 1:
        return cfg.patch_size
    if cfg.g_arch != "vit" or cfg.g_head != "inr":
        what = "StyleGAN2's generator" if cfg.g_arch != "vit" else f"ViT-G with g_head={cfg.g_head}"
        raise OptionError(f"--scale {scale:g}: {what} has a fixed output grid and cannot render at another "
                          f"resolution; only ViT-G's INR head (g_head=inr) can. Use --scale 1")
    pixels = cfg.patch_size * scale
    if not (pixels >= 1 and float(pixels).is_integer()):
        raise OptionError(f"--scale {scale:g}: each {cfg.patch_size}x{cfg.patch_size} patch would be "
                          f"{pixels:g} pixels wide; give a scale s with s x {cfg.patch_size} a whole number >= 1")
    return int(pixels)


class Generator(nn.Module, HubMixin):
    """z (B, z_dim) [, c (B,)] -> images (B, C, H, W), roughly in [-1, 1]. ``save_pretrained`` /
    ``from_pretrained`` / ``push_to_hub``: ``vitgan.models.hub``."""

    def __init__(self, cfg: ModelConfig, *, w_avg_beta: float = 0.995):
        super().__init__()
        self.cfg = cfg
        dim, grid = cfg.g_dim, cfg.resolution // cfg.patch_size
        self.grid, self.w_avg_beta = grid, w_avg_beta
        self.mapping = MappingNetwork(z_dim=cfg.z_dim, w_dim=cfg.w_dim, layers=cfg.mapping_layers,
                                      lr_mult=cfg.mapping_lr_mult, num_classes=cfg.num_classes)
        self.register_buffer("w_avg", w_avg_buffer(cfg))   # for truncation (per class if conditional)
        self.register_buffer("patch_centres", grid_centres(grid), persistent=False)  # (L, 2)
        eq = cfg.equalized_lr
        self.pos_embedding = SineEmbedding(out_dim=dim)                 # E_pos
        if cfg.g_latent == "tokens":
            self.latent_tokens = make_linear(cfg.w_dim, grid * grid * dim, equalized=eq)
            norm = lambda: LayerNorm(dim)  # noqa: E731
        else:
            self.latent_tokens = None
            norm = lambda: SLN(dim=dim, w_dim=cfg.w_dim, init_std=cfg.sln_init_std, equalized=eq,  # noqa: E731
                               unit_storage=cfg.sln_unit_storage)
        self.blocks = nn.ModuleList(
            Block(dim=dim, mlp_dim=cfg.g_mlp_dim, norm=norm, equalized=eq,
                  norm_stream=cfg.g_block == "official",
                  attention=Attention(dim=dim, heads=cfg.g_heads, kind="dot", fused=cfg.fused_attention,
                                      equalized=eq))
            for _ in range(cfg.g_depth))
        self.norm = norm()
        if cfg.g_head == "conv":
            self.head = ConvHead(dim=dim, grid=grid, resolution=cfg.resolution, w_dim=cfg.w_dim,
                                 image_channels=cfg.channels, channels=cfg.conv_head_channels)
        elif cfg.g_head == "inr":
            self.head = INRHead(dim=dim, patch_size=cfg.patch_size, grid=grid, channels=cfg.channels,
                                fourier_dim=cfg.fourier_width, hidden=cfg.inr_hidden,
                                demodulate=cfg.g_demodulate, fused=cfg.fused_inr, equalized=eq)
        else:
            self.head = LinearHead(dim=dim, patch_size=cfg.patch_size, grid=grid, channels=cfg.channels,
                                   equalized=eq)

    def synthesis(self, w: torch.Tensor, *, scale: float = 1, noise_mode: str | None = None) -> torch.Tensor:
        """w (B, w_dim) -> images (B, C, H, W); ``scale`` s: (B, C, sH, sW), the INR head painting
        each patch on an s-times finer coordinate grid (``check_render_scale``). ``noise_mode``
        (``g_head=conv`` only, as StyleGAN2's G): None = "random" in training, "const" in eval."""
        pixels = check_render_scale(self.cfg, scale)
        with torch.autocast(w.device.type, enabled=False):  # keep the residual stream in fp32
            h = self.pos_embedding(self.patch_centres).expand(w.shape[0], -1, -1)  # E_pos (B, L, D)
        if self.latent_tokens is not None:
            h = h + rearrange(self.latent_tokens(w), "b (l d) -> b l d", d=self.cfg.g_dim)
        for block in self.blocks:
            h = block(h, w)
        y = self.norm(h, w)                                               # y = SLN(h_L, w)
        if isinstance(self.head, ConvHead):
            return self.head(y, w, resolve_noise_mode(noise_mode, self.training))
        if scale == 1:
            return self.head(y)
        return self.head(y, render_coords(pixels))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, *, c: torch.Tensor | None = None,
                update_w_avg: bool = True, scale: float = 1, noise_mode: str | None = None) -> torch.Tensor:
        """``c``: class indices (B,), required by (only by) a conditional G (cfg.classes);
        ``scale``: render at s x the resolution (INR head only, see ``synthesis``);
        ``noise_mode``: the conv head's noise (see ``synthesis``)."""
        check_render_scale(self.cfg, scale)  # before anything changes w_avg
        w = latents_for_synthesis(self, z, truncation_psi, update_w_avg, c)  # w_avg, truncation
        return self.synthesis(w, scale=scale, noise_mode=noise_mode)


__all__ = ["Generator", "check_render_scale"]
