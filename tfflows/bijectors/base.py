"""Shared machinery for tfflows bijectors.

Every tfflows bijector computes its output and its log-det in one pass
(``_forward_and_log_det`` / ``_inverse_and_log_det``). TFP's public methods
(``forward``, ``inverse_log_det_jacobian``, ...) are wired to that pass, and
the models call ``forward_and_log_det`` directly so that a conditioner network
is evaluated once per step, not once for the output and again for the log-det.
"""

from __future__ import annotations

import numbers
from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp

from tfflows.typing import Shape

tfb = tfp.bijectors

__all__ = [
    "FlowBijector",
    "as_python_number",
    "check_positive_ints",
    "check_float",
    "check_event_rank",
    "check_channels",
    "event_axes",
]


def check_positive_ints(name: str, **values: Any) -> None:
    """Raises ValueError for any keyword whose value is not an integer >= 1."""
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: {key} must be a positive integer, got {value!r}.")


def check_dropout(name: str, rate: Any) -> float:
    """A dropout rate in [0, 1) as a float; raises ValueError naming ``name`` otherwise."""
    rate = as_python_number(rate)
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"{name}: dropout must be a rate in [0, 1), got {rate!r}.")
    return float(rate)


def dropout_config(rate: float) -> dict[str, float]:
    """``{"dropout": rate}`` for a config or options, ``{}`` at 0: files saved without dropout keep theirs."""
    return {"dropout": rate} if rate else {}


def as_python_number(value: Any) -> Any:
    """A 0-d real tensor, variable or NumPy array as a Python float; anything else unchanged.

    Lets an argument checked with ``numbers.Real`` take ``tf.constant(0.7)``
    (eager) as it takes ``0.7``; a symbolic tensor has no value to check and stays.
    """
    if (
        isinstance(value, (tf.Tensor, tf.Variable))
        and value.shape.rank == 0
        and (value.dtype.is_floating or value.dtype.is_integer)
        and tf.executing_eagerly()
    ):
        return float(value.numpy())
    is_array = hasattr(value, "dtype") and getattr(value, "ndim", None) == 0
    if is_array and getattr(value.dtype, "kind", "") in "fiu":
        return float(value)
    return value


def check_float(x: tf.Tensor, name: str) -> None:
    """Raises ValueError unless ``x`` has a floating-point dtype."""
    if not x.dtype.is_floating:
        raise ValueError(
            f"{name}: expected a floating-point tensor (float32 or float64), got dtype {x.dtype.name}."
        )


def check_event_rank(x: tf.Tensor, event_ndims: int, name: str) -> None:
    """Raises ValueError when ``x`` has fewer dimensions than one event needs."""
    rank = x.shape.rank
    if rank is not None and rank < event_ndims:
        what = {3: "[..., height, width, channels]", 2: "[..., tokens, features]"}.get(
            event_ndims, "[..., features]"
        )
        raise ValueError(
            f"{name}: expected a tensor of rank >= {event_ndims} shaped {what}, "
            f"got rank {rank} with shape {x.shape}."
        )


def check_channels(x: tf.Tensor, expected: int | None, name: str) -> None:
    """Raises ValueError when the static channel count differs from ``expected``."""
    got = x.shape[-1] if x.shape.rank else None
    if expected is not None and got is not None and got != expected:
        raise ValueError(
            f"{name}: expected {expected} channels in the last axis, got {got} (input shape {x.shape})."
        )


_EVENT_KINDS = {1: "1 (vectors)", 2: "2 (token sequences)", 3: "3 (HWC images)"}


def describe_event_ndims(supported: tuple[int, ...]) -> str:
    """``(1, 3)`` as "1 (vectors) or 3 (HWC images)", for error messages."""
    names = [_EVENT_KINDS.get(n, str(n)) for n in supported]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def event_axes(event_ndims: int) -> list[int]:
    """The trailing axes that make up one event."""
    return list(range(-event_ndims, 0))


class FlowBijector(tfp.bijectors.Bijector):
    """Base class: one pass gives the output and the log-det.

    Subclasses implement ``_forward_and_log_det(x)`` and
    ``_inverse_and_log_det(y)``, each returning ``(output, log_det)`` where
    ``log_det`` has the batch shape (the event axes summed out). They may
    override ``_validate(x)`` to reject bad inputs with a ``ValueError``.
    """

    supported_event_ndims: tuple[int, ...] = (1, 3)
    """Event ranks the subclass handles; token-sequence bijectors ([T, D]) add 2."""

    needs_data_init: bool = False
    """Fixed bijectors are never set from data (see :class:`tfflows.layers.FlowLayer`)."""

    flattens_latent: bool = False
    """True for a step that only reshapes the latent into the base's flat vector
    (``Flatten``, ``FlattenTokens``): a model's ``latent_shapes`` report the shape before it."""

    def __init__(
        self,
        event_ndims: int,
        *,
        parameters: dict[str, Any],
        name: str,
        is_constant_jacobian: bool = False,
        inverse_event_ndims: int | None = None,
        validate_args: bool = False,
    ) -> None:
        if event_ndims not in self.supported_event_ndims:
            raise ValueError(
                f"{name}: event_ndims must be {describe_event_ndims(self.supported_event_ndims)}, "
                f"got {event_ndims!r}."
            )
        self._event_ndims = event_ndims
        super().__init__(
            forward_min_event_ndims=event_ndims,
            inverse_min_event_ndims=(event_ndims if inverse_event_ndims is None else inverse_event_ndims),
            is_constant_jacobian=is_constant_jacobian,
            validate_args=validate_args,
            parameters=parameters,
            name=name,
        )

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        # Parameters are plain tensors built per call from Keras weights;
        # they carry no batch dimensions of their own.
        return {}

    @property
    def event_ndims(self) -> int:
        """Rank of one event: 1 for vectors, 2 for token sequences, 3 for HWC images."""
        return self._event_ndims

    def output_event_shape(self, event_shape: Shape) -> tuple[int, ...]:
        """The event shape of ``forward`` for one input event of ``event_shape`` (a plan step)."""
        return tuple(self.forward_event_shape(tuple(event_shape)).as_list())

    # TFP compares bijectors by their parameters, and its cache of forward and
    # inverse results (shared by all instances) is keyed by that equality. Ours
    # hold live Keras layers (conditioners): two built before and after a weight
    # update have equal parameters but are different functions, so the second
    # would be served the first one's cached results. Each is equal only to itself.
    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def _validate(self, x: tf.Tensor, inverse: bool) -> None:
        check_float(x, self.name)
        ndims = self.inverse_min_event_ndims if inverse else self.forward_min_event_ndims
        check_event_rank(x, ndims, self.name)

    # TFP's hooks, all routed through the one-pass methods.
    def _forward(self, x, **kwargs):
        return self.forward_and_log_det(x)[0]

    def _inverse(self, y, **kwargs):
        return self.inverse_and_log_det(y)[0]

    def _forward_log_det_jacobian(self, x, **kwargs):
        return self.forward_and_log_det(x)[1]

    def _inverse_log_det_jacobian(self, y, **kwargs):
        return self.inverse_and_log_det(y)[1]

    def forward_and_log_det(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Returns ``(f(x), log|det df/dx|)``; the log-det has the batch shape."""
        x = tf.convert_to_tensor(x)
        self._validate(x, inverse=False)
        return self._forward_and_log_det(x)

    def inverse_and_log_det(self, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Returns ``(f⁻¹(y), log|det df⁻¹/dy|)``; the log-det has the batch shape."""
        y = tf.convert_to_tensor(y)
        self._validate(y, inverse=True)
        return self._inverse_and_log_det(y)

    def _forward_and_log_det(self, x):
        raise NotImplementedError

    def _inverse_and_log_det(self, y):
        raise NotImplementedError


def batch_zeros(x: tf.Tensor, event_ndims: int) -> tf.Tensor:
    """Zeros with the batch shape of ``x`` (its leading, non-event axes)."""
    return tf.zeros(tf.shape(x)[: tf.rank(x) - event_ndims], dtype=x.dtype)


def sum_event(t: tf.Tensor, event_ndims: int) -> tf.Tensor:
    """Sums the trailing ``event_ndims`` axes."""
    return tf.reduce_sum(t, axis=event_axes(event_ndims))


def event_size(x: tf.Tensor, event_ndims: int) -> tf.Tensor:
    """Number of elements in one event of ``x``, as a tensor of ``x``'s dtype."""
    return tf.cast(tf.reduce_prod(tf.shape(x)[-event_ndims:]), x.dtype)
