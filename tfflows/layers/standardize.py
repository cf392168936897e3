"""Keras layer owning Standardize's fitted statistics."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from tfflows.bijectors.standardize import Standardize, standardize_stats
from tfflows.layers.base import FlowLayer

__all__ = ["StandardizeLayer"]


@keras.saving.register_keras_serializable(package="tfflows")
class StandardizeLayer(FlowLayer):
    """Owns :class:`~tfflows.bijectors.Standardize`'s per-feature mean and scale.

    Both are fixed (non-trainable) weights set once by ``initialize(x)``
    from the data, which also sets the saved ``initialized`` weight; after
    loading or resuming, :meth:`initialize` does nothing unless ``force=True``.
    Before initialisation the step is the identity (mean 0, scale 1).
    """

    needs_data_init = True

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("event_ndims", 1)
        super().__init__(**kwargs)

    def build(self, x_shape, context_shape=None):
        self._check_input_shape(x_shape)
        d = x_shape[-1]
        self.mean = self.add_weight(name="mean", shape=(d,), initializer="zeros", trainable=False)
        self.scale = self.add_weight(name="scale", shape=(d,), initializer="ones", trainable=False)
        self.initialized = self.add_weight(
            name="initialized", shape=(), initializer="zeros", trainable=False, dtype="float32")

    def bijector(self, context: tf.Tensor | None = None) -> Standardize:
        self._require_built()
        return Standardize(tf.convert_to_tensor(self.mean), tf.convert_to_tensor(self.scale),
                           event_ndims=self.event_ndims, name=self.name)

    @property
    def is_initialized(self) -> bool:
        return bool(keras.ops.convert_to_numpy(self.initialized) > 0.5)

    def initialize(self, x: tf.Tensor, force: bool = False) -> bool:
        """Sets mean and scale from the examples ``x`` (the layer's input), once.

        Returns True when it initialised, False when it was already done.
        """
        if not self.built:
            self.build(tuple(x.shape))
        if self.is_initialized and not force:
            return False
        mean, scale = standardize_stats(tf.cast(x, self.mean.dtype))
        self.mean.assign(mean)
        self.scale.assign(scale)
        self.initialized.assign(1.0)
        return True
