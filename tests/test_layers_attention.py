"""Attention: L2 with tied q/k against the paper's formula written naively; fused == reference."""

import pytest
import torch
from einops import rearrange

from vitgan.layers.attention import Attention, l2_attention_fused, l2_attention_reference


def naive_l2_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """softmax(-||X W_q - X W_k||^2 / sqrt(d_h)) X W_v per head, with W_q = W_k = to_qk.weight,
    distances from explicit pairwise differences."""
    heads = attn.heads
    q = rearrange(x @ attn.to_qk.weight.t(), "b n (h d) -> b h n d", h=heads)
    k = q  # tied: the same matrix
    v = rearrange(x @ attn.to_v.weight.t(), "b n (h d) -> b h n d", h=heads)
    d_h = q.shape[-1]
    dist2 = ((q[:, :, :, None, :] - k[:, :, None, :, :]) ** 2).sum(-1)
    out = torch.softmax(-dist2 / d_h ** 0.5, dim=-1) @ v
    return attn.proj(rearrange(out, "b h n d -> b n (h d)"))


def naive_dot_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    w_q, w_k = attn.to_qk.weight.chunk(2, dim=0)
    split = lambda t: rearrange(t, "b n (h d) -> b h n d", h=attn.heads)  # noqa: E731
    q, k, v = split(x @ w_q.t()), split(x @ w_k.t()), split(x @ attn.to_v.weight.t())
    logits = torch.einsum("bhid,bhjd->bhij", q, k) / q.shape[-1] ** 0.5
    return attn.proj(rearrange(torch.softmax(logits, -1) @ v, "b h n d -> b n (h d)"))


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("kind,naive", [("l2", naive_l2_attention), ("dot", naive_dot_attention)])
def test_attention_matches_naive_formula(kind, naive, fused):
    attn = Attention(dim=48, heads=3, kind=kind, fused=fused, equalized=False).double()
    with torch.no_grad():  # larger weights than ViT's init, so the softmax is far from uniform
        attn.to_qk.weight.normal_(0, 0.3)
        attn.to_v.weight.normal_(0, 0.3)
    x = torch.randn(2, 11, 48, dtype=torch.float64)
    torch.testing.assert_close(attn(x), naive(attn, x), rtol=1e-9, atol=1e-9)


def test_l2_query_and_key_share_parameters():
    attn = Attention(dim=32, heads=4, kind="l2", equalized=False)
    names = {n for n, _ in attn.named_parameters()}
    assert names == {"to_qk.weight", "to_v.weight", "proj.weight", "proj.bias"}
    assert attn.to_qk.weight.shape == (32, 32)  # one W for q and for k, not [W_q | W_k]
    # consequence of W_q = W_k: the logit -||q_i - k_i||^2 = 0 is each row's largest, so every
    # token weighs itself at least as much as any other (attention matrix read with v = I)
    qk = torch.randn(1, 4, 9, 8)
    a = l2_attention_reference(qk, torch.eye(9).expand(1, 4, 9, 9), 8 ** -0.5)
    torch.testing.assert_close(a.sum(-1), torch.ones(1, 4, 9))
    assert torch.equal(a.diagonal(dim1=-2, dim2=-1), a.amax(-1))
    # the negated squared distance: moving a key away lowers its weight
    far = qk.clone()
    far[..., 3, :] += 5.0
    b = l2_attention_reference(far, torch.eye(9).expand(1, 4, 9, 9), 8 ** -0.5)
    others = [i for i in range(9) if i != 3]
    assert (b[..., others, 3] < a[..., others, 3]).all()


@pytest.mark.parametrize("kind", ["l2", "dot"])
@pytest.mark.parametrize("fused", [True, False])
def test_permuting_tokens_permutes_output(kind, fused):
    attn = Attention(dim=32, heads=4, kind=kind, fused=fused, equalized=False)
    x = torch.randn(2, 13, 32)
    perm = torch.randperm(13)
    torch.testing.assert_close(attn(x[:, perm]), attn(x)[:, perm], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["l2", "dot"])
def test_fused_equals_reference_values_and_gradients(kind):
    ref = Attention(dim=64, heads=4, kind=kind, fused=False, equalized=False)
    fused = Attention(dim=64, heads=4, kind=kind, fused=True, equalized=False)
    fused.load_state_dict(ref.state_dict())
    with torch.no_grad():
        ref.to_qk.weight.normal_(0, 0.2)
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(3, 17, 64, requires_grad=True)
    y_ref, y_fused = ref(x), fused(x)
    torch.testing.assert_close(y_fused, y_ref, rtol=1e-4, atol=1e-5)
    g = torch.randn_like(y_ref)
    gx_ref, gw_ref = torch.autograd.grad(y_ref, (x, ref.to_qk.weight), g)
    gx_f, gw_f = torch.autograd.grad(y_fused, (x, fused.to_qk.weight), g)
    torch.testing.assert_close(gx_f, gx_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gw_f, gw_ref, rtol=1e-4, atol=1e-5)


def test_l2_fused_pads_to_multiple_of_8_and_scale_inside_softmax():
    for d in (5, 7, 8, 64):
        qk, v = torch.randn(2, 2, 6, d), torch.randn(2, 2, 6, d)
        scale = 0.37
        expected = torch.softmax(-torch.cdist(qk, qk) ** 2 * scale, dim=-1) @ v
        torch.testing.assert_close(l2_attention_fused(qk, v, scale), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["l2", "dot"])
def test_conv_qkv_identity_kernel_equals_plain_attention_and_cls_bypasses(kind):
    plain = Attention(dim=16, heads=2, kind=kind, equalized=False)
    conv = Attention(dim=16, heads=2, kind=kind, conv_kernel=3, prefix_tokens=1, equalized=False)
    conv.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        for c in (conv.conv_qk, conv.conv_v):
            c.weight.zero_()
            c.weight[:, :, 1, 1] = 1.0  # identity depthwise kernel
    x = torch.randn(2, 1 + 16, 16)  # class token + a 4 x 4 grid
    torch.testing.assert_close(conv(x), plain(x), rtol=1e-5, atol=1e-6)
    # a real kernel mixes neighbouring grid tokens but never the class token into the grid
    with torch.no_grad():
        conv.conv_qk.weight.normal_()
        conv.conv_v.weight.normal_()
    x.requires_grad_(True)
    grid_in = conv._conv(conv.conv_v, x)
    assert torch.equal(grid_in[:, 0], x[:, 0])  # class token passes unchanged
    (g,) = torch.autograd.grad(grid_in[:, 1:].sum(), x)
    assert g[:, 0].abs().max() == 0
    # Q and K stay tied under the convolution
    assert conv.to_qk.weight.shape[0] == (16 if kind == "l2" else 32)
