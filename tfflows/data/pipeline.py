"""tf.data pipelines: bit reduction and uniform dequantization of images, toys.

A flow models a density on continuous values, so integer pixels ``k`` are
spread over ``[k, k + 1)`` by adding ``u ~ U[0, 1)`` (Theis et al., 2016). The
pipeline yields values in ``[0, 2^n_bits)``; the model divides by ``2^n_bits``
itself and accounts for that scaling in its log-likelihood.

References:
    Theis, van den Oord, Bethge. "A note on the evaluation of generative
    models." ICLR 2016.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfflows.data.toys import sample_toy
from tfflows.deprecation import renamed_argument

__all__ = ["bin_centres", "dequantize", "make_dataset", "toy_dataset"]

_AUTOTUNE = tf.data.AUTOTUNE


def _check_bits(n_bits: int, source_bits: int, name: str = "n_bits") -> None:
    if not 1 <= source_bits <= 8:
        raise ValueError(f"source_bits must be in 1..8 for uint8 data; got {source_bits}.")
    if not 1 <= n_bits <= source_bits:
        raise ValueError(
            f"{name} must be in 1..source_bits={source_bits} (bits can only be dropped); "
            f"got {n_bits}."
        )


def _stateless_seed(seed: int | tf.Tensor) -> tf.Tensor:
    seed = tf.convert_to_tensor(seed, dtype=tf.int64)
    return tf.stack([seed, tf.zeros_like(seed)]) if seed.shape.rank == 0 else seed


def _quantize(
    x: tf.Tensor, n_bits: int, source_bits: int, seed: tf.Tensor | None, noise: bool
) -> tf.Tensor:
    shift = source_bits - n_bits
    if shift:
        x = x // tf.constant(2**shift, dtype=x.dtype)
    y = tf.cast(x, tf.float32)
    if not noise:
        return y
    if seed is None:
        u = tf.random.uniform(tf.shape(y), dtype=tf.float32)
    else:
        u = tf.random.stateless_uniform(tf.shape(y), seed=seed, dtype=tf.float32)
    # In float32, 255 + u rounds to 256.0 once u > 1 - 2**-17 (about 8 pixels
    # in a million); capping at the float just below y + 1 keeps floor(y) exact.
    return tf.minimum(y + u, tf.math.nextafter(y + 1.0, y))


def dequantize(
    x: tf.Tensor | np.ndarray,
    n_bits: int = 8,
    source_bits: int = 8,
    seed: int | tf.Tensor | None = None,
) -> tf.Tensor:
    """y = floor(x / 2^(source_bits - n_bits)) + u, with u ~ U[0, 1) per element.

    The result lies in ``[0, 2^n_bits)`` and ``floor(y)`` recovers the reduced
    integers exactly.

    Args:
        x: Integer-valued tensor of any shape with values in ``[0, 2^source_bits)``,
            usually uint8 pixels.
        n_bits: Bit depth to keep, ``1 <= n_bits <= source_bits``.
        source_bits: Bit depth of ``x``, at most 8.
        seed: ``None`` for stateful noise; an int or a shape-``[2]`` int tensor
            for stateless noise (the same seed gives the same noise).

    Returns:
        float32 tensor with the shape of ``x``.

    Raises:
        ValueError: If the bit depths are out of range.
    """
    _check_bits(n_bits, source_bits)
    x = tf.convert_to_tensor(x)
    key = None if seed is None else _stateless_seed(seed)
    return _quantize(x, n_bits, source_bits, key, noise=True)


def bin_centres(x: tf.Tensor, n_bits: int, source_bits: int = 8) -> tf.Tensor:
    """y = floor(x / 2^(source_bits − n_bits)) + ½: integer pixels at the centres of their bins.

    The deterministic counterpart of :func:`dequantize`, used to score
    integer images (the SavedModel's ``log_prob``, OOD scores). Plain TF ops;
    ``source_bits`` may be 8 (uint8) or 16 (uint16).
    """
    return _quantize(tf.convert_to_tensor(x), n_bits, source_bits, None, noise=False) + 0.5


def _bits_needed(top: int) -> int:
    """The fewest bits (at least 1) that hold the integer ``top``."""
    return max(1, int(top).bit_length())


def _check_source_range(top: int, source_bits: int) -> None:
    """Raises when the data's maximum ``top`` does not fit ``source_bits``, or looks far too small.

    Data stated as ``source_bits`` whose maximum is below 2^(source_bits − 3)
    (under 32 for 8-bit data) was almost surely given in a smaller range,
    such as the digits' 0..16 with the default ``source_bits=8``: reducing it
    to ``n_bits`` would silently keep only its top few levels.
    """
    if top >= 2**source_bits:
        raise ValueError(
            f"images must lie in [0, {2**source_bits}) for source_bits={source_bits}; "
            f"got a maximum of {top} (pass source_bits={_bits_needed(top)} if that is the range)."
        )
    if source_bits > 3 and top < 2 ** (source_bits - 3):
        raise ValueError(
            f"images stated as source_bits={source_bits} (values 0..{2**source_bits - 1}) have a "
            f"maximum of {top}, below {2 ** (source_bits - 3)}: they look like "
            f"{_bits_needed(top)}-bit data; pass source_bits={_bits_needed(top)} "
            "(or source_bits=None to infer it from the maximum)."
        )


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(
            "images must be uint8 of shape [N, H, W, C] (or [N, H, W]); "
            f"got {images.dtype} of shape {list(images.shape)}."
        )
    if len(images) == 0:
        raise ValueError("images must hold at least one image; got 0.")
    if images.ndim == 3:
        images = images[..., None]
    return images


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray | None = None,
    batch_size: int = 64,
    num_bits: int | None = None,
    source_bits: int | None = 8,
    shuffle: bool = True,
    repeat: bool = False,
    dequantize: bool = True,
    seed: int | None = None,
    drop_remainder: bool = False,
    n_bits: int | None = None,
) -> tf.data.Dataset:
    """Batches of ``num_bits`` images as float32 in ``[0, 2^num_bits)``.

    Each pixel becomes ``floor(x / 2^(source_bits - num_bits))``, plus fresh
    ``U[0, 1)`` noise every epoch when ``dequantize``. Noise and shuffling are
    reproducible when ``seed`` is given.

    Args:
        images: uint8 ``[N, H, W, C]`` (or ``[N, H, W]``, given a channel axis)
            with values below ``2^source_bits``.
        labels: Optional array with ``N`` rows, yielded unchanged beside the images.
        batch_size: Images per batch.
        num_bits: Bit depth to model, ``1 <= num_bits <= source_bits``
            (default 8), the model's ``num_bits``.
        source_bits: Bit depth of ``images`` (see ``num_bits_of``): 8 for
            0..255 pixels, 5 for the digits' 0..16; ``None`` infers it as the
            fewest bits that hold the maximum. A maximum of ``2^source_bits``
            or more, or one below ``2^(source_bits - 3)`` (data that looks like
            it was given in a smaller range), raises ``ValueError``.
        shuffle: Reshuffle the whole set every epoch.
        repeat: Repeat forever.
        dequantize: Add uniform noise; ``False`` yields the integers as floats.
        seed: Seed for shuffling and noise; ``None`` for fresh randomness.
        drop_remainder: Drop the last batch if it is smaller than ``batch_size``.
        n_bits: The deprecated old name of ``num_bits``.

    Returns:
        A ``tf.data.Dataset`` of ``[B, H, W, C]`` float32 batches, or of
        ``(images, labels)`` tuples when ``labels`` is given.

    Raises:
        ValueError: If images are not uint8 of rank 3 or 4, their maximum
            does not match ``source_bits`` (see above), labels do not match,
            or a size is out of range, or both ``num_bits`` and ``n_bits`` are given.
    """
    num_bits = renamed_argument("make_dataset", "num_bits", num_bits, "n_bits", n_bits, default=8)
    if source_bits is not None:
        _check_bits(num_bits, source_bits, "num_bits")
    images = _check_images(images)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    elements: np.ndarray | tuple[np.ndarray, np.ndarray] = images
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim == 0 or len(labels) != len(images):
            raise ValueError(
                f"labels must have {len(images)} rows, one per image; "
                f"got shape {list(labels.shape)}."
            )
        elements = (images, labels)
    top = int(images.max())
    if source_bits is None:
        source_bits = _bits_needed(top)
        _check_bits(num_bits, source_bits, "num_bits")
    else:
        _check_source_range(top, source_bits)
    ds = tf.data.Dataset.from_tensor_slices(elements)
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    # One stateless key per batch from a stream that changes every epoch keeps
    # the noise fresh yet reproducible, even under parallel map.
    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

    def transform(batch, key):
        x, y = batch if labels is not None else (batch, None)
        seed_pair = tf.stack([key, tf.zeros_like(key)])
        x = _quantize(x, num_bits, source_bits, seed_pair, noise=dequantize)
        return x if y is None else (x, y)

    ds = tf.data.Dataset.zip((ds, keys)).map(transform, num_parallel_calls=_AUTOTUNE)
    return ds.prefetch(_AUTOTUNE)


def toy_dataset(
    name: str,
    n: int,
    batch_size: int = 256,
    seed: int | None = None,
    repeat: bool = False,
    shuffle: bool = True,
) -> tf.data.Dataset:
    """Batches of ``n`` fixed points drawn once from a 2-D toy density.

    Args:
        name: One of ``TOY_NAMES``.
        n: Number of points in the set.
        batch_size: Points per batch.
        seed: Seed for the points and the shuffling.
        repeat: Repeat forever.
        shuffle: Reshuffle every epoch.

    Returns:
        A ``tf.data.Dataset`` of float32 ``[B, 2]`` batches.

    Raises:
        ValueError: If ``name`` is unknown or a size is out of range.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size}.")
    points = sample_toy(name, n, seed=seed)
    ds = tf.data.Dataset.from_tensor_slices(points)
    if shuffle and n > 0:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    return ds.batch(batch_size).prefetch(_AUTOTUNE)
