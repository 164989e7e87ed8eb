"""Multi-head self-attention: dot-product (ViT-G) or L2 with tied query/key (ViT-D).

    dot:  Attention_h(X) = softmax( X W_q (X W_k)^T / sqrt(d_h) ) X W_v
    L2:   Attention_h(X) = softmax( -||X W_q - X W_k||^2 / sqrt(d_h) ) X W_v,   W_q = W_k
          (Kim et al. 2021; ViTGAN section 3). One projection ``to_qk`` gives both q and k.

Two paths compute the same function, chosen by ``fused``:
  * reference: the formula written out with explicit matrix products and softmax;
  * fused: ``F.scaled_dot_product_attention`` on CUDA (and other accelerators). For L2, with
    q = k = X W_qk,
        -||q_i - k_j||^2 = 2 q_i.k_j - ||k_j||^2 - ||q_i||^2
    and the last term is constant over j, so it cancels in the softmax over j. Hence L2 attention
    is dot-product attention on augmented vectors q'_i = [2 q_i, 1], k'_j = [k_j, -||k_j||^2]
    (zero-padded to a multiple of 8 so that fused kernels apply), scale 1/sqrt(d_h).
    On CPU the fused path is instead three batched products with the same algebra: the logits
    come from ONE ``baddbmm`` (2 scale q.k^T - scale ||k||^2, the bias folded in), then softmax and
    ``bmm``. ViTGAN's sequences are short (64-257 tokens), and PyTorch's CPU flash-attention kernel
    is 2-5x slower than this at these sizes, most of all in bf16 (measured; benchmarks/RESULTS.md);
    it also never sees the augmented 72-wide vectors, so it does less work.

``qk_gain`` c scales the (equalised) tied projection: W_qk,eff = c W / sqrt(fan_in). Why (issue 10):
with LayerNorm'd tokens (||x||^2 = D) and fan-in-scaled weights, q per head has ||q||^2 ~ d_h, so
two unrelated tokens are at squared distance ~ 2 d_h and their logit is -2 d_h / sqrt(d_h) =
-2 sqrt(d_h) (-16 at d_h = 64), while a token's distance to ITSELF is 0: every query attends to
itself. Measured at initialisation on CIFAR-10 images: the class token put 99-100 % of its
attention on itself in every block (cifar10 preset: D's logits had std 0.001 over images, D was
blind), against 8-14 % with the plain std-0.02 layers. A dot-product logit q.k / sqrt(d_h) has
std 1 at the same scale; ``l2_qk_gain(d_h)`` = (2 sqrt(d_h))^(-1/2) gives the L2 logit the same
order (-1 between unrelated tokens). Under ISN the layer's gain stays at its initial value, so
this constant sets D's attention temperature for the whole run (LayerNorm's weights can still
sharpen it). SN divides the gain out again (W_eff = W / sigma(W)).

``conv_kernel`` (ICLR version, D only): a depthwise convolution over the token grid before the
tied qk projection and another before the v projection; the first ``prefix_tokens`` tokens (the
class token) bypass the convolutions. Q and K stay tied.
Under ISN / SN their weight (D, 1, 3, 3) is normalised as the (D, 9) matrix, the convention SN
uses for every conv (Miyato et al. 2018) and the official code's reshape(out, -1); we keep it
(decided, issue 10). That matrix's sigma is NOT the layer's gain: at D = 384, equalised, sigma of
the reshape is 7.2 while the depthwise conv's operator norm on the 8x8 token grid is 2.9 (median
per channel 1.6), in the 1-3 range of the other D layers; at D = 64: 3.6 vs 3.3. ISN holds the
reshape's sigma at its initial value, which bounds every channel's filter norm, so the ablation's
per-channel gain starts where an equalised layer's does. (Measured with a power iteration on the
convolution itself; ``diag/sigma_max`` reports the reshape's sigma, the quantity ISN holds.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vitgan.layers.equalized import make_conv2d, make_linear

KINDS = ("dot", "l2")


def l2_qk_gain(head_dim: int) -> float:
    """(2 sqrt(d_h))^(-1/2): the tied-projection gain that puts L2 logits of unrelated,
    LayerNorm'd tokens at about -1 (see the module docstring)."""
    return (2.0 * math.sqrt(head_dim)) ** -0.5


def l2_logits(qk: torch.Tensor, scale: float) -> torch.Tensor:
    """-||q_i - k_j||^2 * scale with q = k = ``qk`` (b, h, n, d) -> (b, h, n, n)."""
    sq = (qk * qk).sum(-1)
    # ||q_i - k_j||^2 = ||q_i||^2 + ||k_j||^2 - 2 q_i.k_j
    return -(sq.unsqueeze(-1) + sq.unsqueeze(-2) - 2 * qk @ qk.transpose(-1, -2)) * scale


def l2_attention_reference(qk: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(-||q_i - k_j||^2 * scale) v with q = k = ``qk``; (b, h, n, d) tensors."""
    return torch.softmax(l2_logits(qk, scale), dim=-1) @ v


def _softmax_bmm(logits: torch.Tensor, v: torch.Tensor, shape) -> torch.Tensor:
    return torch.bmm(torch.softmax(logits, dim=-1), v.reshape(logits.shape[0], -1, v.shape[-1])).view(shape)


def l2_attention_fused(qk: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """The same as ``l2_attention_reference`` through scaled_dot_product_attention (on CPU:
    one baddbmm for the logits, softmax, bmm; see the module docstring)."""
    if qk.device.type == "cpu":
        b, h, n, d = qk.shape
        q = qk.reshape(b * h, n, d)
        sq = (q * q).sum(-1).unsqueeze(1)                                       # (bh, 1, n): ||k_j||^2
        # scale * (2 q_i.k_j - ||k_j||^2); the -||q_i||^2 term cancels in the softmax over j
        logits = torch.baddbmm(sq, q, q.transpose(1, 2), beta=-scale, alpha=2 * scale)
        return _softmax_bmm(logits, v, v.shape)
    d = qk.shape[-1]
    pad = -(d + 1) % 8
    ones = qk.new_ones(qk.shape[:-1] + (1,))
    zeros = qk.new_zeros(qk.shape[:-1] + (pad,))
    q_aug = torch.cat([2 * qk, ones, zeros], dim=-1)                            # [2q, 1, 0..]
    k_aug = torch.cat([qk, -(qk * qk).sum(-1, keepdim=True), zeros], dim=-1)   # [k, -|k|^2, 0..]
    v_aug = F.pad(v, (0, 1 + pad))  # same head size for q, k, v: what flash kernels need
    out = F.scaled_dot_product_attention(q_aug, k_aug, v_aug, scale=scale)
    return out[..., :d]


def dot_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float):
    """softmax(q k^T * scale) v; (b, h, n, d) tensors."""
    return torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1) @ v


class Attention(nn.Module):
    """Multi-head self-attention on (B, N, dim) tokens, dot-product or L2 (tied W_q = W_k)."""

    def __init__(self, *, dim: int, heads: int, kind: str = "dot", fused: bool = True,
                 conv_kernel: int | None = None, prefix_tokens: int = 0, equalized: bool,
                 qk_gain: float = 1.0):
        super().__init__()
        assert dim % heads == 0, f"heads={heads} must divide dim={dim}"
        assert kind in KINDS, f"attention kind {kind!r} not in {KINDS}"
        self.heads, self.kind, self.fused = heads, kind, fused
        self.scale = (dim // heads) ** -0.5  # 1/sqrt(d_h), inside the softmax
        self.prefix_tokens = prefix_tokens
        # L2: one matrix W_qk for q and k (a bias would cancel in q_i - k_j). dot: [W_q | W_k].
        self.to_qk = make_linear(dim, dim if kind == "l2" else 2 * dim, bias=False, equalized=equalized,
                                 gain=qk_gain)
        self.to_v = make_linear(dim, dim, bias=False, equalized=equalized)
        self.proj = make_linear(dim, dim, equalized=equalized)
        self.conv_qk = self.conv_v = None
        if conv_kernel:
            conv = lambda: make_conv2d(dim, dim, conv_kernel, padding=conv_kernel // 2, groups=dim,  # noqa: E731
                                       bias=False, equalized=equalized)
            self.conv_qk, self.conv_v = conv(), conv()

    def _conv(self, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        """Depthwise conv over the token grid; prefix (class) tokens pass through unchanged."""
        prefix, grid = x[:, :self.prefix_tokens], x[:, self.prefix_tokens:]
        side = math.isqrt(grid.shape[1])
        grid = rearrange(grid, "b (gh gw) d -> b d gh gw", gh=side, gw=side)
        grid = rearrange(conv(grid), "b d gh gw -> b (gh gw) d")
        return torch.cat([prefix, grid], dim=1)

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """The attention maps softmax(logits) (B, heads, N, N) for input ``x``, reference math
        (for diagnostics such as the attention entropy; not used in training)."""
        x_qk = self._conv(self.conv_qk, x) if self.conv_qk is not None else x
        split = lambda t: rearrange(t, "b n (h d) -> b h n d", h=self.heads)  # noqa: E731
        if self.kind == "l2":
            logits = l2_logits(split(self.to_qk(x_qk)), self.scale)
        else:
            q, k = map(split, self.to_qk(x_qk).chunk(2, dim=-1))
            logits = q @ k.transpose(-1, -2) * self.scale
        return torch.softmax(logits.float(), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_qk = x_v = x
        if self.conv_qk is not None:
            x_qk, x_v = self._conv(self.conv_qk, x), self._conv(self.conv_v, x)
        split = lambda t: rearrange(t, "b n (h d) -> b h n d", h=self.heads)  # noqa: E731
        v = split(self.to_v(x_v))
        if self.kind == "l2":
            qk = split(self.to_qk(x_qk))
            attend = l2_attention_fused if self.fused else l2_attention_reference
            out = attend(qk, v, self.scale)
        else:
            q, k = map(split, self.to_qk(x_qk).chunk(2, dim=-1))
            if self.fused and q.device.type == "cpu":  # see the module docstring
                b, h, n, d = q.shape
                q, k = q.reshape(b * h, n, d), k.reshape(b * h, n, d)
                logits = torch.baddbmm(q.new_zeros(()).expand(1, 1, 1), q, k.transpose(1, 2),
                                       beta=0, alpha=self.scale)               # scale q.k^T
                out = _softmax_bmm(logits, v, v.shape)
            elif self.fused:
                out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
            else:
                out = dot_attention_reference(q, k, v, self.scale)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


def attention_probabilities(model: nn.Module, forward) -> list[torch.Tensor]:
    """The attention maps of every ``Attention`` layer inside ``model`` (module order) while
    ``forward()`` runs it once: each layer's input is recorded by a forward pre-hook, then its
    ``probabilities`` (reference math, fp32) are taken; [] for a model without attention. The
    training path (fused or not) runs untouched; this is for diagnostics and ``vitgan inspect``."""
    layers = [m for m in model.modules() if isinstance(m, Attention)]
    inputs: dict[int, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, i=i: inputs.__setitem__(i, args[0]))
             for i, m in enumerate(layers)]
    try:
        with torch.no_grad():
            forward()
    finally:
        for h in hooks:
            h.remove()
    return [m.probabilities(inputs[i].float()) for i, m in enumerate(layers)]


__all__ = ["Attention", "attention_probabilities", "KINDS", "l2_qk_gain", "l2_logits", "l2_attention_reference", "l2_attention_fused",
           "dot_attention_reference"]
