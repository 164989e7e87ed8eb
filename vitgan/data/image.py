"""Decode one image into a uint8 (C, H, W) array at the requested resolution and channels.

This is the single place where pixels are converted; every source goes through it.

Geometry
    The centred square of side ``min(w, h)`` is cropped (offset ``(w - side) // 2``, whole
    pixels) and resized to ``resolution x resolution`` with a Lanczos (antialiased) filter.
    That is "resize the shorter side to the resolution, then centre-crop the longer one", with
    the crop done first so that no pixel outside the square bleeds in (StyleGAN's dataset_tool
    does the same). An image already square at the resolution is not resampled. JPEGs are
    decoded at full size (no DCT-domain ``draft`` scaling: it changes pixels, and FID is
    sensitive to how images are resized).
CelebA crop (``crop="celeba"``)
    The aligned 178x218 faces are first cropped to the centred 108x108 square (columns 35..142,
    rows 55..162, as in DCGAN-tensorflow and most GAN papers that report CelebA 64x64), then
    resized to the resolution. For a copy of another size, the crop keeps the same proportion:
    side = round(min(w, h) * 108 / 178).
Colour
    RGB stays RGB; grey, 1-bit, CMYK, YCbCr, ... convert to RGB (or to grey, ITU-R 601 luma,
    when channels=1); palette images convert through RGBA when they carry transparency; any
    alpha channel is composited onto a white background; 16-bit images (I;16) are scaled to
    8 bits (v / 257, rounded); 32-bit integer or float grey images are clipped to 0..255
    (floats in 0..1 are scaled by 255 first). EXIF orientation is applied.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = frozenset(
    ".png .jpg .jpeg .jpe .jfif .bmp .gif .webp .tif .tiff .ppm .pgm .pbm .pnm .tga .ico".split()
)
CELEBA_CROP = 108 / 178  # crop side as a fraction of the shorter side (108 px of 178)


def is_image_name(name: str) -> bool:
    """Whether a file name (or archive member path) looks like an image we should read."""
    base = name.rsplit("/", 1)[-1]
    if base.startswith(".") or "__MACOSX/" in name:
        return False
    return os.path.splitext(base)[1].lower() in IMAGE_EXTENSIONS


def _crop_box(w: int, h: int, crop: str | None) -> tuple[int, int, int, int]:
    side = max(1, round(min(w, h) * CELEBA_CROP)) if crop == "celeba" else min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return (left, top, left + side, top + side)


def _to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Convert any PIL mode to "RGB" (channels=3) or "L" (channels=1)."""
    target = "RGB" if channels == 3 else "L"
    mode = img.mode
    if mode == target:
        return img
    if mode.startswith("I;16"):
        a = np.asarray(img).astype(np.uint32)
        img = Image.fromarray(((a + 128) // 257).astype(np.uint8))
    elif mode in ("I", "F"):
        a = np.asarray(img).astype(np.float64)
        if mode == "F" and a.size and np.nanmax(a) <= 1.0:
            a = a * 255.0
        img = Image.fromarray(np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8))
    elif mode in ("P", "PA"):
        transparent = mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA" if transparent else "RGB")
    if img.mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert(target) if img.mode != target else img


def convert_pil(img: Image.Image, resolution: int, channels: int, crop: str | None = None) -> np.ndarray:
    """A PIL image (not yet loaded is fine) -> uint8 array (C, resolution, resolution)."""
    img.load()  # raises on truncated / corrupt data
    img = ImageOps.exif_transpose(img) if img.getexif() else img
    img = _to_mode(img, channels)
    box = _crop_box(*img.size, crop)
    if box != (0, 0, *img.size):
        img = img.crop(box)
    if img.size != (resolution, resolution):
        img = img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    a = np.asarray(img)
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return np.ascontiguousarray(a)


def convert_array(a: np.ndarray, resolution: int, channels: int, crop: str | None = None) -> np.ndarray:
    """A uint8 HWC (or HW) array -> uint8 array (C, resolution, resolution)."""
    if a.ndim == 2:
        a = a[:, :, None]
    h, w, c = a.shape
    if (h, w, c) == (resolution, resolution, channels) and crop is None:
        return np.ascontiguousarray(a.transpose(2, 0, 1))
    img = Image.fromarray(np.ascontiguousarray(a[:, :, 0] if c == 1 else a))  # L, RGB or RGBA
    return convert_pil(img, resolution, channels, crop)


def decode(payload, resolution: int, channels: int, crop: str | None = None) -> np.ndarray:
    """Encoded bytes, a file path or a HWC uint8 array -> uint8 (C, resolution, resolution).

    Raises an exception (OSError, ValueError, ...) when the data cannot be decoded; callers count
    and skip those.
    """
    if isinstance(payload, np.ndarray):
        return convert_array(payload, resolution, channels, crop)
    if isinstance(payload, (bytes, bytearray, memoryview)):
        payload = io.BytesIO(payload)
    with Image.open(payload) as img:
        return convert_pil(img, resolution, channels, crop)
