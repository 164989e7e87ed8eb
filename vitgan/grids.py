"""Image grids: what reals.png / fakes<nimg>.png, ``vitgan sample --out grid.png`` and an
export's samples.png are made of (torchvision's ``make_grid``, no padding)."""

from __future__ import annotations

import math

__all__ = ["grid_image", "uint8_grid", "near_square"]


def grid_image(images, nrow: int):
    """float (N, C, H, W), nominally in [-1, 1] -> a PIL image of an ``nrow``-wide grid, no padding
    (pixels as ``vitgan sample`` writes them: ``models.sampling.to_uint8_hwc``)."""
    from vitgan.models.sampling import to_uint8_hwc

    return uint8_grid(to_uint8_hwc(images), nrow)


def uint8_grid(images, nrow: int):
    """uint8 (N, H, W, C) array -> a PIL image of an ``nrow``-wide grid (torchvision's make_grid,
    no padding; empty cells of the last row black)."""
    import torch
    from PIL import Image
    from torchvision.utils import make_grid

    grid = make_grid(torch.from_numpy(images).permute(0, 3, 1, 2), nrow=nrow, padding=0)
    arr = grid.permute(1, 2, 0).numpy()
    if arr.shape[2] == 1:
        return Image.fromarray(arr[:, :, 0], "L")
    return Image.fromarray(arr, "RGB")


def near_square(n: int) -> tuple[int, int]:
    """(columns, rows) of the most square grid holding n images (columns >= rows)."""
    cols = math.ceil(math.sqrt(n))
    return cols, math.ceil(n / cols)
