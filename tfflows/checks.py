"""Argument checks shared by callbacks, pictures and optimizers: one rule per kind of number.

Each check raises ``ValueError`` naming the owner, the argument, what it must
be and what came; models check their own arguments in
:mod:`tfflows.models.arguments` and data in :class:`tfflows.data.DataSpec`.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["check_picture_args", "check_sample_shape", "finite_number", "positive_int", "whole_number"]


def positive_int(owner: str, name: str, value: Any) -> int:
    """``value`` as an int >= 1 (bools and floats refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}.")
    return int(value)


def whole_number(owner: str, name: str, value: Any) -> int:
    """``value`` as an int (a seed): bools, floats and strings refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{owner}: {name} must be an integer, got {value!r}.")
    return int(value)


def finite_number(
    owner: str, name: str, value: Any, minimum: float | None = None, strict: bool = False
) -> float:
    """``value`` as a finite float, at least ``minimum`` (above it with ``strict``)."""
    ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Real) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
        raise ValueError(f"{owner}: {name} must be a finite number{bound}, got {value!r}.")
    return float(value)


def check_picture_args(
    owner: str,
    temperatures: Sequence[float],
    per_row: int,
    num_bits: int | None,
    value_range: Sequence[float] | None,
    folder: Any = "",
) -> list[float]:
    """A sample grid's arguments (``SampleGrid``, ``samples_picture``): returns the temperatures."""
    if not isinstance(folder, (str, os.PathLike)):
        raise ValueError(f"{owner}: folder must be a path, got {folder!r}.")
    if isinstance(temperatures, (str, bytes)) or not isinstance(temperatures, Sequence) or not temperatures:
        raise ValueError(
            f"{owner}: temperatures must be a non-empty list of numbers >= 0, got {temperatures!r}."
        )
    values = [finite_number(owner, "each temperature", t, 0.0) for t in temperatures]
    positive_int(owner, "per_row", per_row)
    if num_bits is not None and positive_int(owner, "num_bits", num_bits) > 16:  # None: vector models
        raise ValueError(f"{owner}: num_bits must be in 1..16, got {num_bits!r}.")
    if value_range is not None:
        low, high = (finite_number(owner, "value_range", v) for v in value_range)
        if not low < high:
            raise ValueError(
                f"{owner}: value_range must be (low, high) with low < high, got {tuple(value_range)!r}."
            )
    return values


def check_sample_shape(owner: str, sample_shape: Any) -> None:
    """TFP's ``sample_shape``, eagerly: an int >= 0 or a sequence of them (TFP would cast 2.5 to 2)."""
    import tensorflow as tf

    if tf.is_tensor(sample_shape) and not tf.executing_eagerly():
        return
    sizes = np.asarray(sample_shape.numpy() if tf.is_tensor(sample_shape) else sample_shape, dtype=object)
    flat = sizes.ravel().tolist() if sizes.ndim <= 1 else [None]
    if any(isinstance(d, (bool, np.bool_)) or not isinstance(d, numbers.Integral) or d < 0 for d in flat):
        raise ValueError(
            f"{owner}: sample_shape must be an integer >= 0 or a sequence of them, got {sample_shape!r}."
        )
