"""Keras layer owning a learned (optionally conditional) diagonal Gaussian prior."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfflows.bijectors.actnorm import ElementwiseAffine
from tfflows.layers.base import FlowLayer
from tfflows.typing import Shape

__all__ = ["PriorLayer"]


@keras.saving.register_keras_serializable(package="tfflows")
class PriorLayer(FlowLayer):
    """A learned diagonal Gaussian prior on the top latent, written as a bijector.

    A latent z with prior N(μ, σ²) is the image of a standard normal ε under
    z = μ + σ ε, so the prior is the bijector ε = (z − μ)/σ in front of a
    standard normal base. Here it is parameterised directly as
    ε = z ⊙ exp(a) + b with one a and b per latent entry; with ``context``
    (a class one-hot or a context vector) a zero-initialised dense layer adds
    a per-channel term to a and b, as Glow's class-conditional prior.

    All parameters start at zero: a fresh prior is the standard normal.

    References:
      Kingma, Dhariwal. Glow: Generative Flow with Invertible 1x1
        Convolutions. NeurIPS 2018 (learned and class-conditional top prior).
    """

    def build(self, x_shape: Shape, context_shape: Shape | None = None) -> None:
        self._check_input_shape(x_shape)
        event = tuple(x_shape[-self.event_ndims :])
        self.log_scale = self.add_weight(name="log_scale", shape=event, initializer="zeros")
        self.shift = self.add_weight(name="shift", shape=event, initializer="zeros")
        self.context_dense = None
        if context_shape is not None:
            # In the flow's dtype, not a mixed policy's compute dtype: a prior stays float32.
            self.context_dense = keras.layers.Dense(
                2 * event[-1], kernel_initializer="zeros", dtype=self.flow_dtype, name="context_dense"
            )
            self.context_dense.build(tuple(context_shape))

    def bijector(self, context: tf.Tensor | None = None) -> ElementwiseAffine:
        self._require_built()
        log_scale = tf.convert_to_tensor(self.log_scale)
        shift = tf.convert_to_tensor(self.shift)
        if context is not None:
            if self.context_dense is None:
                raise ValueError(f"{self.name}: got a context but the layer was built without one.")
            h = self.context_dense(context)
            extra = [1] * (self.event_ndims - 1)
            h = tf.reshape(h, tf.concat([tf.shape(h)[:-1], extra, [tf.shape(h)[-1]]], 0))
            h_scale, h_shift = tf.split(h, 2, axis=-1)
            log_scale, shift = log_scale + h_scale, shift + h_shift
        return ElementwiseAffine(log_scale, shift, event_ndims=self.event_ndims, name=self.name)
