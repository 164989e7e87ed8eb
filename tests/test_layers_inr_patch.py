"""The INR patch head (fused == reference, tiling) and D's overlapping patch embedding."""

import pytest
import torch
import torch.nn.functional as F

from vitgan.layers.inr import (INRHead, LinearHead, ModulatedMLP, grid_centres, modulated_mlp_fused,
                               modulated_mlp_reference,
                               tile_patches)
from vitgan.layers.patch import PatchEmbedding


@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_mlp_fused_equals_per_patch_reference(demodulate):
    mlp = ModulatedMLP(style_dim=12, in_dim=10, hidden=14, out_dim=3, demodulate=demodulate, equalized=False).double()
    with torch.no_grad():
        mlp.bias1.normal_()
        mlp.bias2.normal_()
    x = torch.randn(16, 10, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 5, 12, dtype=torch.float64, requires_grad=True)
    mlp.fused = True
    out_f = mlp(x, y)
    mlp.fused = False
    out_r = mlp(x, y)
    assert out_f.shape == (2, 5, 16, 3)
    torch.testing.assert_close(out_f, out_r, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(out_f)
    grads_f = torch.autograd.grad(out_f, (x, y, mlp.weight1), g)
    grads_r = torch.autograd.grad(out_r, (x, y, mlp.weight1), g)
    for a, b in zip(grads_f, grads_r):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_full_two_layer_modulated_mlp_against_hand_formula():
    """Both layers with non-zero biases, a random RGB layer and per-patch styles, written out per
    patch with plain matrix products: h = lrelu(x (W1 diag s1)^T [demod] + b1) sqrt2,
    out = h (W2 diag s2)^T + b2 (RGB layer modulated, never demodulated)."""
    f64 = dict(dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    P, F_, H, C, L = 9, 6, 7, 3, 4
    x = torch.randn(P, F_, generator=g, **f64)
    w1, b1 = torch.randn(H, F_, generator=g, **f64), torch.randn(H, generator=g, **f64)
    w2, b2 = torch.randn(C, H, generator=g, **f64), torch.randn(C, generator=g, **f64)
    s1 = torch.rand(2, L, F_, generator=g, **f64) + 0.5
    s2 = torch.rand(2, L, H, generator=g, **f64) + 0.5
    for demod in (True, False):
        for fn in (modulated_mlp_fused, modulated_mlp_reference):
            out = fn(x, s1, w1, b1, s2, w2, b2, demodulate=demod, eps=0.0)
            for b in range(2):
                for i in range(L):
                    a = w1 * s1[b, i]
                    if demod:
                        a = a / a.norm(dim=1, keepdim=True)
                    h = F.leaky_relu(x @ a.t() + b1, 0.2) * 2 ** 0.5
                    expected = h @ (w2 * s2[b, i]).t() + b2
                    torch.testing.assert_close(out[b, i], expected)


def test_modulation_is_per_patch_weight_scaling_and_demodulation_normalises():
    f64 = dict(dtype=torch.float64)
    x, w1, b1 = torch.randn(9, 6, **f64), torch.randn(7, 6, **f64), torch.zeros(7, **f64)
    s1 = torch.rand(1, 2, 6, **f64) + 0.5
    s2, w2, b2 = torch.ones(1, 2, 7, **f64), torch.eye(7, **f64), torch.zeros(7, **f64)  # identity RGB layer
    for demod in (True, False):
        out = modulated_mlp_fused(x, s1, w1, b1, s2, w2, b2, demodulate=demod, eps=0.0)
        w_mod = w1 * s1[0, 1]                                      # patch 1's weight W * s
        if demod:
            w_mod = w_mod / w_mod.norm(dim=1, keepdim=True)        # unit-norm output rows
        expected = F.leaky_relu(x @ w_mod.t(), 0.2) * 2 ** 0.5
        torch.testing.assert_close(out[0, 1], expected)
    # demodulated: scaling a patch's style by a constant changes nothing; without: it does
    y1 = modulated_mlp_fused(x, s1, w1, b1, s2, w2, b2, demodulate=True)
    y2 = modulated_mlp_fused(x, 3 * s1, w1, b1, s2, w2, b2, demodulate=True)
    torch.testing.assert_close(y1, y2)
    y3 = modulated_mlp_fused(x, 3 * s1, w1, b1, s2, w2, b2, demodulate=False)
    assert not torch.allclose(y1, y3)


def test_tile_patches_places_token_i_at_patch_i():
    grid, p, c = 3, 2, 2
    patches = torch.arange(grid * grid, dtype=torch.float32)[None, :, None, None].expand(1, -1, p * p, c)
    img = tile_patches(patches, grid)
    assert img.shape == (1, c, grid * p, grid * p)
    for i in range(grid * grid):
        r, col = divmod(i, grid)
        assert (img[0, :, r * p:(r + 1) * p, col * p:(col + 1) * p] == i).all()
    # and the in-patch pixel order is row-major (p1 = row, p2 = column)
    patches = torch.arange(p * p, dtype=torch.float32)[None, None, :, None].expand(1, grid * grid, -1, 1)
    assert torch.equal(tile_patches(patches, grid)[0, 0, :p, :p], torch.arange(4.0).reshape(2, 2))


def test_linear_head_token_paints_known_value_at_its_place():
    grid, p = 4, 2
    head = LinearHead(dim=8, patch_size=p, grid=grid, channels=3, equalized=False)
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.zero_()
        head.linear.weight[:, 0] = 1.0  # every pixel of the patch = token feature 0
    y = torch.zeros(1, grid * grid, 8)
    y[0, :, 0] = torch.arange(grid * grid) + 1.0
    img = head(y)
    expected = (torch.arange(grid * grid) + 1.0).reshape(grid, grid)
    expected = expected.repeat_interleave(p, 0).repeat_interleave(p, 1)
    assert torch.equal(img[0, 1], expected)


def test_inr_head_token_i_changes_only_patch_i_and_varies_with_coordinates():
    grid, p = 4, 4
    head = INRHead(dim=16, patch_size=p, grid=grid, channels=3, fourier_dim=24, hidden=20, equalized=False)
    y = torch.randn(1, 16).expand(grid * grid, -1).unsqueeze(0).clone()  # every token the same
    base = head(y)
    for i in (0, 5, 15):
        y2 = y.clone()
        y2[0, i] = torch.randn(16) * 2
        changed = (head(y2) - base).abs().amax(1)[0] > 1e-6  # (H, W) mask of changed pixels
        r, c = divmod(i, grid)
        expected = torch.zeros(grid * p, grid * p, dtype=torch.bool)
        expected[r * p:(r + 1) * p, c * p:(c + 1) * p] = True
        assert torch.equal(changed, expected)
    # identical tokens paint identical patches, and a patch is not flat: it depends on (x, y)
    torch.testing.assert_close(base[..., :p, :p], base[..., p:2 * p, 3 * p:])
    assert base[0, :, :p, :p].std(dim=(1, 2)).min() > 1e-3
    with torch.no_grad():
        head.coords.mul_(0.5)
    assert not torch.allclose(head(y), base)


def test_grid_centres_are_normalised_cell_centres():
    c = grid_centres(4)
    assert c.shape == (16, 2)
    torch.testing.assert_close(c[0], torch.tensor([-0.75, -0.75]))
    torch.testing.assert_close(c[1], torch.tensor([-0.25, -0.75]))  # x moves fastest (row-major)
    torch.testing.assert_close(c[-1], torch.tensor([0.75, 0.75]))


@pytest.mark.parametrize("overlap", [True, False])
def test_patch_embedding_token_count_and_receptive_window(overlap):
    H, P = 16, 4
    emb = PatchEmbedding(channels=3, dim=8, patch_size=P, overlap=overlap, equalized=False)
    img = torch.randn(1, 3, H, H, requires_grad=True)
    tokens = emb(img)
    assert tokens.shape == (1, (H // P) ** 2, 8)
    o = P // 2 if overlap else 0
    for i in range((H // P) ** 2):
        (g,) = torch.autograd.grad(tokens[0, i].sum(), img, retain_graph=True)
        r, c = divmod(i, H // P)
        expected = torch.zeros(H, H, dtype=torch.bool)
        expected[max(r * P - o, 0):r * P - o + P + 2 * o, max(c * P - o, 0):c * P - o + P + 2 * o] = True
        assert torch.equal(g[0].abs().sum(0) > 0, expected), i


def test_patch_embedding_is_unfold_then_linear():
    P = 4
    emb = PatchEmbedding(channels=3, dim=6, patch_size=P, overlap=True, equalized=False)
    img = torch.randn(2, 3, 12, 12)
    windows = F.unfold(img, kernel_size=2 * P, stride=P, padding=P // 2)   # (B, C*2P*2P, L)
    expected = windows.transpose(1, 2) @ emb.proj.weight.flatten(1).t() + emb.proj.bias
    torch.testing.assert_close(emb(img), expected, rtol=1e-5, atol=1e-5)
