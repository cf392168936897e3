"""Refusing non-finite models: nothing with an inf or NaN weight is saved or exported."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import tensorflow as tf

__all__ = ["NonFiniteWeightsError", "all_finite", "check_finite_weights", "finite_rows",
           "nonfinite_weights"]


def all_finite(tensors: Iterable[Any]) -> tf.Tensor:
    """A scalar bool tensor: every entry of every floating tensor (``None`` skipped) is finite."""
    ok = tf.constant(True)
    for t in tensors:
        if t is not None and t.dtype.is_floating:
            ok = tf.logical_and(ok, tf.reduce_all(tf.math.is_finite(t)))
    return ok


def finite_rows(x: tf.Tensor) -> tf.Tensor:
    """Bool [batch]: whether each example of ``x`` [batch, ...] is free of inf and NaN."""
    return tf.reduce_all(tf.math.is_finite(tf.reshape(x, [tf.shape(x)[0], -1])), axis=1)


class NonFiniteWeightsError(ValueError):
    """A model with an inf or NaN weight was about to be saved, checkpointed or exported."""


def nonfinite_weights(model: Any) -> list[tuple[str, int, int]]:
    """``(path, bad entries, entries)`` for every floating weight of ``model`` with inf or NaN."""
    bad = []
    for weight in model.weights:
        value = np.asarray(weight.numpy() if hasattr(weight, "numpy") else weight)
        if not np.issubdtype(value.dtype, np.floating):
            continue
        count = int(value.size - np.count_nonzero(np.isfinite(value)))
        if count:
            bad.append((getattr(weight, "path", None) or weight.name, count, int(value.size)))
    return bad


def check_finite_weights(model: Any, action: str) -> None:
    """Raises :class:`NonFiniteWeightsError` naming the first bad weight, if any.

    Args:
      model: a Keras model.
      action: what was refused, for the message (``"save"``, ``"export"`` …).
    """
    bad = nonfinite_weights(model)
    if not bad:
        return
    path, count, size = bad[0]
    total = sum(b[1] for b in bad)
    raise NonFiniteWeightsError(
        f"{type(model).__name__}: refusing to {action} a model with non-finite weights: "
        f"{path!r} has {count} of {size} entries inf or NaN ({len(bad)} weights, {total} "
        "entries in all). Training diverged; go back to the last good checkpoint and lower "
        "the learning rate or add warmup.")
