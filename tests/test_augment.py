"""DiffAugment: each op against its formula or a reference, gradients, reproducibility."""

import math

import pytest
import torch
import torch.nn.functional as F

from vitgan.errors import OptionError
from vitgan.train.augment import (
    DiffAugment,
    brightness,
    contrast,
    cutout,
    parse_policy,
    saturation,
    scale,
    translate,
)


def _images(b=6, c=3, h=16, w=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g) * 2 - 1


def _shift_ref(x, tx, ty):
    """torch.roll with zero fill: content moves right by tx, down by ty."""
    out = torch.roll(x, shifts=(ty, tx), dims=(-2, -1))
    H, W = x.shape[-2:]
    if ty > 0:
        out[..., :ty, :] = 0
    elif ty < 0:
        out[..., H + ty:, :] = 0
    if tx > 0:
        out[..., :, :tx] = 0
    elif tx < 0:
        out[..., :, W + tx:] = 0
    return out


# ----------------------------------------------------------------------------- policy
def test_policy_parsing():
    assert parse_policy("translation,color,cutout,scale") == ("color", "translation", "scale", "cutout")
    assert parse_policy(" Cutout , color ") == ("color", "cutout")
    assert parse_policy("") == () and parse_policy("none") == () and parse_policy("off") == ()
    with pytest.raises(OptionError, match="unknown DiffAugment op 'rotate'"):
        DiffAugment("color,rotate")
    with pytest.raises(OptionError, match="twice"):
        DiffAugment("color,color")
    from vitgan.train.options import TrainConfig

    with pytest.raises(OptionError, match="augment_p must be in"):  # checked once, by the config
        TrainConfig(augment_p=1.5)
    assert (DiffAugment().ops, DiffAugment().p) == (DiffAugment(TrainConfig().augment).ops, TrainConfig().augment_p)


# ----------------------------------------------------------------------------- identity / change
def test_p0_and_empty_policy_are_identity():
    x = _images()
    assert torch.equal(DiffAugment(p=0.0)(x), x)
    assert torch.equal(DiffAugment("none")(x), x)


def test_identity_params_are_exact():
    """Samples whose gates are all off come back bit-exact (scale uses where, colour uses
    x + (f - 1)(x - m))."""
    x = _images()
    aug = DiffAugment(p=0.8)
    params = aug.sample(x.shape, x.device, torch.Generator().manual_seed(0))
    B = x.shape[0]
    ident = {
        "brightness": torch.zeros(B), "saturation": torch.ones(B), "contrast": torch.ones(B),
        "tx": torch.zeros(B, dtype=torch.long), "ty": torch.zeros(B, dtype=torch.long),
        "scale_apply": torch.zeros(B, dtype=torch.bool), "scale": torch.ones(B),
        "cutout_apply": torch.zeros(B, dtype=torch.bool), "cy": params["cy"], "cx": params["cx"],
    }
    assert torch.equal(aug.apply(x, ident), x)


def test_p1_changes_every_image():
    x = _images(b=8)
    for policy in ("color", "translation", "cutout", "scale", "translation,color,cutout,scale"):
        y = DiffAugment(policy, p=1.0)(x, generator=torch.Generator().manual_seed(3))
        assert y.shape == x.shape and y.dtype == x.dtype
        changed = (y - x).abs().flatten(1).amax(1) > 1e-6
        # translation may draw (0, 0) for a sample: with 9x9 shifts that is rare, allow one.
        assert changed.sum() >= (7 if policy == "translation" else 8), policy


def test_gate_probability():
    x = torch.zeros(4000, 1, 4, 4)
    y = DiffAugment("color", p=0.8)(x, generator=torch.Generator().manual_seed(0))
    # brightness alone moves a constant image; fraction of moved samples ~ 0.8
    frac = (y.flatten(1).abs().amax(1) > 0).float().mean().item()
    assert abs(frac - 0.8) < 0.03


# ----------------------------------------------------------------------------- colour formulas
def test_colour_ops_match_formulas():
    x = _images(b=4)
    v = torch.tensor([-0.4, 0.0, 0.2, 0.49])
    f = torch.tensor([0.0, 1.0, 1.7, 0.3])
    torch.testing.assert_close(brightness(x, v), x + v.view(-1, 1, 1, 1))
    m_c = x.mean(1, keepdim=True)
    torch.testing.assert_close(saturation(x, f), (x - m_c) * f.view(-1, 1, 1, 1) + m_c)
    m = x.mean((1, 2, 3), keepdim=True)
    torch.testing.assert_close(contrast(x, f), (x - m) * f.view(-1, 1, 1, 1) + m)
    # saturation 0 gives grey images: every channel equals the channel mean
    assert torch.allclose(saturation(x, torch.zeros(4))[:, 0], x.mean(1), atol=1e-6)


def test_colour_param_ranges_and_composition():
    x = _images(b=512, h=4, w=4)
    aug = DiffAugment("color", p=1.0)
    params = aug.sample(x.shape, "cpu", torch.Generator().manual_seed(5))
    b, s, c = params["brightness"], params["saturation"], params["contrast"]
    assert b.min() >= -0.5 and b.max() < 0.5
    assert s.min() >= 0 and s.max() < 2
    assert c.min() >= 0.5 and c.max() < 1.5
    ref = contrast(saturation(brightness(x, b), s), c)
    torch.testing.assert_close(aug.apply(x, params), ref)


# ----------------------------------------------------------------------------- translation
@pytest.mark.parametrize("tx,ty", [(0, 0), (2, 0), (0, -3), (-4, 4), (1, -1), (5, 2)])
def test_translate_matches_roll_with_zero_fill(tx, ty):
    x = _images(b=2, h=8, w=12)
    B = x.shape[0]
    y = translate(x, torch.full((B,), tx), torch.full((B,), ty))
    assert torch.equal(y, _shift_ref(x, tx, ty))


def test_translate_per_sample_shifts():
    x = _images(b=3, h=8, w=8)
    tx, ty = torch.tensor([1, -2, 3]), torch.tensor([0, 2, -1])
    y = translate(x, tx, ty)
    for i in range(3):
        assert torch.equal(y[i], _shift_ref(x[i], int(tx[i]), int(ty[i])))


def test_translation_op_is_integer_shift_within_eighth():
    x = _images(b=8, h=16, w=16)
    y = DiffAugment("translation", p=1.0)(x, generator=torch.Generator().manual_seed(2))
    r = 2  # 16 / 8
    for i in range(8):
        hits = [(tx, ty) for tx in range(-r, r + 1) for ty in range(-r, r + 1)
                if torch.equal(y[i], _shift_ref(x[i], tx, ty))]
        assert len(hits) == 1, i


# ----------------------------------------------------------------------------- cutout
def test_cutout_zeroes_exactly_the_rectangle():
    x = _images(b=3, h=8, w=8) + 3.0  # no zeros in the input
    cy, cx = torch.tensor([4, 0, 8]), torch.tensor([4, 7, 2])
    y = cutout(x, cy, cx, (4, 4))
    for i in range(3):
        mask = torch.ones(8, 8)
        top, left = int(cy[i]) - 2, int(cx[i]) - 2
        mask[max(top, 0):max(top + 4, 0), max(left, 0):max(left + 4, 0)] = 0
        assert torch.equal(y[i], x[i] * mask)
    assert (y[0] == 0).sum() == 3 * 16  # a full 4x4 hole in every channel
    apply = torch.tensor([True, False, True])
    assert torch.equal(cutout(x, cy, cx, (4, 4), apply=apply)[1], x[1])


def test_cutout_op_is_half_size_zero_square():
    x = _images(b=16, h=16, w=16) + 3.0
    y = DiffAugment("cutout", p=1.0)(x, generator=torch.Generator().manual_seed(4))
    zeros = (y == 0).all(1)  # (B, H, W)
    for i in range(16):
        rows, cols = zeros[i].any(1).nonzero().flatten(), zeros[i].any(0).nonzero().flatten()
        assert 1 <= len(rows) <= 8 and 1 <= len(cols) <= 8
        # the zeros form one axis-aligned rectangle (clipped 8x8 square)
        assert zeros[i].sum() == len(rows) * len(cols)
        assert torch.equal(y[i][:, ~zeros[i]], x[i][:, ~zeros[i]])
    assert (zeros.flatten(1).sum(1) == 64).any()  # some squares are not clipped


# ----------------------------------------------------------------------------- scale
def test_scale_one_is_identity_and_two_magnifies_centre():
    x = _images(b=2, h=8, w=8)
    torch.testing.assert_close(scale(x, torch.ones(2)), x, atol=1e-6, rtol=0)
    # zoom x2: output pixel centres (normalised) p read input at p/2; the central 4x4 of the
    # input is spread over the whole output, so output corners sample near input (2, 2).
    y = scale(x, torch.full((2,), 2.0))
    # output pixel (1, 1) has normalised centre -0.625 -> reads -0.3125 -> input pixel 2.25
    ref = 0.75 * 0.75 * x[..., 2, 2] + 0.75 * 0.25 * (x[..., 2, 3] + x[..., 3, 2]) + 0.0625 * x[..., 3, 3]
    torch.testing.assert_close(y[..., 1, 1], ref)
    # zoom 0.5 pads with zeros: the border quarter is 0
    z = scale(x, torch.full((2,), 0.5))
    assert torch.equal(z[..., 0, :], torch.zeros_like(z[..., 0, :]))


@pytest.mark.parametrize("h,w", [(8, 8), (9, 14), (32, 32)])
def test_scale_equals_grid_sample_bilinear_zero_padding(h, w):
    x = _images(b=5, h=h, w=w)
    s = torch.tensor([0.8, 0.93, 1.0, 1.17, 1.25])
    theta = torch.zeros(5, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / s
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    ref = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    torch.testing.assert_close(scale(x, s), ref, atol=1e-5, rtol=1e-5)


def test_augment_graph_is_twice_differentiable_everywhere():
    """No grid_sample in the graph: its backward has no derivative in older PyTorch (2.11 on
    CUDA), which breaks lazy R1 through the augmentation."""
    x = _images(b=4).requires_grad_(True)
    y = DiffAugment(p=1.0)(x, generator=torch.Generator().manual_seed(0))
    seen, stack = set(), [y.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        assert "GridSampler" not in type(fn).__name__
        stack.extend(f for f, _ in fn.next_functions)
    (g,) = torch.autograd.grad((y ** 2).sum(), x, create_graph=True)
    g.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_scale_range_is_log_uniform():
    aug = DiffAugment("scale", p=1.0)
    s = aug.sample((20000, 3, 8, 8), "cpu", torch.Generator().manual_seed(0))["scale"]
    assert s.min() >= 0.8 - 1e-6 and s.max() <= 1.25 + 1e-6
    assert abs(torch.log(s).mean().item()) < 0.01  # symmetric in log space
    assert abs((s > 1).float().mean().item() - 0.5) < 0.02


# ----------------------------------------------------------------------------- autograd, rng
@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "scale", "translation,color,cutout,scale"])
def test_gradients_flow_through_every_op(policy):
    x = _images(b=4).requires_grad_(True)
    y = DiffAugment(policy, p=1.0)(x, generator=torch.Generator().manual_seed(0))
    w = torch.randn_like(y)
    (y * w).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # the gradient is exactly the adjoint: <grad, v> equals the directional derivative
    if policy in ("translation", "cutout"):  # linear ops: y(x) = L x
        aug = DiffAugment(policy, p=1.0)
        params = aug.sample(x.shape, "cpu", torch.Generator().manual_seed(0))
        v = torch.randn_like(x)
        lhs = (x.grad * v).sum()
        rhs = (aug.apply(v, params) * w).sum()
        torch.testing.assert_close(lhs, rhs)


def test_reproducible_with_generator():
    x = _images(b=8)
    aug = DiffAugment(p=0.8)
    a = aug(x, generator=torch.Generator().manual_seed(7))
    b = aug(x, generator=torch.Generator().manual_seed(7))
    c = aug(x, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(1)
    d = aug(x)
    torch.manual_seed(1)
    assert torch.equal(d, aug(x))  # without a generator: the global RNG


def test_bfloat16_images():
    x = _images(b=4).bfloat16()
    y = DiffAugment(p=1.0)(x, generator=torch.Generator().manual_seed(0))
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()


def test_odd_sizes_and_non_square():
    x = _images(b=3, h=9, w=14)
    y = DiffAugment(p=1.0)(x, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    assert math.isfinite(y.sum().item())
