"""The model behind the live TFP objects: contexts with TFP's batch semantics, the current flow."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import tensorflow as tf

from tfflows.data.arrays import as_tensor
from tfflows.typing import Context, TensorLike

if TYPE_CHECKING:
    from tfflows.models.base import FlowModel

__all__ = ["LiveFlow", "flow_dtype"]


def flow_dtype(model: FlowModel) -> tf.DType:
    """The dtype of a model's densities and samples: that of its weights."""
    return tf.as_dtype(model.dtype)


class LiveFlow:
    """A model and a (possibly batched) context: runs the flow on broadcast, flattened batches.

    What :class:`tfflows.distribution.LiveBijector` and
    :class:`tfflows.distribution.FlowDistribution` share: the contexts' batch
    shape (TFP's batch semantics), the broadcast of an input with them, and
    the model's current flow and variables.

    Attributes:
      model: the model.
      name: its class name (the first word of messages).
      dtype: the flow's float dtype.
      context: the contexts flattened to ``[N, size]`` (one-hot labels or
        vectors, checked by the model's spec), or None.
      batch_static: the contexts' batch shape, static.
      batch_tensor: the contexts' batch shape, as a tensor.
    """

    def __init__(self, model: FlowModel, context: Context) -> None:
        self.model = model
        self.name = type(model).__name__
        self.dtype = flow_dtype(model)
        if not model.is_conditional or context is None:
            model.spec.context(context)  # raises: a context for an unconditional model, or none given
            self.context = None
            self.batch_static, self.batch_tensor = tf.TensorShape([]), tf.constant([], tf.int32)
            return
        c = tf.convert_to_tensor(context)
        if c.shape.rank is None:
            raise ValueError(f"{self.name}: expected a context of known rank, got shape {c.shape}.")
        labels = model.num_classes is not None and not c.dtype.is_floating
        if not labels and c.shape.rank == 0:
            what = (
                f"one-hot vectors of size {model.num_classes}"
                if model.num_classes is not None
                else f"context vectors of size {model.context_dim}"
            )
            raise ValueError(f"{self.name}: expected {what} ([..., size]), got a scalar {c.dtype.name}.")
        batch_rank = c.shape.rank if labels else c.shape.rank - 1
        self.batch_static = c.shape[:batch_rank]
        self.batch_tensor = tf.shape(c)[:batch_rank]
        flat = tf.reshape(c, [-1] if labels else [-1, c.shape[-1]])
        self.context = model.spec.context(flat)  # [N, size]: one-hot labels or vectors, checked

    # -- broadcasting -----------------------------------------------------

    def _batch_of(self, x: tf.Tensor, event: tuple[int, ...], what: str):
        """x's batch shape (static, dynamic) after broadcasting with the contexts'."""
        k = len(event)
        rank = x.shape.rank
        if rank is None or rank < k or not x.shape[rank - k :].is_compatible_with(event):
            raise ValueError(
                f"{self.name}: expected {what} of shape [..., {', '.join(map(str, event))}], "
                f"got shape {x.shape}."
            )
        static, dynamic = x.shape[: x.shape.rank - k], tf.shape(x)[: x.shape.rank - k]
        if self.context is None:
            return static, dynamic
        try:
            static = tf.broadcast_static_shape(static, self.batch_static)
        except ValueError:
            raise ValueError(
                f"{self.name}: {what} of shape {x.shape} has batch shape "
                f"{x.shape[: x.shape.rank - k]}, which "
                f"does not broadcast with the batch shape {self.batch_static} of the contexts "
                "(one distribution per context)."
            ) from None
        return static, tf.broadcast_dynamic_shape(dynamic, self.batch_tensor)

    def run(
        self,
        x: TensorLike,
        event_in: tuple[int, ...],
        events_out: list[tuple[int, ...]],
        fn: Callable[[tf.Tensor, tf.Tensor | None], Any],
        what: str,
    ) -> list[tf.Tensor]:
        """``fn(x_flat, context_flat)`` on ``x`` broadcast with the contexts and flattened.

        ``x`` is ``[..., *event_in]``; ``fn`` gets ``[N, *event_in]`` and the
        matching ``[N, size]`` contexts (or None) and returns one tensor per
        entry of ``events_out``, each ``[N, *event]``; they come back as
        ``[*batch, *event]`` with ``batch`` the broadcast of x's batch shape
        and the contexts'.
        """
        x = as_tensor(
            x, self.name, what, f"an array of numbers of shape [..., {', '.join(map(str, event_in))}]"
        )
        if not x.dtype.is_floating:
            raise ValueError(f"{self.name}: {what} must be float32 or float64, got {x.dtype.name}.")
        x = tf.cast(x, self.dtype)
        if tf.executing_eagerly():
            self.model.spec.check_values(x, what)  # inf or NaN in: refused, as encode and decode refuse them
        static, batch = self._batch_of(x, event_in, what)
        context = None
        if self.context is not None:
            x = tf.broadcast_to(x, tf.concat([batch, event_in], 0))
            size = self.context.shape[-1]
            context = tf.reshape(self.context, tf.concat([self.batch_tensor, [size]], 0))
            context = tf.reshape(tf.broadcast_to(context, tf.concat([batch, [size]], 0)), [-1, size])
        outs = []
        for out, event in zip(fn(tf.reshape(x, [-1, *event_in]), context), events_out):
            out = tf.reshape(out, tf.concat([batch, tf.constant(event, tf.int32, [len(event)])], 0))
            out.set_shape(static.concatenate(event))
            outs.append(out)
        return outs

    def flow(self, context: tf.Tensor | None) -> Any:
        """The model's flow (data → latent bijector) for flattened ``[N, size]`` contexts."""
        return self.model.flow(context)

    def variables(self, trainable: bool) -> tuple[tf.Variable, ...]:
        """The model's (trainable) weights as the ``tf.Variable`` objects TFP and tapes expect."""
        weights = self.model.trainable_variables if trainable else self.model.variables
        # The tf.Variable behind each Keras weight: what GradientTape watches and TFP expects.
        return tuple(getattr(v, "value", v) if not isinstance(v, tf.Variable) else v for v in weights)
