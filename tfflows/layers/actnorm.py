"""Keras layer owning ActNorm's weights and its data-dependent initialisation."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfflows.bijectors.actnorm import ActNorm, actnorm_init
from tfflows.layers.base import DataInitializedLayer

__all__ = ["ActNormLayer"]


@keras.saving.register_keras_serializable(package="tfflows")
class ActNormLayer(DataInitializedLayer):
    """Owns :class:`~tfflows.bijectors.ActNorm`'s per-channel scale and bias.

    ``initialize(x)`` sets them from data so the output has zero mean and
    unit variance per channel, and records that in the ``initialized``
    weight. That flag is saved with the model: after loading or resuming,
    :meth:`initialize` does nothing unless ``force=True``.
    """

    def build(self, x_shape, context_shape=None):
        self._check_input_shape(x_shape)
        c = x_shape[-1]
        self.log_scale = self.add_weight(name="log_scale", shape=(c,), initializer="zeros")
        self.bias = self.add_weight(name="bias", shape=(c,), initializer="zeros")
        self._add_initialized_flag()

    def bijector(self, context: tf.Tensor | None = None) -> ActNorm:
        self._require_built()
        return ActNorm(tf.convert_to_tensor(self.log_scale), tf.convert_to_tensor(self.bias),
                       event_ndims=self.event_ndims, name=self.name)

    def _set_from_data(self, x: tf.Tensor) -> None:
        """Sets scale and bias from the batch ``x``: zero mean, unit variance per channel."""
        log_scale, bias = actnorm_init(tf.cast(x, self.log_scale.dtype), self.event_ndims)
        self.log_scale.assign(log_scale)
        self.bias.assign(bias)
