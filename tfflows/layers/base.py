"""The Keras side of a flow step: a layer that owns weights and builds a bijector."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from tfflows.bijectors.base import FlowBijector, describe_event_ndims

__all__ = ["DataInitializedLayer", "FlowLayer"]


class FlowLayer(keras.layers.Layer):
    """A Keras layer that owns a flow step's weights and builds its bijector per call.

    Subclasses create weights in ``build`` with ``add_weight`` and implement
    ``bijector(context)``, which returns a fresh :class:`FlowBijector` made
    from the current weight values, so ``fit`` trains them and TFP's
    per-tensor cache never answers with stale values.

    ``call(x, context=None, inverse=False)`` returns ``(y, log_det)`` of the
    bijector's forward (data towards latent) or inverse pass.

    A layer that changes the event shape says how in ``output_event_shape``.
    Data-dependent initialisation is a small protocol, not a type check:
    a step with ``needs_data_init = True`` offers ``is_initialized`` and
    ``initialize(x, force=False) -> bool`` (x being the step's own input),
    and the model runs it on data before training (ActNorm, Standardize).

    Args:
      event_ndims: 3 for [H, W, C] images, 1 for vectors (2 for [T, D] token
        sequences where the subclass lists it in ``supported_event_ndims``).
    """

    needs_data_init: bool = False
    """True for steps set from data once (see the class docstring)."""

    flattens_latent: bool = False
    """Layers never only flatten the latent (see :class:`~tfflows.bijectors.FlowBijector`)."""

    supported_event_ndims: tuple[int, ...] = (1, 3)
    """Event ranks the layer handles; token-sequence layers ([T, D]) add 2."""

    def __init__(self, event_ndims: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if event_ndims not in self.supported_event_ndims:
            raise ValueError(
                f"{self.name}: event_ndims must be "
                f"{describe_event_ndims(self.supported_event_ndims)}, got {event_ndims!r}."
            )
        self.event_ndims = event_ndims

    def _check_input_shape(self, shape) -> None:
        if shape is None or len(shape) < self.event_ndims + 1:
            what = {3: "[batch, height, width, channels]", 2: "[batch, tokens, features]"}.get(
                self.event_ndims, "[batch, features]")
            raise ValueError(f"{self.name}: expected inputs shaped {what}, got shape {shape}.")
        if shape[-1] is None:
            raise ValueError(f"{self.name}: the last axis must have a known size, got shape {shape}.")

    def bijector(self, context: tf.Tensor | None = None) -> FlowBijector:
        """Returns the bijector made from the current weights."""
        raise NotImplementedError

    def output_event_shape(self, event_shape) -> tuple[int, ...]:
        """The event shape this step gives for an input event of ``event_shape``.

        Layer steps keep the shape; a shape-changing one overrides this, so a
        model's ``latent_shapes`` need not know its type.
        """
        return tuple(event_shape)

    def _require_built(self) -> None:
        if not self.built:
            raise ValueError(
                f"{self.name}: the layer has no weights yet; call it on data or "
                "call build(input_shape) before asking for its bijector."
            )

    def call(self, x, context=None, inverse: bool = False):
        b = self.bijector(context)
        return b.inverse_and_log_det(x) if inverse else b.forward_and_log_det(x)

    def compute_output_spec(self, x, context=None, inverse: bool = False):
        batch = x.shape[: len(x.shape) - self.event_ndims]
        return (keras.KerasTensor(x.shape, x.dtype), keras.KerasTensor(batch, x.dtype))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "event_ndims": self.event_ndims}


class DataInitializedLayer(FlowLayer):
    """A :class:`FlowLayer` set once from data (ActNorm, Standardize).

    Subclasses create their weights in ``build`` and call
    ``self._add_initialized_flag()`` there; they implement
    ``_set_from_data(x)``. The flag is a saved weight, so after loading or
    resuming :meth:`initialize` does nothing unless ``force=True``.
    """

    needs_data_init = True

    def _add_initialized_flag(self) -> None:
        self.initialized = self.add_weight(
            name="initialized", shape=(), initializer="zeros", trainable=False, dtype="float32")

    @property
    def is_initialized(self) -> bool:
        return bool(keras.ops.convert_to_numpy(self.initialized) > 0.5)

    def initialize(self, x: tf.Tensor, force: bool = False) -> bool:
        """Sets the layer from the examples ``x`` (its input), once.

        Returns True when it initialised, False when it was already done.
        """
        if not self.built:
            self.build(tuple(x.shape))
        if self.is_initialized and not force:
            return False
        self._set_from_data(x)
        self.initialized.assign(1.0)
        return True

    def _set_from_data(self, x: tf.Tensor) -> None:
        raise NotImplementedError
