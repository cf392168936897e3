"""The first training batch of an image model, checked before ``fit`` trains on it.

Mis-scaled images are the commonest silent failure of a flow on images: a
batch in [0, 1] or [−1, 1], or levels of more bits than the model's, trains
to a meaningless likelihood. :meth:`tfflows.data.DataSpec.check_first_batch`
asks this module's :func:`check_first_batch`.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import tensorflow as tf

if TYPE_CHECKING:
    from tfflows.data.spec import DataSpec

__all__ = ["check_first_batch"]


def check_first_batch(spec: DataSpec, batch: Any) -> None:
    """Raises or warns when ``batch`` of an image model of ``spec`` is not pixel levels.

    See :meth:`tfflows.data.DataSpec.check_first_batch`.
    """
    if not spec.models_pixel_levels:
        spec.check_x(spec.unpack(batch)[0], "the first training batch", values=False)
        return
    name, n = spec.owner, int(spec.num_bits or 0)
    what = "the first training batch"
    x = tf.convert_to_tensor(spec.unpack(batch)[0])
    if x.dtype.is_integer:
        spec.check_x(x, what)
        bits = spec.pixel_bits(x.dtype, what)
        peak = int(tf.reduce_max(x)) if tf.size(x) else 0
        if 0 < peak < 2 ** (bits - 3):
            used = peak // 2 ** (bits - n) + 1
            warnings.warn(
                f"{name}: {what} holds {x.dtype.name} pixels up to {peak}: read as {bits}-bit "
                f"pixels (0..{2**bits - 1}) they fill only {used} of the model's {2**n} "
                f"levels. If they are {n}-bit levels already, multiply them by "
                f"{2 ** (bits - n)}, or pass them as floats with dequantization noise.",
                UserWarning,
                stacklevel=5,
            )
        return
    spec.check_x(x, what, values=False)
    values = tf.boolean_mask(x, tf.math.is_finite(x))
    if tf.size(values) == 0:
        return
    low, high, top = float(tf.reduce_min(values)), float(tf.reduce_max(values)), 2**n
    if low < 0 or high >= top:
        hint = ""
        if low >= -1.0 and high <= 1.0:
            hint = (
                " (images scaled to [-1, 1]? pass the uint8 pixels, round((x + 1) · 127.5), "
                "which the model reduces and dequantizes itself)"
            )
        elif high < 256:
            hint = (
                " (8-bit pixels given to a model of fewer bits? pass them as uint8, "
                "which the model reduces, or use tfflows.data.make_dataset(..., num_bits=...))"
            )
        raise ValueError(
            f"{name}: expected {what} as pixel levels in [0, {top}) for num_bits={n}, got "
            f"values from {low:g} to {high:g}{hint}."
        )
    if high <= 1.0 and n >= 2:
        raise ValueError(
            f"{name}: expected pixel levels in [0, {top}) for num_bits={n}, but {what} has "
            f"values in [{low:g}, {high:g}]: images scaled to [0, 1]? Multiply by 255 and "
            "pass uint8 (the model reduces and dequantizes 8-bit pixels itself), or give "
            f"levels in [0, {top}) with dequantization noise."
        )
    fractions = values - tf.floor(values)
    if float(tf.reduce_max(fractions)) == float(tf.reduce_min(fractions)):
        kind = "an integer" if float(fractions[0]) == 0.0 else f"a level plus {float(fractions[0]):g}"
        warnings.warn(
            f"{name}: {what} holds pixel levels without dequantization noise (every value is "
            f"{kind}): a continuous density fitted to a grid of points grows without bound, so "
            "the loss will keep falling and overestimate the likelihood. Pass the integer "
            "pixels (uint8), which fit dequantizes with fresh noise every step, or add U[0, 1) "
            "noise (tfflows.data.dequantize, make_dataset(dequantize=True)).",
            UserWarning,
            stacklevel=5,
        )
