"""Keras layer owning ActNorm's weights and its data-dependent initialisation."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfflows.bijectors.actnorm import ActNorm, actnorm_degenerate, actnorm_init
from tfflows.layers.base import DataInitializedLayer
from tfflows.typing import Shape

__all__ = ["ActNormLayer"]


@keras.saving.register_keras_serializable(package="tfflows")
class ActNormLayer(DataInitializedLayer):
    """Owns :class:`~tfflows.bijectors.ActNorm`'s per-channel scale and bias.

    ``initialize(x)`` sets them from data so the output has zero mean and
    unit variance per channel, and records that in the ``initialized``
    weight. That flag is saved with the model: after loading or resuming,
    :meth:`initialize` does nothing unless ``force=True``.
    """

    def build(self, x_shape: Shape, context_shape: Shape | None = None) -> None:
        self._check_input_shape(x_shape)
        c = x_shape[-1]
        self.log_scale = self.add_weight(name="log_scale", shape=(c,), initializer="zeros")
        self.bias = self.add_weight(name="bias", shape=(c,), initializer="zeros")
        self._add_initialized_flag()

    def bijector(self, context: tf.Tensor | None = None) -> ActNorm:
        self._require_built()
        return ActNorm(
            tf.convert_to_tensor(self.log_scale),
            tf.convert_to_tensor(self.bias),
            event_ndims=self.event_ndims,
            name=self.name,
        )

    def _set_from_data(self, x: tf.Tensor) -> None:
        """Sets scale and bias from the batch ``x``: zero mean, unit variance per channel.

        A constant channel (variance below 1e-6) keeps scale 1 and is only
        centred, with a :class:`~tfflows.layers.DataInitWarning`; a variance
        that overflows raises (see :meth:`initialize`).
        """
        x = tf.cast(x, self.log_scale.dtype)
        _, var = tf.nn.moments(x, axes=list(range(x.shape.rank - 1)))
        self._checked_statistic("variance", var)
        self._warn_degenerate(
            "variance", actnorm_degenerate(var), "that channel keeps scale 1 (only centred)"
        )
        log_scale, bias = actnorm_init(x, self.event_ndims)
        self.log_scale.assign(self._checked_statistic("log-scale", log_scale))
        self.bias.assign(self._checked_statistic("bias", bias))
