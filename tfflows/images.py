"""Turning model samples into pictures: uint8 conversion, labelled grids and PNG files."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from tfflows.io import atomic_path
from tfflows.typing import TensorLike

__all__ = ["grid_picture", "image_grid", "save_grid", "save_picture", "text_mask", "to_uint8"]

# A 3×5 pixel font for row labels such as "T=0.85": enough glyphs for numbers and a
# few letters, so that labelling a grid needs neither matplotlib nor a font file.
_GLYPHS = {
    "0": ("###", "#.#", "#.#", "#.#", "###"),
    "1": (".#.", "##.", ".#.", ".#.", "###"),
    "2": ("###", "..#", "###", "#..", "###"),
    "3": ("###", "..#", ".##", "..#", "###"),
    "4": ("#.#", "#.#", "###", "..#", "..#"),
    "5": ("###", "#..", "###", "..#", "###"),
    "6": ("###", "#..", "###", "#.#", "###"),
    "7": ("###", "..#", ".#.", ".#.", ".#."),
    "8": ("###", "#.#", "###", "#.#", "###"),
    "9": ("###", "#.#", "###", "..#", "###"),
    ".": ("...", "...", "...", "...", ".#."),
    "=": ("...", "###", "...", "###", "..."),
    "-": ("...", "...", "###", "...", "..."),
    " ": ("...", "...", "...", "...", "..."),
    "T": ("###", ".#.", ".#.", ".#.", ".#."),
    "e": ("...", "###", "###", "#..", "###"),
}
GLYPH_HEIGHT, GLYPH_WIDTH = 5, 3


def text_mask(text: str, scale: int = 1) -> np.ndarray:
    """A boolean picture of ``text`` in the built-in 3×5 font (True = ink), each pixel ``scale``×``scale``.

    The shape is ``(5·scale, (4·len(text) − 1)·scale)``: glyphs are one pixel apart.

    Raises:
      ValueError: a character the font lacks, or ``scale`` < 1.
    """
    missing = sorted(set(text) - set(_GLYPHS))
    if missing:
        raise ValueError(
            f"text_mask: expected characters among {''.join(sorted(_GLYPHS))!r}, "
            f"got {''.join(missing)!r} in {text!r}."
        )
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"text_mask: scale must be a positive integer, got {scale!r}.")
    if not text:
        return np.zeros((GLYPH_HEIGHT * scale, 0), bool)
    columns = []
    for i, char in enumerate(text):
        if i:
            columns.append(np.zeros((GLYPH_HEIGHT, 1), bool))
        columns.append(np.array([[c == "#" for c in row] for row in _GLYPHS[char]]))
    mask = np.concatenate(columns, axis=1)
    return np.repeat(np.repeat(mask, scale, axis=0), scale, axis=1)


def to_uint8(x: TensorLike, num_bits: int = 8, value_range: Sequence[float] | None = None) -> np.ndarray:
    """Pixel levels (floats) → uint8 in 0..255, rounding down and clipping.

    Level ℓ = clip(⌊x⌋, lo, hi) is drawn as round(255 · (ℓ − lo) / (hi − lo)).
    By default [lo, hi] = [0, 2ⁿ − 1], all levels of ``num_bits``; data that
    fills only part of them (the 8×8 digits are levels 0..16 of 5 bits) is
    drawn at full contrast with ``value_range=(0, 16)``.

    Raises:
      ValueError: non-finite values, or a ``value_range`` that is not two
        finite levels lo < hi.
    """
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("to_uint8: expected finite pixel values, got NaN or infinity.")
    low, high = (0.0, 2.0**num_bits - 1) if value_range is None else _check_range(value_range)
    levels = np.clip(np.floor(x), low, high)
    return ((levels - low) * (255.0 / (high - low))).round().astype(np.uint8)


def _check_range(value_range) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"to_uint8: value_range must be two pixel levels (low, high), got {value_range!r}."
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"to_uint8: value_range must be finite levels with low < high, got {value_range!r}.")
    return low, high


def image_grid(images: np.ndarray, rows: int | None = None, pad: int = 1) -> np.ndarray:
    """Tiles [N, H, W, C] uint8 images into one [rows·(H+pad), cols·(W+pad), C] picture."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"image_grid: expected images shaped [N, H, W, C], got shape {images.shape}.")
    n, h, w, c = images.shape
    rows = rows or math.ceil(math.sqrt(n))
    cols = math.ceil(n / rows)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top : top + h, left : left + w] = images[i]
    return grid


def grid_picture(
    rows_of_images: Sequence[np.ndarray], scale: int = 1, labels: Sequence[str] | None = None
) -> np.ndarray:
    """One uint8 picture [H, W, C] with a row of images per entry of ``rows_of_images``.

    Each pixel becomes ``scale``×``scale``. With ``labels`` (one per row) a
    white column on the left carries each row's label in black, in the
    built-in font, centred on its row.

    Raises:
      ValueError: as many labels as rows expected, or a label the font cannot draw.
    """
    rows = [image_grid(r, rows=1) for r in rows_of_images]
    if labels is not None and len(labels) != len(rows):
        raise ValueError(f"grid_picture: expected one label per row ({len(rows)}), got {len(labels)} labels.")
    width = max(r.shape[1] for r in rows)
    heights = [r.shape[0] * scale for r in rows]
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    picture = np.concatenate(rows, axis=0)
    if scale > 1:
        picture = np.repeat(np.repeat(picture, scale, axis=0), scale, axis=1)
    if not labels:
        return picture
    # Text about a third of the row's height (at most 4× the font), one glyph's width of margin.
    size = max(1, min(4, min(heights) // (3 * GLYPH_HEIGHT)))
    masks = [text_mask(str(label), size) for label in labels]
    margin = (GLYPH_WIDTH + 1) * size
    column = np.full(
        (picture.shape[0], max(m.shape[1] for m in masks) + 2 * margin, picture.shape[2]), 255, np.uint8
    )
    top = 0
    for mask, height in zip(masks, heights):
        y = top + max(0, (height - mask.shape[0]) // 2)
        region = column[y : y + mask.shape[0], margin : margin + mask.shape[1]]
        region[mask[: region.shape[0]]] = 0
        top += height
    return np.concatenate([column, picture], axis=1)


def save_grid(
    path: str, rows_of_images: Sequence[np.ndarray], scale: int = 1, labels: Sequence[str] | None = None
) -> None:
    """Saves :func:`grid_picture` of ``rows_of_images`` (e.g. one row per temperature) as a PNG.

    The PNG is written under a temporary name in the same folder and renamed
    into place, so an interrupted save leaves the old picture whole.
    """
    save_picture(path, grid_picture(rows_of_images, scale, labels))


def save_picture(path: str, picture: np.ndarray) -> None:
    """Saves a uint8 [H, W, C] (C = 1 or 3) or [H, W] picture as a PNG, atomically."""
    from PIL import Image

    if os.path.isdir(path):
        raise ValueError(f"expected a picture file name (FILE.png), got the folder {path!r}.")
    if os.path.splitext(path)[1].lower() != ".png":
        raise ValueError(f"expected a picture file name ending in .png, got {path!r}.")
    picture = np.asarray(picture, np.uint8)
    if picture.ndim == 3 and picture.shape[-1] == 1:
        picture = picture[..., 0]
    with atomic_path(path) as tmp:
        Image.fromarray(picture).save(tmp)  # the temporary name keeps the suffix, which picks the format
