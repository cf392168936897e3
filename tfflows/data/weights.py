"""Example weights of a batch (Keras' ``sample_weight``), checked once for every model.

:meth:`tfflows.data.DataSpec.sample_weight` and
:meth:`tfflows.data.DataSpec.check_weight_array` ask this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

if TYPE_CHECKING:
    from tfflows.data.spec import DataSpec

__all__ = ["check_weight_array", "sample_weight"]


def sample_weight(spec: DataSpec, data: Any, batch_size: tf.Tensor | int | None) -> tf.Tensor | None:
    """The batch's example weights as float32 [batch], or None when it has none.

    Keras passes ``fit(..., sample_weight=w)`` (and a dataset's
    ``(x, y, w)`` batches) as the third element of the batch. Weights must
    be finite and >= 0, one per example; eagerly a bad one raises
    ``ValueError``, in a graph an ``InvalidArgumentError`` (not under XLA,
    which compiles the check away).
    """
    if not isinstance(data, (tuple, list)) or len(data) != 3 or data[2] is None:
        return None
    name = spec.owner
    weight = tf.convert_to_tensor(data[2])
    if weight.shape.rank == 2 and weight.shape[-1] == 1:
        weight = weight[:, 0]
    if weight.shape.rank != 1 or not (weight.dtype.is_floating or weight.dtype.is_integer):
        raise ValueError(
            f"{name}: expected sample_weight of shape [batch] (one number per "
            f"example), got {weight.dtype.name} of shape {weight.shape}."
        )
    weight = tf.cast(weight, tf.float32)
    what = f"{name}: expected sample_weight values that are finite and >= 0"
    if tf.executing_eagerly():
        bad = int(tf.reduce_sum(tf.cast(~(tf.math.is_finite(weight) & (weight >= 0)), tf.int32)))
        if bad:
            raise ValueError(f"{what}, got {bad} negative, inf or NaN values.")
        if batch_size is not None and weight.shape[0] != int(batch_size):
            raise ValueError(
                f"{name}: expected one sample_weight per example ({int(batch_size)}), got {weight.shape[0]}."
            )
        return weight
    valid = tf.reduce_all(tf.math.is_finite(weight) & (weight >= 0))
    checks = [tf.debugging.Assert(valid, [what])]
    if batch_size is not None:
        same = tf.equal(tf.size(weight), tf.cast(batch_size, tf.int32))
        checks.append(tf.debugging.Assert(same, [f"{name}: expected one sample_weight per example"]))
    with tf.control_dependencies(checks):
        return tf.identity(weight)


def check_weight_array(spec: DataSpec, weight: Any, where: str) -> None:
    """Eager check of a ``sample_weight=`` array given to ``fit``/``evaluate``.

    Raises:
      ValueError: not one finite number >= 0 per example.
    """
    if weight is None or isinstance(weight, tf.data.Dataset):
        return
    array = np.asarray(weight)
    name = f"{spec.owner}.{where}"
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise ValueError(
            f"{name}: expected sample_weight of shape [num_examples] (one number "
            f"per example), got {array.dtype} of shape {array.shape}."
        )
    bad = int(np.sum(~(np.isfinite(array) & (array >= 0))))
    if bad:
        raise ValueError(
            f"{name}: expected sample_weight values that are finite and >= 0, "
            f"got {bad} negative, inf or NaN values."
        )
