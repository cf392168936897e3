"""Turning model samples into pictures: uint8 conversion, labelled grids and PNG files."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tfflows.io import atomic_path
from tfflows.typing import TensorLike

__all__ = [
    "LABEL_SIZE",
    "grid_picture",
    "image_grid",
    "label_font",
    "save_grid",
    "save_picture",
    "text_mask",
    "to_uint8",
]

LABEL_SIZE = (10, 24)
"""The smallest and largest label text, in pixels: a third of a row's height within these."""


def label_font(size: int) -> Any:
    """Pillow's own font at ``size`` pixels (``ImageFont.load_default``: a TrueType font when Pillow
    has FreeType, else its bitmap font), so labelling needs no font file and no matplotlib."""
    from PIL import ImageFont

    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"label_font: size must be a positive integer, got {size!r}.")
    return ImageFont.load_default(size=size)


def text_mask(text: str, size: int = 12) -> np.ndarray:
    """A boolean picture of ``text`` in :func:`label_font` at ``size`` pixels (True = ink).

    The picture is the text's box as Pillow measures it (its height fits every
    glyph of the font at that size, so labels of one size line up).

    Raises:
      ValueError: ``size`` < 1, or text with a line break (labels are one line).
    """
    from PIL import Image, ImageDraw

    font = label_font(size)
    if "\n" in str(text):
        raise ValueError(f"text_mask: expected one line of text, got {text!r}.")
    text = str(text)
    if not text:
        return np.zeros((size, 0), bool)
    left, _, right, _ = font.getbbox(text)
    ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (size, 0)
    canvas = Image.new("L", (max(right - left, 1), ascent + descent), 0)
    ImageDraw.Draw(canvas).text((-left, 0), text, fill=255, font=font)
    return np.asarray(canvas) > 127


def _fitting_size(texts: Sequence[str], size: int, width: int | None) -> int:
    """``size``, made smaller (down to 6) until every text is at most ``width`` pixels wide."""
    while width is not None and size > 6 and max(text_mask(t, size).shape[1] for t in texts) > width:
        size -= 1
    return size


def _paste(canvas: np.ndarray, mask: np.ndarray, top: int, left: int) -> None:
    region = canvas[top : top + mask.shape[0], left : left + mask.shape[1]]
    region[mask[: region.shape[0], : region.shape[1]]] = 0


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
    rows_of_images: Sequence[np.ndarray],
    scale: int = 1,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    column_labels: Sequence[str] | None = None,
) -> np.ndarray:
    """One uint8 picture [H, W, C] with a row of images per entry of ``rows_of_images``.

    Each pixel becomes ``scale``×``scale``. Text is black on white, in
    Pillow's own font (:func:`label_font`), a third of a row's height (10 to
    24 pixels): ``labels`` (one per row, e.g. ``"T=0.70"``) in a column on the
    left, centred on their rows; ``column_labels`` (one per image of a row,
    e.g. class names) above the columns, made smaller until each fits its
    column; ``title`` (e.g. the epoch and bits/dim) on a line across the top.

    Raises:
      ValueError: as many labels as rows (or column labels as columns) expected.
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
    size = int(np.clip(min(heights) // 3, *LABEL_SIZE))
    margin = max(2, size // 2)
    channels = picture.shape[2]
    if column_labels is not None:
        images = np.asarray(rows_of_images[0])
        if len(column_labels) != images.shape[0]:
            raise ValueError(
                f"grid_picture: expected one column label per image of a row ({images.shape[0]}), "
                f"got {len(column_labels)}."
            )
        cell = (images.shape[2] + 1) * scale
        small = _fitting_size([str(c) for c in column_labels], size, cell - 2)
        masks = [text_mask(str(c), small) for c in column_labels]
        band = np.full((max(m.shape[0] for m in masks) + margin, picture.shape[1], channels), 255, np.uint8)
        for i, mask in enumerate(masks):
            _paste(band, mask, margin // 2, scale + i * cell + max(0, (cell - scale - mask.shape[1]) // 2))
        picture = np.concatenate([band, picture], axis=0)
    if labels:
        masks = [text_mask(str(label), size) for label in labels]
        column = np.full(
            (picture.shape[0], max(m.shape[1] for m in masks) + 2 * margin, channels), 255, np.uint8
        )
        top = picture.shape[0] - sum(heights)  # below the column labels, if any
        for mask, height in zip(masks, heights):
            _paste(column, mask, top + max(0, (height - mask.shape[0]) // 2), margin)
            top += height
        picture = np.concatenate([column, picture], axis=1)
    if title:
        mask = text_mask(title, _fitting_size([title], size, picture.shape[1] - 2 * margin))
        band = np.full((mask.shape[0] + margin, picture.shape[1], channels), 255, np.uint8)
        _paste(band, mask, margin // 2, margin)
        picture = np.concatenate([band, picture], axis=0)
    return picture


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
