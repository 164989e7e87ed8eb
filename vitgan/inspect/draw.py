"""Pictures of attention and saliency: heat maps over images, in labelled grids (numpy + PIL).

Colour scale: attention is drawn on ONE fixed scale, never per map, so that a collapsed map looks
collapsed: a token's share p_j of the query's attention is shown as ``p_j * L / SATURATE`` over L
key tokens (uniform attention: 1/SATURATE of full colour; a token holding SATURATE x its uniform
share or more: full colour). The query's attention to ITSELF (D's class token on itself, G's token
on itself) is the bar on the right of each cell, 0 at the bottom to 1 at the top: a D whose class
token attends only to itself shows full bars over dark maps. Saliency has no natural unit and is
drawn per image, up to its 99th percentile.
"""

from __future__ import annotations

import numpy as np

SATURATE = 4.0      # a token with 4x its uniform share of attention is drawn at full colour
ALPHA = 0.7         # weight of the heat colour over the (dimmed, grey) image
BAR = 5             # width in pixels of the self-attention bar beside each cell
PAD = 2             # pixels between cells
MIN_CELL = 96       # cells are enlarged (nearest neighbour) to at least this many pixels


def _lut() -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def zoom_for(resolution: int) -> int:
    return max(1, -(-MIN_CELL // resolution))


def attention_heat(row: np.ndarray, side: int) -> np.ndarray:
    """Shares of L = side^2 key tokens (row-major) -> (side, side) heat in [0, 1] on the fixed scale."""
    return np.clip(np.asarray(row, dtype=np.float64).reshape(side, side) * row.size / SATURATE, 0, 1)


def saliency_heat(s: np.ndarray) -> np.ndarray:
    """(H, W) gradient magnitudes -> [0, 1], divided by the image's 99th percentile."""
    top = float(np.percentile(s, 99))
    return np.clip(s / top, 0, 1) if top > 0 else np.zeros_like(s, dtype=np.float64)


def overlay(rgb: np.ndarray, heat: np.ndarray | None, alpha: float = ALPHA) -> np.ndarray:
    """uint8 (H, W, 3) image with an (h, w) heat map in [0, 1] over it (h, w dividing H, W: each
    token's cell painted in one colour) -> uint8 (H, W, 3). ``heat`` None: the image itself."""
    if heat is None:
        return rgb
    hh, ww = rgb.shape[0] // heat.shape[0], rgb.shape[1] // heat.shape[1]
    big = np.repeat(np.repeat(heat, hh, axis=0), ww, axis=1)
    colour = _lut()[np.round(big * 255).astype(np.int64)].astype(np.float64)
    grey = rgb.astype(np.float64).mean(-1, keepdims=True) * 0.6
    return np.round((1 - alpha) * grey + alpha * colour).astype(np.uint8)


def heat_only(heat: np.ndarray, size: int) -> np.ndarray:
    """An (h, w) heat map alone, as uint8 (size, size, 3)."""
    return overlay(np.zeros((size, size, 3), np.uint8), heat, alpha=1.0)


def mark(rgb: np.ndarray, token: int, side: int, colour=(0, 255, 120)) -> np.ndarray:
    """Outline token ``token``'s cell of a side x side token grid on the image (a copy)."""
    out = rgb.copy()
    p = rgb.shape[0] // side
    r, c = divmod(token, side)
    y0, x0, y1, x1 = r * p, c * p, (r + 1) * p - 1, (c + 1) * p - 1
    out[y0, x0:x1 + 1] = out[y1, x0:x1 + 1] = colour
    out[y0:y1 + 1, x0] = out[y0:y1 + 1, x1] = colour
    return out


def labelled_grid(cells, *, rows: list[str], cols: list[str], bars=None, zoom: int = 1, footer: str = ""):
    """cells[r][c]: uint8 (H, W, 3); bars[r][c]: a value in [0, 1] drawn as the bar beside the
    cell (None: no bar). Column labels on top, row labels on the left -> a PIL RGB image."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    h, w = cells[0][0].shape[0] * zoom, cells[0][0].shape[1] * zoom
    cw = w + BAR + PAD
    left = 8 + max(int(font.getlength(t)) for t in rows)
    top, bottom = 16, (16 if footer else 0)
    width = max(left + cw * len(cols), 8 + int(font.getlength(footer)))
    img = Image.new("RGB", (width, top + (h + PAD) * len(rows) + bottom), (24, 24, 24))
    draw = ImageDraw.Draw(img)
    for j, t in enumerate(cols):
        draw.text((left + j * cw, 2), t, fill=(230, 230, 230), font=font)
    for i, t in enumerate(rows):
        y = top + i * (h + PAD)
        draw.text((4, y + h // 2 - 6), t, fill=(230, 230, 230), font=font)
        for j, cell in enumerate(cells[i]):
            x = left + j * cw
            img.paste(Image.fromarray(np.repeat(np.repeat(cell, zoom, 0), zoom, 1)), (x, y))
            value = None if bars is None else bars[i][j]
            if value is not None:
                fill = int(round(float(np.clip(value, 0, 1)) * h))
                draw.rectangle((x + w, y, x + w + BAR - 1, y + h - 1), fill=(60, 60, 60))
                if fill:
                    draw.rectangle((x + w, y + h - fill, x + w + BAR - 1, y + h - 1), fill=(0, 200, 255))
    if footer:
        draw.text((4, img.height - 14), footer, fill=(200, 200, 200), font=font)
    return img


ATTENTION_FOOTER = (f"colour: share of attention (uniform = 1/{SATURATE:g} of full, {SATURATE:g}x uniform = full); "
                    "blue bar: the query token's attention to itself (0-1)")

__all__ = ["SATURATE", "zoom_for", "attention_heat", "saliency_heat", "overlay", "heat_only", "mark",
           "labelled_grid", "ATTENTION_FOOTER"]
