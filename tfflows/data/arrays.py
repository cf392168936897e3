"""What a value given as data must be before any check of its shape: an array of numbers."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

__all__ = ["as_float64_vector", "as_tensor", "describe"]


def describe(value: Any) -> str:
    """A short account of a value that is not an array of numbers, for an error message."""
    if value is None or isinstance(value, (str, bytes, bool, int, float)):
        return repr(value)[:60]
    if isinstance(value, np.ndarray):
        return f"a NumPy array of dtype {value.dtype} and shape {value.shape}"
    if isinstance(value, (list, tuple)):
        lengths = {len(v) for v in value if isinstance(v, (list, tuple, np.ndarray))}
        ragged = " with rows of different lengths" if len(lengths) > 1 else ""
        return f"a {type(value).__name__} of {len(value)} items{ragged}"
    return f"a {type(value).__name__}"


def as_tensor(value: Any, owner: str, what: str, expected: str) -> tf.Tensor:
    """``value`` as a tensor (``tf.convert_to_tensor``), or a ValueError naming what came.

    Args:
      value: a tensor, array or nested list of numbers.
      owner: the first word of the message (the model's class name).
      what: the argument's name (``"x"``, ``"latents"``, ``"context"``).
      expected: what it should be, e.g. ``"an array of shape [batch, 3]"``.

    Raises:
      ValueError: ``value`` is None, ragged, or holds objects TensorFlow cannot convert.
    """
    try:
        return tf.convert_to_tensor(value)
    except (ValueError, TypeError) as err:
        reason = str(err).split("\n")[0].rstrip(".")
        raise ValueError(
            f"{owner}: expected {what} as {expected}, got {describe(value)} ({reason})."
        ) from None


def as_float64_vector(value: Any, name: str, what: str) -> np.ndarray:
    """``value`` as a float64 NumPy array (its shape unchecked): per-example scores or NLLs.

    Raises:
      ValueError: naming ``name``, when ``value`` holds anything but numbers.
    """
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{name}: expected a 1-D array of {what} (numbers), got {value!r:.80} ({err})."
        ) from None
