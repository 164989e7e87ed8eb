"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

ViTGAN (paper section 4) applies translation, colour, cutout and scaling to every image the
discriminator sees, real and fake, in both players' steps, each op with probability 0.8.

Everything here is batched and stays on the images' device: one ``torch.rand`` call draws every
random number a batch needs, each sample gets its own parameters, and a sample that skips an op
gets that op's identity parameters (shift 0, factor 1, empty cutout, scale 1), so there is no
per-sample Python loop, no boolean indexing and no host-device synchronisation. Every op is
differentiable with respect to the images, so the generator is trained through it.

Images are float NCHW in [-1, 1]. As in the reference DiffAugment code (which also works on
[-1, 1] images), translation and scaling pad with 0 and cutout writes 0: in [-1, 1] space that is
mid-grey, not black.

The ops, with the parameters drawn per sample (``u ~ U[0, 1)``):

============ ================================================================================
brightness   ``x + (u - 0.5)``                                     (shift in [-0.5, 0.5))
saturation   ``mean_c + (x - mean_c) * 2u``, mean over channels     (factor in [0, 2))
contrast     ``mean + (x - mean) * (u + 0.5)``, mean over C, H, W   (factor in [0.5, 1.5))
translation  integer shift in ``[-r, r]`` per axis, ``r = round(size / 8)``, zero fill
cutout       a zeroed rectangle of half the image's height and width, centre anywhere in the
             image (it may be clipped by the border), as in DiffAugment
scale        isotropic zoom about the centre by ``s``, log-uniform in [0.8, 1.25] (so zooming
             in and out by the same factor are equally likely; s > 1 magnifies and crops,
             s < 1 shrinks and pads with zeros); bilinear, zero padding
============ ================================================================================

"color" in a policy means brightness, saturation and contrast; each of the three is gated
independently with probability ``p`` (as StyleGAN2-ADA gates its colour ops). Translation (both
axes together), cutout and scale each have one gate.

The policy chooses which ops run; they always run in one fixed order, whatever the order in the
policy string: colour, translation, scale, cutout (DiffAugment's order, with the second geometric
op next to the first, and cutout last so its rectangle is exactly zero in the output).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vitgan.errors import OptionError

__all__ = [
    "OPS",
    "DEFAULT_POLICY",
    "DEFAULT_P",
    "DiffAugment",
    "brightness",
    "saturation",
    "contrast",
    "translate",
    "cutout",
    "scale",
]

#: Op names a policy may contain, in the order they are applied.
OPS = ("color", "translation", "scale", "cutout")
#: The paper's policy (section 4: translation, colour, cutout and scaling, each with probability
#: 0.8): the defaults of DiffAugment and of the training options ``augment`` / ``augment_p``.
DEFAULT_POLICY = "translation,color,cutout,scale"
DEFAULT_P = 0.8

# Columns of the uniform draw each op consumes: gates first, then parameters.
_COLUMNS = {"color": 6, "translation": 3, "scale": 2, "cutout": 3}


def _per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) parameters -> (B, 1, 1, 1) in x's dtype and device, for broadcasting."""
    return v.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


# --------------------------------------------------------------------------- functional ops
def brightness(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``x + shift`` per sample; ``shift`` has shape (B,)."""
    return x + _per_sample(shift, x)


def saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``mean_c + (x - mean_c) * factor``, mean over channels; written as
    ``x + (factor - 1) * (x - mean_c)`` so that factor 1 returns x exactly."""
    mean = x.mean(dim=1, keepdim=True)
    return x + (_per_sample(factor, x) - 1) * (x - mean)


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``mean + (x - mean) * factor``, mean over (C, H, W) per sample (exact for factor 1)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return x + (_per_sample(factor, x) - 1) * (x - mean)


def translate(x: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """Move each image's content by (tx, ty) whole pixels (right, down), filling with zeros.

    ``out[b, :, i, j] = x[b, :, i - ty[b], j - tx[b]]`` where that pixel exists, else 0.
    ``tx`` and ``ty`` are integer tensors of shape (B,). One ``gather`` on the zero-padded
    images: differentiable with respect to x, no host synchronisation.
    """
    B, C, H, W = x.shape
    dev = x.device
    tx = tx.to(device=dev, dtype=torch.long).view(B, 1)
    ty = ty.to(device=dev, dtype=torch.long).view(B, 1)
    # Indices into the image padded by one zero pixel on every side: 0 and H+1 are padding.
    rows = (torch.arange(H, device=dev).view(1, H) - ty).clamp_(-1, H) + 1  # (B, H)
    cols = (torch.arange(W, device=dev).view(1, W) - tx).clamp_(-1, W) + 1  # (B, W)
    index = (rows.view(B, H, 1) * (W + 2) + cols.view(B, 1, W)).view(B, 1, H * W)
    padded = F.pad(x, (1, 1, 1, 1)).flatten(2)  # (B, C, (H+2)*(W+2))
    return padded.gather(2, index.expand(B, C, H * W)).view(B, C, H, W)


def cutout(
    x: torch.Tensor,
    cy: torch.Tensor,
    cx: torch.Tensor,
    size: tuple[int, int],
    apply: torch.Tensor | None = None,
) -> torch.Tensor:
    """Set a ``size = (h, w)`` rectangle to 0 in each image (DiffAugment's cutout).

    The rectangle covers rows ``[cy - h // 2, cy - h // 2 + h)`` and columns
    ``[cx - w // 2, cx - w // 2 + w)``, clipped to the image; ``cy``, ``cx`` are integer tensors
    of shape (B,). Where ``apply`` (bool, (B,)) is False the image is left unchanged.
    """
    B, _, H, W = x.shape
    dev = x.device
    h, w = size
    top = cy.to(device=dev, dtype=torch.long).view(B, 1) - h // 2
    left = cx.to(device=dev, dtype=torch.long).view(B, 1) - w // 2
    r = torch.arange(H, device=dev).view(1, H)
    c = torch.arange(W, device=dev).view(1, W)
    in_rows = (r >= top) & (r < top + h)  # (B, H)
    in_cols = (c >= left) & (c < left + w)  # (B, W)
    hole = in_rows.view(B, H, 1) & in_cols.view(B, 1, W)
    if apply is not None:
        hole = hole & apply.to(dev).view(B, 1, 1)
    return x * (~hole).to(x.dtype).unsqueeze(1)


def _bilinear_weights(n: int, inv_s: torch.Tensor) -> torch.Tensor:
    """(B, n, n) 1-D bilinear resampling matrices for a zoom by 1/inv_s about the centre.

    Output pixel i has normalised centre ``(2i + 1) / n - 1``; it reads the input at that
    position times ``inv_s``, i.e. at pixel coordinate ``p_i``, with weight
    ``max(0, 1 - |p_i - k|)`` on input pixel k (the hat function: bilinear interpolation, and 0
    outside the image, so zero padding comes for free).
    """
    ar = torch.arange(n, device=inv_s.device, dtype=torch.float32)
    centres = (2 * ar + 1) / n - 1  # (n,)
    src = ((centres.view(1, n) * inv_s.view(-1, 1) + 1) * n - 1) / 2  # (B, n) pixel coords
    return (1 - (src.unsqueeze(2) - ar.view(1, 1, n)).abs()).clamp_(min=0)


def scale(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Zoom each image about its centre by ``s`` (B,): s > 1 magnifies (content grows, borders
    are cropped), s < 1 shrinks (borders are padded with 0).

    Identical to ``F.grid_sample(x, affine_grid(diag(1/s)), "bilinear", padding_mode="zeros",
    align_corners=False)``, computed as ``Ry @ x @ Rx^T`` with per-sample 1-D bilinear matrices
    (an axis-aligned zoom is separable). Plain matrix products are twice differentiable, which
    lazy R1 through the augmentation needs (``grid_sample``'s backward has no derivative in
    older PyTorch releases, e.g. 2.11 on CUDA), and cheap: O(B C H W (H + W)).
    """
    _, _, H, W = x.shape
    inv = 1.0 / s.to(device=x.device, dtype=torch.float32)
    ry = _bilinear_weights(H, inv).to(x.dtype).unsqueeze(1)  # (B, 1, H, H)
    rx = _bilinear_weights(W, inv).to(x.dtype).unsqueeze(1)  # (B, 1, W, W)
    return ry @ x @ rx.transpose(-1, -2)


# --------------------------------------------------------------------------- the policy
def parse_policy(policy: str) -> tuple[str, ...]:
    """``"translation,color,cutout,scale"`` -> the ops in application order (see ``OPS``).

    ``""``, ``"none"`` and ``"off"`` mean no augmentation. Raises ``OptionError`` on unknown or
    repeated names.
    """
    text = policy.strip().lower()
    if text in ("", "none", "off"):
        return ()
    names = [n.strip() for n in text.split(",")]
    for n in names:
        if n not in OPS:
            raise OptionError(
                f"unknown DiffAugment op {n!r} in policy {policy!r}; "
                f"use a comma-separated subset of {', '.join(OPS)} (or 'none')"
            )
    if len(set(names)) != len(names):
        raise OptionError(f"DiffAugment policy {policy!r} names an op twice; name each op once")
    return tuple(op for op in OPS if op in names)


class DiffAugment:
    """Differentiable augmentation with per-sample probability ``p`` for each op.

    ``DiffAugment(policy="translation,color,cutout,scale", p=0.8)(x, generator=None)``

    ``x``: float (B, C, H, W) in [-1, 1] on any device. ``generator``: an optional
    ``torch.Generator`` for reproducible draws (one per rank); put it on x's device for the fast
    path (a generator on another device draws there and the parameters are copied over).
    ``p = 0`` returns x itself; otherwise every sample gets independent parameters.

    ``sample(batch, device, generator)`` and ``apply(x, params)`` are the two halves of a call,
    for tests and for reusing one draw.
    """

    def __init__(
        self,
        policy: str = DEFAULT_POLICY,
        p: float = DEFAULT_P,
        *,
        translation_ratio: float = 0.125,
        cutout_ratio: float = 0.5,
        scale_range: tuple[float, float] = (0.8, 1.25),
    ):
        p = float(p)  # in [0, 1]: the training option augment_p is validated at resolution
        lo, hi = (float(v) for v in scale_range)
        if not 0.0 < lo <= hi:
            raise OptionError(f"DiffAugment scale_range={scale_range} is invalid; use 0 < lo <= hi")
        self.policy = policy
        self.ops = parse_policy(policy)
        self.p = p
        self.translation_ratio = float(translation_ratio)
        self.cutout_ratio = float(cutout_ratio)
        self.scale_range = (lo, hi)

    def __repr__(self) -> str:
        return f"DiffAugment(policy={','.join(self.ops) or 'none'!r}, p={self.p})"

    @property
    def enabled(self) -> bool:
        return bool(self.ops) and self.p > 0.0

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.enabled:
            return x
        return self.apply(x, self.sample(x.shape, x.device, generator))

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        shape: torch.Size | tuple[int, ...],
        device: torch.device | str,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Draw per-sample parameters for images of ``shape`` (B, C, H, W) on ``device``.

        Samples that skip an op get its identity parameters. Returns a dict of (B,) tensors.
        """
        B, _, H, W = shape
        device = torch.device(device)
        ncol = sum(_COLUMNS[op] for op in self.ops)
        draw_dev = generator.device if generator is not None else device
        u = torch.rand(B, ncol, generator=generator, device=draw_dev)
        if u.device != device:
            u = u.to(device, non_blocking=True)
        cols = iter(u.unbind(1))
        p = self.p
        params: dict[str, torch.Tensor] = {}
        for op in self.ops:
            if op == "color":
                gb, gs, gc, ub, us, uc = (next(cols) for _ in range(6))
                params["brightness"] = torch.where(gb < p, ub - 0.5, 0.0)
                params["saturation"] = torch.where(gs < p, us * 2.0, 1.0)
                params["contrast"] = torch.where(gc < p, uc + 0.5, 1.0)
            elif op == "translation":
                g, ux, uy = next(cols), next(cols), next(cols)
                rx = int(W * self.translation_ratio + 0.5)
                ry = int(H * self.translation_ratio + 0.5)
                on = (g < p).long()
                params["tx"] = _randint(ux, -rx, rx) * on
                params["ty"] = _randint(uy, -ry, ry) * on
            elif op == "scale":
                g, us = next(cols), next(cols)
                lo, hi = self.scale_range
                s = torch.exp(math.log(lo) + us * (math.log(hi) - math.log(lo)))
                on = g < p
                params["scale_apply"] = on
                params["scale"] = torch.where(on, s, 1.0)
            elif op == "cutout":
                g, uy, ux = next(cols), next(cols), next(cols)
                h, w = self._cutout_size(H, W)
                # DiffAugment: centre in [0, size + (1 - cut % 2)) along each axis.
                params["cutout_apply"] = g < p
                params["cy"] = _randint(uy, 0, H - h % 2)
                params["cx"] = _randint(ux, 0, W - w % 2)
        return params

    def _cutout_size(self, H: int, W: int) -> tuple[int, int]:
        return int(H * self.cutout_ratio + 0.5), int(W * self.cutout_ratio + 0.5)

    # ------------------------------------------------------------------ applying
    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Apply drawn ``params`` (from ``sample``) to x in the fixed op order."""
        if x.ndim != 4:
            raise ValueError(f"DiffAugment expects (B, C, H, W) images, got shape {tuple(x.shape)}")
        for op in self.ops:
            if op == "color":
                x = brightness(x, params["brightness"])
                x = saturation(x, params["saturation"])
                x = contrast(x, params["contrast"])
            elif op == "translation":
                x = translate(x, params["tx"], params["ty"])
            elif op == "scale":
                on = params["scale_apply"].to(x.device).view(-1, 1, 1, 1)
                x = torch.where(on, scale(x, params["scale"]), x)  # exact identity when skipped
            elif op == "cutout":
                size = self._cutout_size(x.shape[2], x.shape[3])
                x = cutout(x, params["cy"], params["cx"], size, apply=params["cutout_apply"])
        return x


def _randint(u: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """Uniform integers in [low, high] (inclusive) from uniforms u in [0, 1)."""
    n = high - low + 1
    return (u * n).floor().clamp_(max=n - 1).long() + low


class ConsistencyTransform:
    """bCR's transform T (Zhao et al. 2021, "Improved Consistency Regularization for GANs"):
    a random horizontal flip and a random translation by up to ``translation_ratio`` of the
    image size (4 pixels at 32x32), zero fill; independent per sample, differentiable.

    The bCR paper uses exactly this mild T ("flipping and shifting by a few pixels"). It is
    applied on top of the DiffAugment view D already sees; penalising D for changing its
    output under *strong* augmentations (a second DiffAugment draw: cutout, colour, scaling)
    drives a young ViT discriminator to a constant output (measured: logits collapse to 0).
    """

    def __init__(self, *, translation_ratio: float = 0.125, flip: bool = True):
        self.translation_ratio = float(translation_ratio)
        self.flip = bool(flip)

    def __repr__(self) -> str:
        return f"ConsistencyTransform(translation_ratio={self.translation_ratio}, flip={self.flip})"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        B, _, H, W = x.shape
        draw_dev = generator.device if generator is not None else x.device
        u = torch.rand(B, 3, generator=generator, device=draw_dev).to(x.device)
        if self.flip:
            x = torch.where((u[:, 0] < 0.5).view(B, 1, 1, 1), x.flip(3), x)
        rx, ry = round(W * self.translation_ratio), round(H * self.translation_ratio)
        return translate(x, _randint(u[:, 1], -rx, rx), _randint(u[:, 2], -ry, ry))

