"""A folder of PNG or JPEG images streamed as a tf.data pipeline of uint8 images.

``image_folder(path, size=(64, 64))`` lists the files once, then reads,
decodes, crops and resizes them as the dataset is iterated, so a folder of
any size (CelebA's 202,599 JPEGs of 218×178) never sits in memory whole. The
images stay uint8: an image model's ``fit`` dequantizes them itself, and
``make_dataset`` accepts the dataset too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import tensorflow as tf

from tfflows.data.pipeline import PARALLEL_CALLS, PREFETCH_BATCHES, steady
from tfflows.io import is_temporary

__all__ = ["IMAGE_SUFFIXES", "image_folder"]

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
"""File endings read as images (compared without case)."""

_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}
_CROPS = ("centre", "center", "none")


def _size_pair(size) -> tuple[int, int] | None:
    if size is None:
        return None
    pair = (size, size) if isinstance(size, int) and not isinstance(size, bool) else tuple(size)
    if len(pair) != 2 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in pair):
        raise ValueError(f"image_folder: size must be a positive int or (height, width); got {size!r}.")
    return pair


def _list_images(path: str, recursive: bool) -> list[str]:
    if not os.path.exists(path):
        raise ValueError(f"image_folder: no folder at {path!r}.")
    if not os.path.isdir(path):
        raise ValueError(f"image_folder: {path!r} is a file; expected a folder of PNG or JPEG images.")
    found: list[str] = []
    others: list[str] = []
    subfolders: list[str] = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if not recursive:
            subfolders.extend(dirs)
            dirs[:] = []
        for name in sorted(files):
            if name.startswith(".") or is_temporary(name):
                continue
            full = os.path.join(root, name)
            (found if name.lower().endswith(IMAGE_SUFFIXES) else others).append(full)
    if not found:
        hint = ""
        if others:
            hint += f"; it holds {len(others)} other files, e.g. {os.path.basename(others[0])!r}"
        if subfolders:
            hint += f"; pass recursive=True to read its subfolders ({', '.join(subfolders[:3])})"
        raise ValueError(
            f"image_folder: no {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} files in {path!r}{hint}."
        )
    return found


def _check_header(file: str) -> None:
    with open(file, "rb") as f:
        head = f.read(8)
    if not any(head.startswith(magic) for magic in _MAGIC):
        raise ValueError(
            f"image_folder: {file!r} is not a PNG or JPEG image (its first bytes are {head!r}); "
            "remove it or move it out of the folder."
        )


def image_folder(
    path: str | os.PathLike,
    size: int | Sequence[int] | None = None,
    channels: int = 3,
    crop: str = "centre",
    recursive: bool = False,
    shuffle: bool = False,
    seed: int | None = None,
    batch_size: int | None = None,
    num_levels: int | None = None,
) -> tf.data.Dataset:
    """The PNG and JPEG images of a folder as a stream of uint8 ``[H, W, channels]`` images.

    Each image is decoded to ``channels`` (1: grayscale, 3: RGB), whatever
    it holds: grayscale is repeated to RGB, RGB converted to gray, and an
    alpha channel dropped. Then, with ``crop="centre"``, cut to the largest
    centred box of the aspect ratio of ``size`` (a square for a square
    ``size``: CelebA's 218×178 loses 20 rows at the top and bottom) and
    resized to ``size`` with antialiased bilinear interpolation, rounded
    back to uint8. An image already of that box's size is not resampled, so
    its pixels come through exactly. ``crop="none"`` resizes the whole image,
    changing its aspect ratio.

    Files are listed once, in sorted order (ending in .png, .jpg or .jpeg,
    any case; hidden files are skipped), and their first bytes are checked
    then; reading and decoding happen as the dataset is iterated, in
    parallel. A file that starts as a PNG or JPEG but is cut short fails at
    its turn with TensorFlow's decode error.

    Args:
        path: The folder.
        size: ``(height, width)`` or one int for a square; ``None`` takes the
            size of the first image (in sorted order).
        channels: 1 (grayscale) or 3 (RGB).
        crop: ``"centre"`` (or ``"center"``) or ``"none"``.
        recursive: Read the subfolders too.
        shuffle: Shuffle the file names, afresh every epoch (a full shuffle
            without a buffer of images).
        seed: Seed for the shuffle.
        batch_size: Batch the images (``[B, H, W, C]``); ``None`` yields one
            image per element.
        num_levels: The number of squeezes of the model that will read the
            images (Glow's ``num_levels``): height and width must be
            divisible by ``2^num_levels``.

    Returns:
        A ``tf.data.Dataset`` of uint8 images, one per element or batched.

    Raises:
        ValueError: If the folder is missing, holds no images, holds a file
            that is not a PNG or JPEG (named), or an argument is out of
            range, including a size the model cannot squeeze.
    """
    path = os.fspath(path)
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"image_folder: channels must be 1 (grayscale) or 3 (RGB); got {channels!r}.")
    if crop not in _CROPS:
        raise ValueError(f"image_folder: crop must be one of {list(_CROPS)}; got {crop!r}.")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"image_folder: batch_size must be a positive int or None; got {batch_size!r}.")
    if num_levels is not None and (
        isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 0
    ):
        raise ValueError(f"image_folder: num_levels must be an int >= 0 or None; got {num_levels!r}.")
    target = _size_pair(size)
    files = _list_images(path, recursive)
    for file in files:
        _check_header(file)
    if target is None:
        first = tf.io.decode_image(tf.io.read_file(files[0]), expand_animations=False)
        target = (int(first.shape[0]), int(first.shape[1]))
    if num_levels:
        f = 2**num_levels
        if target[0] % f or target[1] % f:
            fits = (target[0] // f * f or f, target[1] // f * f or f)
            raise ValueError(
                f"image_folder: a model with num_levels={num_levels} squeezes the images "
                f"{num_levels} times, so height and width must be divisible by {f}; got size "
                f"{target[0]}x{target[1]}. Pass size={fits}."
            )
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(
        _loader(target, channels, crop != "none"), num_parallel_calls=PARALLEL_CALLS, deterministic=True
    )
    if batch_size is not None:
        ds = ds.batch(batch_size)
    return steady(ds.prefetch(PREFETCH_BATCHES))


def _loader(target: tuple[int, int], channels: int, centre_crop: bool):
    th, tw = target

    def load(file: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(
            tf.io.read_file(file), channels=channels, dtype=tf.uint8, expand_animations=False
        )
        h, w = tf.shape(image)[0], tf.shape(image)[1]
        if centre_crop:
            # The largest box of aspect th:tw inside h×w, centred: integer maths, no rounding drift.
            ch = tf.minimum(h, (w * th) // tw)
            cw = tf.minimum(w, (h * tw) // th)
            image = image[(h - ch) // 2 : (h - ch) // 2 + ch, (w - cw) // 2 : (w - cw) // 2 + cw]
            h, w = ch, cw

        def resize():
            out = tf.image.resize(tf.cast(image, tf.float32), (th, tw), method="bilinear", antialias=True)
            return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)

        same = tf.logical_and(tf.equal(h, th), tf.equal(w, tw))
        image = tf.cond(same, lambda: image, resize)
        return tf.ensure_shape(image, (th, tw, channels))

    return load
