"""The Keras side of a flow step: a layer that owns weights and builds a bijector."""

from __future__ import annotations

import warnings
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfflows.bijectors.base import FlowBijector, describe_event_ndims
from tfflows.typing import Shape

__all__ = ["DataInitWarning", "DataInitializedLayer", "FlowLayer"]


class DataInitWarning(UserWarning):
    """A data-dependent initialisation fell back from a degenerate statistic.

    See :class:`DataInitializedLayer`.
    """


def _as_flow_dtype(t, dtype: str):
    """``t`` as a tensor, floating ones cast to ``dtype`` (integer labels stay as they are)."""
    t = tf.convert_to_tensor(t)
    return tf.cast(t, dtype) if t.dtype.is_floating and t.dtype != dtype else t


class FlowLayer(keras.layers.Layer):
    """A Keras layer that owns a flow step's weights and builds its bijector per call.

    Subclasses create weights in ``build`` with ``add_weight`` and implement
    ``bijector(context)``, which returns a fresh :class:`FlowBijector` made
    from the current weight values, so ``fit`` trains them and TFP's
    per-tensor cache never answers with stale values.

    ``call(x, context=None, inverse=False)`` returns ``(y, log_det)`` of the
    bijector's forward (data towards latent) or inverse pass.

    A layer that changes the event shape says how in ``output_event_shape``.
    Dtype policy: the flow's own maths (the data path x → y, log-dets,
    determinants, priors) runs in the policy's *variable* dtype, so
    ``dtype="float64"`` gives a float64 step and a mixed policy
    (``"mixed_bfloat16"``, ``"mixed_float16"``) keeps it in float32: an
    invertible map needs the precision, and TensorFlow has no bfloat16
    kernels for triangular solves. Only conditioner networks, which are
    sub-layers built with this layer's policy, compute in the low-precision
    compute dtype; their outputs are cast back before any shift, scale or
    log-det. So a flow layer does not autocast: ``call`` casts a floating
    ``x`` (and ``context``) to :attr:`flow_dtype` instead.

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

    sequential_inverse: bool = False
    """True when the inverse runs the network once per feature or token (autoregressive
    steps): ``backprop="reversible"``, which inverts every step, refuses such models."""

    def __init__(self, event_ndims: int = 3, **kwargs: Any) -> None:
        # Not the compute dtype: see "Dtype policy" in the class docstring.
        kwargs.setdefault("autocast", False)
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
                self.event_ndims, "[batch, features]"
            )
            raise ValueError(f"{self.name}: expected inputs shaped {what}, got shape {shape}.")
        if shape[-1] is None:
            raise ValueError(f"{self.name}: the last axis must have a known size, got shape {shape}.")

    def add_weight(self, *args: Any, **kwargs: Any) -> keras.Variable:
        # Keras enters the compute dtype's autocast scope for a mixed policy even when
        # autocast=False (without an outer scope): the weights themselves must opt out.
        kwargs.setdefault("autocast", False)
        return super().add_weight(*args, **kwargs)

    @property
    def flow_dtype(self) -> str:
        """The dtype of the step's data path and log-det: the policy's variable dtype."""
        return self.variable_dtype

    def bijector(self, context: tf.Tensor | None = None) -> FlowBijector:
        """Returns the bijector made from the current weights."""
        raise NotImplementedError

    def output_event_shape(self, event_shape: Shape) -> tuple[int, ...]:
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

    def call(
        self, x: tf.Tensor, context: tf.Tensor | None = None, inverse: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor]:
        x = _as_flow_dtype(x, self.flow_dtype)
        if context is not None:
            context = _as_flow_dtype(context, self.flow_dtype)
        b = self.bijector(context)
        return b.inverse_and_log_det(x) if inverse else b.forward_and_log_det(x)

    def compute_output_spec(
        self, x: keras.KerasTensor, context: keras.KerasTensor | None = None, inverse: bool = False
    ) -> tuple[keras.KerasTensor, keras.KerasTensor]:
        batch = x.shape[: len(x.shape) - self.event_ndims]
        dtype = self.flow_dtype if keras.backend.is_float_dtype(x.dtype) else x.dtype
        return (keras.KerasTensor(x.shape, dtype), keras.KerasTensor(batch, dtype))

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
        self.initialized = self.add_weight(name="initialized", shape=(), initializer="zeros", trainable=False)

    @property
    def is_initialized(self) -> bool:
        return bool(keras.ops.convert_to_numpy(self.initialized) > 0.5)

    def initialize(self, x: tf.Tensor, force: bool = False) -> bool:
        """Sets the layer from the examples ``x`` (its input), once.

        Returns True when it initialised, False when it was already done.

        Raises:
          ValueError: ``x`` holds no example or inf/NaN values, or a statistic
            of it is not finite (the data overflow the layer's dtype). Nothing
            is stored then: a layer never keeps a non-finite statistic.
        """
        if not self.built:
            self.build(tuple(x.shape))
        if self.is_initialized and not force:
            return False
        x = tf.convert_to_tensor(x)
        if x.shape.rank is not None and x.shape.rank > 0 and int(tf.shape(x)[0]) == 0:
            raise ValueError(
                f"{self.name}: data-dependent initialisation needs at least one example, "
                f"got an empty batch of shape {list(x.shape)}."
            )
        bad = int(tf.reduce_sum(tf.cast(~tf.math.is_finite(tf.cast(x, self.flow_dtype)), tf.int32)))
        if bad:
            raise ValueError(
                f"{self.name}: data-dependent initialisation expected finite inputs, got "
                f"{bad} inf or NaN values (in {self.flow_dtype}; the steps before it, or the "
                "data, overflow)."
            )
        self._set_from_data(x)
        self.initialized.assign(1.0)
        return True

    def _checked_statistic(self, statistic: str, value: tf.Tensor) -> tf.Tensor:
        """``value`` when every entry is finite; else a ValueError naming the layer and ``statistic``."""
        bad = np.flatnonzero(~np.isfinite(keras.ops.convert_to_numpy(value)))
        if bad.size:
            raise ValueError(
                f"{self.name}: data-dependent initialisation gave a non-finite {statistic} for "
                f"{bad.size} of {int(np.prod(value.shape))} features/channels (first: index {int(bad[0])}): "
                f"the data overflow {value.dtype.name}; rescale them (or use dtype='float64')."
            )
        return value

    def _warn_degenerate(self, statistic: str, degenerate: tf.Tensor, fallback: str) -> None:
        """Warns, naming the layer and ``statistic``, where the boolean mask ``degenerate`` holds."""
        where = np.flatnonzero(keras.ops.convert_to_numpy(degenerate))
        if where.size:
            shown = ", ".join(str(int(i)) for i in where[:8]) + (", ..." if where.size > 8 else "")
            warnings.warn(
                f"{self.name}: data-dependent initialisation found a zero {statistic} for "
                f"{where.size} of {int(np.prod(degenerate.shape))} features/channels ({shown}): the data "
                f"are constant there; {fallback} instead of dividing by it.",
                DataInitWarning,
                stacklevel=4,
            )

    def _set_from_data(self, x: tf.Tensor) -> None:
        raise NotImplementedError
