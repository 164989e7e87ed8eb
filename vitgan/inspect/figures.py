"""One grid per kind, from ``maps``' numbers and uint8 images (N, H, W, 3).

    d_attention   rows: images; columns: the image, then block b head h: D's class token over the
                  patches (bar: on itself)
    d_rollout     rows: images; columns: the image, then the rollout through block 1, 2, ..., L
    g_attention   rows: fakes; columns: the image with the chosen token outlined, then block b
                  head h: that token over G's tokens (bar: on itself)
    d_saliency    rows: images; columns: the image, |dD/dx| over it, |dD/dx| alone
    run_attention one image; rows: blocks; columns: the image, each head, the mean over heads,
                  the rollout (the run folder's attention<nimg>.png)
"""

from __future__ import annotations

import math

import numpy as np

from vitgan.inspect import draw


def _side(n: int) -> int:
    side = math.isqrt(n)
    assert side * side == n, f"{n} tokens are not a square grid"
    return side


def d_attention(images, names, cls_rows):
    """cls_rows: (blocks, B, heads, N) numpy, token 0 the class token."""
    blocks, _, heads, n = cls_rows.shape
    side = _side(n - 1)
    cells, bars = [], []
    for i, img in enumerate(images):
        cells.append([img] + [draw.overlay(img, draw.attention_heat(cls_rows[b, i, h, 1:], side))
                              for b in range(blocks) for h in range(heads)])
        bars.append([None] + [float(cls_rows[b, i, h, 0]) for b in range(blocks) for h in range(heads)])
    cols = ["image"] + [f"b{b + 1} h{h + 1}" for b in range(blocks) for h in range(heads)]
    return draw.labelled_grid(cells, rows=names, cols=cols, bars=bars, zoom=draw.zoom_for(images.shape[1]),
                              footer=draw.ATTENTION_FOOTER)


def d_rollout(images, names, roll):
    """roll: (blocks, B, N) numpy, token 0 the class token."""
    blocks, _, n = roll.shape
    side = _side(n - 1)
    cells = [[img] + [draw.overlay(img, draw.attention_heat(roll[b, i, 1:], side)) for b in range(blocks)]
             for i, img in enumerate(images)]
    bars = [[None] + [float(roll[b, i, 0]) for b in range(blocks)] for i in range(len(images))]
    cols = ["image"] + [f"to b{b + 1}" for b in range(blocks)]
    return draw.labelled_grid(cells, rows=names, cols=cols, bars=bars, zoom=draw.zoom_for(images.shape[1]),
                              footer=draw.ATTENTION_FOOTER)


def g_attention(images, names, rows, token: int):
    """rows: (blocks, B, heads, L) numpy: token ``token``'s attention over G's L tokens."""
    blocks, _, heads, n = rows.shape
    side = _side(n)
    cells, bars = [], []
    for i, img in enumerate(images):
        cells.append([draw.mark(img, token, side)] + [
            draw.mark(draw.overlay(img, draw.attention_heat(rows[b, i, h], side)), token, side)
            for b in range(blocks) for h in range(heads)])
        bars.append([None] + [float(rows[b, i, h, token]) for b in range(blocks) for h in range(heads)])
    cols = [f"token {token}"] + [f"b{b + 1} h{h + 1}" for b in range(blocks) for h in range(heads)]
    return draw.labelled_grid(cells, rows=names, cols=cols, bars=bars, zoom=draw.zoom_for(images.shape[1]),
                              footer=draw.ATTENTION_FOOTER)


def d_saliency(images, names, sal):
    """sal: (B, H, W) numpy |dD/dx| (max over channels)."""
    cells = []
    for img, s in zip(images, sal):
        heat = draw.saliency_heat(s)
        cells.append([img, draw.overlay(img, heat), draw.heat_only(heat, img.shape[0])])
    return draw.labelled_grid(cells, rows=names, cols=["image", "|dD/dx| over it", "|dD/dx|"],
                              zoom=draw.zoom_for(images.shape[1]),
                              footer="colour: |dD/dx| (max over channels), per image up to its 99th percentile")


def run_attention(image, cls_rows, roll, title: str = ""):
    """One image: cls_rows (blocks, heads, N), roll (blocks, N) numpy -> rows = blocks."""
    blocks, heads, n = cls_rows.shape
    side = _side(n - 1)
    cells, bars = [], []
    for b in range(blocks):
        mean = cls_rows[b].mean(0)
        maps = [cls_rows[b, h] for h in range(heads)] + [mean, roll[b]]
        cells.append([image] + [draw.overlay(image, draw.attention_heat(m[1:], side)) for m in maps])
        bars.append([None] + [float(m[0]) for m in maps])
    cols = [title or "image"] + [f"h{h + 1}" for h in range(heads)] + ["mean", "rollout"]
    return draw.labelled_grid(cells, rows=[f"block {b + 1}" for b in range(blocks)], cols=cols, bars=bars,
                              zoom=draw.zoom_for(image.shape[0]), footer=draw.ATTENTION_FOOTER)


__all__ = ["d_attention", "d_rollout", "g_attention", "d_saliency", "run_attention"]
