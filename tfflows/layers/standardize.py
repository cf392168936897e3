"""Keras layer owning Standardize's fitted statistics."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from tfflows.bijectors.standardize import Standardize, standardize_degenerate, standardize_stats
from tfflows.layers.base import DataInitializedLayer
from tfflows.typing import Shape

__all__ = ["StandardizeLayer"]


@keras.saving.register_keras_serializable(package="tfflows")
class StandardizeLayer(DataInitializedLayer):
    """Owns :class:`~tfflows.bijectors.Standardize`'s per-feature mean and scale.

    Both are fixed (non-trainable) weights set once by ``initialize(x)``
    from the data, which also sets the saved ``initialized`` weight; after
    loading or resuming, :meth:`initialize` does nothing unless ``force=True``.
    Before initialisation the step is the identity (mean 0, scale 1).
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("event_ndims", 1)
        super().__init__(**kwargs)

    def build(self, x_shape: Shape, context_shape: Shape | None = None) -> None:
        self._check_input_shape(x_shape)
        d = x_shape[-1]
        self.mean = self.add_weight(name="mean", shape=(d,), initializer="zeros", trainable=False)
        self.scale = self.add_weight(name="scale", shape=(d,), initializer="ones", trainable=False)
        self._add_initialized_flag()

    def bijector(self, context: tf.Tensor | None = None) -> Standardize:
        self._require_built()
        return Standardize(
            tf.convert_to_tensor(self.mean),
            tf.convert_to_tensor(self.scale),
            event_ndims=self.event_ndims,
            name=self.name,
        )

    def _set_from_data(self, x: tf.Tensor) -> None:
        """Sets mean and scale from the examples ``x``.

        A constant feature keeps scale 1 (only centred), with a
        :class:`~tfflows.layers.DataInitWarning`; a mean or a standard deviation
        that overflows raises (see :meth:`initialize`).
        """
        x = tf.cast(x, self.mean.dtype)
        mean, var = tf.nn.moments(x, axes=list(range(x.shape.rank - 1)))
        self._checked_statistic("mean", mean)
        std = self._checked_statistic("standard deviation", tf.sqrt(var))
        self._warn_degenerate(
            "standard deviation", standardize_degenerate(std), "that feature keeps scale 1 (only centred)"
        )
        mean, scale = standardize_stats(x)
        self.mean.assign(mean)
        self.scale.assign(scale)
