"""ViT-D, the ViTGAN discriminator (paper, section 3).

    h_0 = [x_cls ; E x_1 ; ... ; E x_L] + E_pos       overlapping (P + 2o) patches, o = P/2
    h'  = MSA(LN(h)) + h ;  h = MLP(LN(h')) + h'      pre-norm blocks, L2 attention (tied W_q = W_k)
    D(x) = Linear(LN(h_L[cls]))                       one logit per image
    D(x) = Linear([LN(h_L[cls]) ; sigma_g(LN(h_L))])  with ``d_mbstd_group`` g > 0 (ours, off by
                                                      default): StyleGAN2's minibatch stddev of the
                                                      final tokens over a group of g images, one
                                                      more input of the head; D is then cross-sample
    D(x, c) = D(x) + <V c, LN(h_L[cls])>              class-conditional: projection (Miyato 2018)

Every Linear and Conv layer is equalised (``cfg.equalized_lr``: weights stored N(0, 1), scaled by
1/sqrt(fan_in) at run time) and weight-normalised by ``cfg.d_norm`` (ISN by default) on the stored
weight, as the official code does; the class token and position embeddings are ViT's std 0.02 at
initialisation, plain parameters or (``d_tokens_equalized``) stored N(0, 1) times 0.02. No dropout.
"""

from __future__ import annotations

import torch
from torch import nn

from vitgan.config import ModelConfig
from vitgan.layers.attention import Attention, l2_qk_gain
from vitgan.layers.block import Block
from vitgan.layers.conditioning import Projection, check_labels
from vitgan.layers.equalized import make_linear
from vitgan.layers.isn import apply_weight_norm
from vitgan.layers.mbstd import MinibatchStd
from vitgan.layers.patch import PatchEmbedding
from vitgan.layers.sln import LayerNorm
from vitgan.models.hub import HubMixin


TOKEN_STD = 0.02  # ViT's initial std of the class token and position embeddings


def qk_gain(cfg) -> float:
    """The tied W_qk gain of D's L2 attention: ``cfg.d_qk_gain``, or (2 sqrt(d_h))^(-1/2) when it
    is None (layers/attention.py says why); 1 for dot attention or the plain parametrisation."""
    if cfg.d_attention != "l2" or not cfg.equalized_lr:
        return 1.0
    return cfg.d_qk_gain if cfg.d_qk_gain is not None else l2_qk_gain(cfg.d_dim // cfg.d_heads)


class Discriminator(nn.Module, HubMixin):
    """images (B, C, H, W) in [-1, 1] -> logits (B,)."""

    hub_role = "discriminator"

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        dim, tokens = cfg.d_dim, cfg.d_tokens
        eq = cfg.equalized_lr
        self.patch_embedding = PatchEmbedding(channels=cfg.channels, dim=dim, patch_size=cfg.d_patch,
                                              overlap=cfg.d_overlap, equalized=eq)
        # x_cls and E_pos: ViT's std 0.02 at init; d_tokens_equalized stores them N(0, 1) times a
        # run-time 0.02 (the same function, Adam's relative step that of the equalised layers)
        self.token_gain = TOKEN_STD if cfg.d_tokens_equalized else 1.0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.zeros(1, 1 + tokens, dim))
        for p in (self.cls_token, self.pos_embedding):  # (truncation at +-2: 100 sigma for std 0.02)
            if cfg.d_tokens_equalized:
                nn.init.normal_(p)
            else:
                nn.init.trunc_normal_(p, std=TOKEN_STD)
        conv_kernel = cfg.d_conv_kernel if cfg.d_conv_qkv else None
        self.blocks = nn.ModuleList(
            Block(dim=dim, mlp_dim=cfg.d_mlp_dim, norm=lambda: LayerNorm(dim), equalized=eq,
                  attention=Attention(dim=dim, heads=cfg.d_heads, kind=cfg.d_attention,
                                      fused=cfg.fused_attention, conv_kernel=conv_kernel,
                                      prefix_tokens=1, equalized=eq, qk_gain=qk_gain(cfg)))
            for _ in range(cfg.d_depth))
        self.norm = LayerNorm(dim)
        # minibatch stddev (d_mbstd_group > 0): images of a group see each other, so the loss runs
        # reals, fakes and each consistency view in separate forwards (train/loss.py)
        self.mbstd = MinibatchStd(cfg.d_mbstd_group) if cfg.d_mbstd_group else None
        self.cross_sample = self.mbstd is not None
        self.head = make_linear(dim + (1 if self.mbstd is not None else 0), 1, equalized=eq)
        # class-conditional: + <V c, LN(h_L[cls])>, V weight-normalised with the other layers
        self.projection = Projection(cfg.num_classes, dim, equalized=eq) if cfg.num_classes else None
        apply_weight_norm(self, cfg.d_norm, learned_gain=cfg.d_isn_learned_gain)  # ISN / SN / none on every Linear and Conv (stored weights)

    def forward(self, images: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """``c``: class indices (B,), required by (only by) a conditional D (cfg.classes)."""
        check_labels(self, c, images.shape[0])
        x = self.patch_embedding(images)                                  # (B, L, D)
        g = self.token_gain
        x = torch.cat([(self.cls_token * g).expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embedding * g
        for block in self.blocks:
            x = block(x)
        phi = self.norm(x[:, 0])                                          # LN(class token)
        head_in = phi
        if self.mbstd is not None:  # sigma_g of LN(h_L) over each group: (B, D, N+1, 1) + 1 channel
            sigma = self.mbstd(self.norm(x).transpose(1, 2).unsqueeze(-1))[:, -1, 0, 0]
            head_in = torch.cat([phi, sigma.unsqueeze(1)], dim=1)
        logits = self.head(head_in).squeeze(-1)                           # Linear(LN(class token))
        return logits if c is None else logits + self.projection(phi, c)  # + <V c, phi>


__all__ = ["Discriminator"]
