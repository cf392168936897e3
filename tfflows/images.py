"""Turning model samples into pictures: uint8 conversion and PNG grids."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from tfflows.io import atomic_path

__all__ = ["to_uint8", "image_grid", "save_grid"]


def to_uint8(x, num_bits: int = 8) -> np.ndarray:
    """Pixel levels in [0, 2ⁿ) (floats) → uint8 in 0..255, rounding down and clipping."""
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("to_uint8: expected finite pixel values, got NaN or infinity.")
    levels = np.clip(np.floor(x), 0, 2 ** num_bits - 1)
    return (levels * (255.0 / (2 ** num_bits - 1))).round().astype(np.uint8)


def image_grid(images: np.ndarray, rows: int | None = None, pad: int = 1) -> np.ndarray:
    """Tiles [N, H, W, C] uint8 images into one [rows·(H+pad), cols·(W+pad), C] picture."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"image_grid: expected images shaped [N, H, W, C], got shape {images.shape}.")
    n, h, w, c = images.shape
    rows = rows or int(math.ceil(math.sqrt(n)))
    cols = int(math.ceil(n / rows))
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top:top + h, left:left + w] = images[i]
    return grid


def save_grid(path: str, rows_of_images: Sequence[np.ndarray], scale: int = 1) -> None:
    """Saves a PNG with one row of images per entry of ``rows_of_images`` (e.g. per temperature).

    The PNG is written under a temporary name in the same folder and renamed
    into place, so an interrupted save leaves the old picture whole.
    """
    from PIL import Image

    rows = [image_grid(r, rows=1) for r in rows_of_images]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    picture = np.concatenate(rows, axis=0)
    if picture.shape[-1] == 1:
        picture = picture[..., 0]
    img = Image.fromarray(picture)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    with atomic_path(path) as tmp:
        img.save(tmp)  # the temporary name keeps the suffix, which picks the format
