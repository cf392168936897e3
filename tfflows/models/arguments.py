"""What every flow model checks of its arguments and of the data that initialise it, in one place."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from tfflows.bijectors.base import check_dropout

if TYPE_CHECKING:
    from tfflows.data.spec import DataSpec

__all__ = ["check_conditioner_dropout", "check_model_arguments", "check_seed", "initial_batch"]


def check_model_arguments(
    owner: str,
    flow_dtype: str,
    policy: str,
    event_shape: Sequence[int],
    num_classes: int | None,
    context_dim: int | None,
    validate_args: bool,
) -> tuple[int, ...]:
    """The arguments every :class:`FlowModel` takes, checked; returns ``event_shape`` as ints.

    Raises:
      ValueError: naming the argument, what it must be and what came.
    """
    if not isinstance(validate_args, bool):
        raise ValueError(f"{owner}: validate_args must be True or False, got {validate_args!r}.")
    if flow_dtype not in ("float32", "float64"):
        raise ValueError(
            f"{owner}: expected a dtype policy whose variable dtype is float32 or "
            f"float64 (e.g. 'float32', 'float64', 'mixed_bfloat16', 'mixed_float16'), got "
            f"{policy!r} with variable dtype {flow_dtype}: a flow's "
            "inverse and log-det need at least float32; use a mixed policy for low precision."
        )
    sizes: list[Any]
    try:
        sizes = [event_shape] if isinstance(event_shape, (str, bytes)) else list(event_shape)
    except TypeError:  # not a sequence
        sizes = [None]
    if not sizes or any(
        isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) for d in sizes
    ):
        raise ValueError(
            f"{owner}: event_shape must be (height, width, channels) or (features,) of "
            f"positive integers, got {event_shape!r}."
        )
    shape = tuple(int(d) for d in sizes)
    if len(shape) not in (1, 3) or min(shape) < 1:
        raise ValueError(
            f"{owner}: event_shape must be (height, width, channels) or "
            f"(features,) of positive sizes, got {shape!r}."
        )
    if num_classes is not None and context_dim is not None:
        raise ValueError(f"{owner}: give num_classes or context_dim, not both.")
    for key, value in (("num_classes", num_classes), ("context_dim", context_dim)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1
        ):
            raise ValueError(f"{owner}: {key} must be a positive integer, got {value!r}.")
    return shape


def check_conditioner_dropout(owner: str, dropout: Any, backprop: str) -> float:
    """A model's conditioner dropout rate in [0, 1), checked against its ``backprop`` mode.

    Dropout draws a new mask at every call, so it needs the stored forward
    pass (``backprop="store"``): the other modes compute each step again for
    the gradient, which would see another mask than the loss did.

    Raises:
      ValueError: a rate outside [0, 1), or a rate > 0 with another backprop mode.
    """
    rate = check_dropout(owner, dropout)
    if rate and backprop != "store":
        raise ValueError(
            f"{owner}: dropout needs backprop='store' (backprop={backprop!r} recomputes each step's "
            f"forward pass for the gradient, which would draw another dropout mask), got dropout={rate}."
        )
    return rate


def check_seed(owner: str, seed: Any) -> None:
    """A model's ``seed`` (of its fixed permutations): an integer.

    Raises:
      ValueError: naming what came.
    """
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"{owner}: seed must be an integer, got {seed!r}.")


def initial_batch(spec: DataSpec, data: Any, num_batches: int) -> tuple[tf.Tensor, tf.Tensor | None]:
    """The examples and contexts a data-dependent initialisation sees (``FlowModel.initialize``).

    ``data`` is a tensor or array of examples, or a ``tf.data.Dataset`` of
    batches (up to ``num_batches`` of them are concatenated).

    Raises:
      ValueError: an empty dataset, or data with inf or NaN values.
    """
    name = spec.owner
    if (
        isinstance(num_batches, (bool, np.bool_))
        or not isinstance(num_batches, (int, np.integer))
        or num_batches < 1
    ):
        raise ValueError(f"{name}: initialize's num_batches must be a positive integer, got {num_batches!r}.")
    if isinstance(data, tf.data.Dataset):
        xs, cs = [], []
        for batch in data.take(num_batches):
            x, c = spec.unpack(batch)
            xs.append(x)
            cs.append(c)
        if not xs:
            raise ValueError(f"{name}: initialize expected at least one batch, got an empty dataset.")
        x = tf.concat(xs, 0)
        context = None if cs[0] is None else tf.concat(cs, 0)
    else:
        x, context = spec.unpack(data)
    x = spec.check_x(x, values=False)
    if not bool(tf.reduce_all(tf.math.is_finite(x))):
        # Statistics of such a batch would make every ActNorm weight NaN.
        raise ValueError(
            f"{name}: initialize got data with inf or NaN values; "
            "ActNorm needs finite data to set its scale and bias."
        )
    return x, spec.context(context)


def constructor_config(cls: type, config: dict[str, Any]) -> dict[str, Any]:
    """A saved config as ``cls``'s constructor takes it: old argument names renamed, and
    ``event_shape`` left out for a subclass that sets its shape itself (``MyFlow(dim=3)``)."""
    from tfflows.deprecation import renamed_keys

    config = renamed_keys(config, getattr(cls, "OLD_ARGUMENT_NAMES", {}))
    if "event_shape" not in inspect.signature(getattr(cls, "__init__")).parameters:  # noqa: B009 (mypy: cls.__init__ is unsound)
        config = {k: v for k, v in config.items() if k != "event_shape"}
    return config
