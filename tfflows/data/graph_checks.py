"""In-graph asserts on served inputs: what a SavedModel signature (and ``validate_args``) checks at run time.

:meth:`tfflows.data.DataSpec.graph_context_checks` and
:meth:`tfflows.data.DataSpec.graph_level_checks` ask this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import tensorflow as tf

if TYPE_CHECKING:
    from tfflows.data.spec import DataSpec

__all__ = ["graph_context_checks", "graph_level_checks"]


def graph_context_checks(
    spec: DataSpec, context: tf.Tensor | None, batch: tf.Tensor, where: str
) -> list[tf.Operation]:
    """In-graph asserts on a served context: labels in range, vectors finite, one per example.

    The checks a SavedModel signature always runs (and ``validate_args``
    asks for): an ``InvalidArgumentError`` at run time names ``where``.
    """
    if context is None:
        if spec.is_conditional:
            raise ValueError(f"{where}: a conditional model's checks need its context, got None.")
        return []
    if spec.num_classes is not None:
        k = spec.num_classes
        what = f"{where}: labels must be class ids in 0..{k - 1}"
        return [
            tf.debugging.assert_greater_equal(context, tf.cast(0, context.dtype), message=what),
            tf.debugging.assert_less(context, tf.cast(k, context.dtype), message=what),
            tf.debugging.assert_equal(
                tf.shape(context)[0], batch, message=f"{where}: labels must have one entry per example"
            ),
        ]
    if spec.context_dim is not None:
        return [
            tf.debugging.assert_equal(
                tf.reduce_all(tf.math.is_finite(context)), True, message=f"{where}: context must be finite"
            ),
            tf.debugging.assert_equal(
                tf.shape(context)[0], batch, message=f"{where}: context must have one row per example"
            ),
        ]
    return []


def graph_level_checks(spec: DataSpec, x: tf.Tensor, where: str) -> list[tf.Operation]:
    """In-graph asserts that ``x`` holds finite pixel levels in [0, 2^num_bits) (image models)."""
    top = 2.0 ** int(spec.num_bits or 8)
    what = f"{where}: images must be finite pixel levels in [0, {top:g})"
    return [
        tf.debugging.assert_equal(tf.reduce_all(tf.math.is_finite(x)), True, message=what),
        tf.debugging.assert_greater_equal(x, tf.cast(0.0, x.dtype), message=what),
        tf.debugging.assert_less(x, tf.cast(top, x.dtype), message=what),
    ]
