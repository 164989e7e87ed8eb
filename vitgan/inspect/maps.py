"""The numbers ``vitgan inspect`` draws, from the attention layers' reference path.

Every attention map comes from ``Attention.probabilities`` (softmax of the reference logits, fp32)
on the input the layer saw in one ordinary forward (``attention_probabilities``), so the fused
training path is never touched and the maps are exactly the function D and G compute.

    d_maps(D, x[, c])            ViT-D's attention per block, (B, heads, N, N) each ([] without any)
    class_attention(maps)        ViT-D's class token (token 0) over its N = 1 + L tokens, per block
                                 and head: (blocks, B, heads, N); [..., 0] is its attention to itself
    rollout(maps)                attention rollout (Abnar & Zuidema 2020) of D's class token:
                                 R_0 = I, R_b = norm_rows(0.5 mean_h A_b + 0.5 I) R_{b-1} (the 0.5 I
                                 is the residual path), the class row of R_b after each block:
                                 (blocks, B, N)
    token_attention(G, w, token) ViT-G's token ``token`` over its L tokens, per block and head:
                                 (blocks, B, heads, L)
    saliency(D, x[, c])          |dD(x)/dx| (max over colour channels): (B, H, W), with the L2 norm
                                 of the whole gradient per image and D's logits
"""

from __future__ import annotations

import torch

from vitgan.layers.attention import attention_probabilities


def class_attention(maps: list[torch.Tensor]) -> torch.Tensor:
    """(blocks, B, heads, N): the class token's row of each of D's maps (``d_maps``)."""
    return torch.stack([p[:, :, 0, :] for p in maps])


def d_maps(D, x: torch.Tensor, c: torch.Tensor | None = None) -> list[torch.Tensor]:
    """D's full attention maps per block, (B, heads, N, N) each."""
    return attention_probabilities(D, lambda: D(x) if c is None else D(x, c))


def rollout(maps: list[torch.Tensor]) -> torch.Tensor:
    """(blocks, B, N): the class token's rolled-out attention after each block (rows sum to 1)."""
    b, _, n, _ = maps[0].shape
    eye = torch.eye(n, dtype=maps[0].dtype, device=maps[0].device)
    r = eye.expand(b, n, n)
    out = []
    for p in maps:
        a = 0.5 * p.mean(1) + 0.5 * eye
        r = (a / a.sum(-1, keepdim=True)) @ r
        out.append(r[:, 0])
    return torch.stack(out)


def token_attention(G, w: torch.Tensor, token: int) -> torch.Tensor:
    """(blocks, B, heads, L): what ViT-G's token ``token`` attends to in each block, for latents w."""
    maps = attention_probabilities(G, lambda: G.synthesis(w))
    if not maps:
        return w.new_zeros(0)
    return torch.stack([p[:, :, token, :] for p in maps])


def saliency(D, x: torch.Tensor, c: torch.Tensor | None = None):
    """(|grad| max over channels (B, H, W), ||grad||_2 per image (B,), logits (B,)) of D at x."""
    x = x.detach().float().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = (D(x) if c is None else D(x, c)).float()
        (g,) = torch.autograd.grad(logits.sum(), x)
    return g.abs().amax(1), g.flatten(1).norm(dim=1), logits.detach()


__all__ = ["class_attention", "d_maps", "rollout", "token_attention", "saliency"]
