"""What a pixel is: integer pixels, their bit depths, bin centres and uniform dequantization.

One rule for every consumer (the models' :class:`~tfflows.data.DataSpec`, the
pipelines, the exported SavedModel): integer pixels of ``b`` bits are reduced
to a model's ``num_bits`` as k = floor(x / 2^(b − num_bits)), then placed at
the bin centre k + ½ (scoring) or spread over [k, k + 1) by u ~ U[0, 1)
(training; Theis et al., 2016).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfflows.deprecation import old_argument_names

__all__ = [
    "bin_centres",
    "check_bits",
    "dequantize",
    "integer_pixel_bits",
    "pixel_levels",
    "quantize",
    "saved_model_pixel_dtype",
    "stateless_key",
]


def check_bits(num_bits: int, source_bits: int, name: str = "num_bits") -> None:
    if not 1 <= source_bits <= 8:
        raise ValueError(f"source_bits must be in 1..8 for uint8 data; got {source_bits}.")
    if not 1 <= num_bits <= source_bits:
        raise ValueError(
            f"{name} must be in 1..source_bits={source_bits} (bits can only be dropped); got {num_bits}."
        )


def stateless_key(seed: int | tf.Tensor) -> tf.Tensor:
    seed = tf.convert_to_tensor(seed, dtype=tf.int64)
    return tf.stack([seed, tf.zeros_like(seed)]) if seed.shape.rank == 0 else seed


def quantize(x: tf.Tensor, num_bits: int, source_bits: int, seed: tf.Tensor | None, noise: bool) -> tf.Tensor:
    if (
        isinstance(num_bits, bool)
        or not isinstance(num_bits, (int, np.integer))
        or not 1 <= num_bits <= source_bits
    ):
        raise ValueError(
            f"num_bits must be in 1..source_bits={source_bits} (bits can only be dropped); got {num_bits!r}."
        )
    if tf.executing_eagerly() and tf.size(x) > 0 and (x.dtype.is_integer or x.dtype.is_floating):
        # Eagerly (not in tf.data's graphs): a value outside the pixels' range would wrap or go negative.
        low, high = float(tf.reduce_min(x)), float(tf.reduce_max(x))
        if not (0 <= low and high < 2**source_bits):
            raise ValueError(
                f"expected {source_bits}-bit pixels in 0..{2**source_bits - 1}, got values from "
                f"{low:g} to {high:g}."
            )
    shift = source_bits - num_bits
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


@old_argument_names({"n_bits": "num_bits"})
def dequantize(
    x: tf.Tensor | np.ndarray, num_bits: int = 8, source_bits: int = 8, seed: int | tf.Tensor | None = None
) -> tf.Tensor:
    """y = floor(x / 2^(source_bits - num_bits)) + u, with u ~ U[0, 1) per element.

    The result lies in ``[0, 2^num_bits)`` and ``floor(y)`` recovers the reduced
    integers exactly.

    Args:
        x: Integer-valued tensor of any shape with values in ``[0, 2^source_bits)``,
            usually uint8 pixels.
        num_bits: Bit depth to keep, ``1 <= num_bits <= source_bits``.
        source_bits: Bit depth of ``x``, at most 8.
        seed: ``None`` for stateful noise; an int or a shape-``[2]`` int tensor
            for stateless noise (the same seed gives the same noise).

    Returns:
        float32 tensor with the shape of ``x``.

    Raises:
        ValueError: If the bit depths are out of range.
    """
    check_bits(num_bits, source_bits)
    x = tf.convert_to_tensor(x)
    key = None if seed is None else stateless_key(seed)
    return quantize(x, num_bits, source_bits, key, noise=True)


@old_argument_names({"n_bits": "num_bits"})
def bin_centres(x: tf.Tensor, num_bits: int, source_bits: int = 8) -> tf.Tensor:
    """y = floor(x / 2^(source_bits − num_bits)) + ½: integer pixels at the centres of their bins.

    The deterministic counterpart of :func:`dequantize`, used to score
    integer images (the SavedModel's ``log_prob``, OOD scores). Plain TF ops;
    ``source_bits`` may be 8 (uint8) or 16 (uint16).
    """
    return quantize(tf.convert_to_tensor(x), num_bits, source_bits, None, noise=False) + 0.5


def saved_model_pixel_dtype(num_bits: int) -> tf.DType:
    """The integer pixel dtype of an exported image model: uint8 up to 8 bits, uint16 above."""
    return tf.uint8 if num_bits <= 8 else tf.uint16


def integer_pixel_bits(dtype: tf.DType | np.dtype | str, num_bits: int) -> int:
    """The bit depth in which an image model of ``num_bits`` reads integer pixels of ``dtype``.

    The rule of the exported SavedModel, whose integer input is uint8 for
    ``num_bits <= 8`` and uint16 above: uint8 holds 8-bit pixels (0..255,
    as TFDS and ``tf.io.decode_png`` give them) and uint16 16-bit pixels
    (0..65535, ``tf.io.decode_png(..., dtype=tf.uint16)``); any other
    integer dtype holds the SavedModel's pixels, 8-bit for ``num_bits <= 8``
    and 16-bit above. A model reduces them to its own bits as
    ``floor(x / 2^(bits - num_bits))`` (see :func:`pixel_levels`).

    Raises:
        ValueError: If ``num_bits`` is not an integer in 1..16, ``dtype`` is
            not an integer dtype, or it holds fewer bits than ``num_bits``
            (bits can only be dropped).
    """
    if (
        isinstance(num_bits, (bool, np.bool_))
        or not isinstance(num_bits, (int, np.integer))
        or not 1 <= num_bits <= 16
    ):
        raise ValueError(f"num_bits: expected an integer bit depth in 1..16, got {num_bits!r}.")
    dtype = tf.as_dtype(dtype)
    if not dtype.is_integer:
        raise ValueError(f"integer pixels must have an integer dtype; got {dtype.name}.")
    own = {tf.uint8: 8, tf.uint16: 16}
    bits = own.get(dtype, own[saved_model_pixel_dtype(num_bits)])
    if num_bits > bits:
        raise ValueError(
            f"{dtype.name} pixels hold {bits} bits, fewer than the model's num_bits={num_bits} "
            "(bits can only be dropped); pass uint16 pixels (16-bit)."
        )
    return bits


def pixel_levels(
    x: tf.Tensor | np.ndarray, num_bits: int, noise: bool = False, seed: int | tf.Tensor | None = None
) -> tf.Tensor:
    """y = floor(x / 2^(b - num_bits)) + u: integer pixels as float32 levels in [0, 2^num_bits).

    ``b`` is :func:`integer_pixel_bits` of ``x``'s dtype. With ``noise`` the
    offset is ``u ~ U[0, 1)`` (:func:`dequantize`, for training); without it
    ``u = ½``, the bin centre (:func:`bin_centres`, the exported SavedModel's
    rule for scoring integer images). Plain TF ops that run in ``tf.function``
    and XLA; values outside ``[0, 2^b)`` are not checked here.

    Args:
        x: Integer pixels of any shape.
        num_bits: The model's bit depth.
        noise: Uniform noise instead of bin centres.
        seed: With ``noise``: ``None`` for stateful noise, or an int or a
            shape-``[2]`` int tensor for stateless noise.

    Raises:
        ValueError: As :func:`integer_pixel_bits`.
    """
    x = tf.convert_to_tensor(x)
    bits = integer_pixel_bits(x.dtype, num_bits)
    if x.dtype not in (tf.uint8, tf.uint16):
        x = tf.cast(x, tf.int32)  # int8 cannot hold the divisor 2^(b - num_bits); uint32 has no floordiv
    if not noise:
        return bin_centres(x, num_bits, bits)
    key = None if seed is None else stateless_key(seed)
    return quantize(x, num_bits, bits, key, noise=True)
