"""A flow's steps as a functional Keras graph: what ``summary`` and ``plot_model`` read.

A :class:`~tfflows.models.FlowModel` is a subclassed ``keras.Model``: its
steps run in Python, so Keras knows neither the shapes between them nor how
they connect. Keras 3 draws such a model as one box
(``keras.utils.model_to_dot``: "We treat subclassed models as a single
node") and prints "?" as every layer's output shape. :func:`functional_view`
runs the steps once on symbolic ``keras.Input`` tensors instead, which gives
each flow layer its output shape and builds a ``keras.Model(inputs,
outputs)`` of the same layers and weights, computing
log p(x) = log N(z; 0, I) + Σ log|det ∂fᵢ|, z = f(x):

- every :class:`~tfflows.layers.FlowLayer` is a node (output: the step's
  output and its log-det);
- a fixed bijector (ScalePixels, Squeeze, a permutation, Flatten) is a
  :class:`BijectorStep` node without weights;
- a multi-scale split is a :class:`SplitStep` (kept channels, factored-out
  latent), the latent pieces meet in a ``Concatenate``, the log-dets in an
  ``Add``, and :class:`LogProbStep` adds the base density;
- a conditional model takes a ``context`` input (class labels or context
  vectors) that :class:`ContextStep` turns into what the layers see.

The view is for drawing and inspecting; save the model itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfflows.bijectors.multiscale import forward_and_log_det
from tfflows.layers.base import FlowLayer
from tfflows.models.plan import Split

if TYPE_CHECKING:
    from tfflows.models.base import FlowModel

__all__ = ["BijectorStep", "SplitStep", "ContextStep", "LogProbStep", "Untracked", "functional_view"]

_LOG_2PI = math.log(2.0 * math.pi)


def _batch(x, event_ndims: int) -> tuple:
    return tuple(x.shape[: len(x.shape) - event_ndims])


class BijectorStep(keras.layers.Layer):
    """A fixed bijector (no weights) as a graph node: x ↦ (f(x), log|det ∂f/∂x|)."""

    def __init__(self, bijector: tfp.bijectors.Bijector, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._bijector_fn = lambda: bijector  # a callable: kept out of Keras's tracking
        self.built = True

    def call(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return forward_and_log_det(self._bijector_fn(), x)

    def compute_output_spec(self, x: keras.KerasTensor) -> tuple[keras.KerasTensor, keras.KerasTensor]:
        bij = self._bijector_fn()
        nd = int(bij.forward_min_event_ndims)
        event = bij.forward_event_shape(tf.TensorShape(x.shape[len(x.shape) - nd :]))
        batch = _batch(x, nd)
        return (keras.KerasTensor(batch + tuple(event.as_list()), x.dtype), keras.KerasTensor(batch, x.dtype))


class SplitStep(keras.layers.Layer):
    """[H, W, C] ↦ (the first ``kept`` channels, the rest flattened: a piece of the latent)."""

    def __init__(self, kept: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kept = int(kept)
        self.built = True

    def call(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        rest = x[..., self.kept :]
        return x[..., : self.kept], tf.reshape(rest, [tf.shape(rest)[0], -1])

    def compute_output_spec(self, x: keras.KerasTensor) -> tuple[keras.KerasTensor, keras.KerasTensor]:
        h, w, c = x.shape[-3:]
        return (
            keras.KerasTensor((*x.shape[:-1], self.kept), x.dtype),
            keras.KerasTensor((x.shape[0], h * w * (c - self.kept)), x.dtype),
        )


class ContextStep(keras.layers.Layer):
    """The model's context as its layers take it: labels one-hot, context vectors checked."""

    def __init__(self, convert: Callable, size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._convert = convert
        self.size = int(size)
        self.built = True

    def call(self, context: tf.Tensor) -> tf.Tensor:
        return self._convert(context)

    def compute_output_spec(self, context: keras.KerasTensor) -> keras.KerasTensor:
        return keras.KerasTensor((context.shape[0], self.size), "float32")


class LogProbStep(keras.layers.Layer):
    """(z, log-det) ↦ log N(z; 0, I) + log-det: the model's log p(x)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.built = True

    def call(self, z: tf.Tensor, log_det: tf.Tensor) -> tf.Tensor:
        dims = tf.cast(tf.shape(z)[-1], z.dtype)
        return -0.5 * tf.reduce_sum(tf.square(z), axis=-1) - 0.5 * dims * _LOG_2PI + log_det

    def compute_output_spec(self, z: keras.KerasTensor, log_det: keras.KerasTensor) -> keras.KerasTensor:
        return keras.KerasTensor(z.shape[:-1], z.dtype)


class Untracked:
    """Holds a value where neither Keras's nor TensorFlow's attribute tracking (nor a save) sees it."""

    def __init__(self, value: Any) -> None:
        self.value = value


class _Names:
    """Unique node names: a bijector's own name, numbered from the second use on."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def __call__(self, name: str) -> str:
        n = self.seen.get(name, 0)
        self.seen[name] = n + 1
        return name if n == 0 else f"{name}_{n}"


def _trace(
    steps: list,
    x: keras.KerasTensor,
    context: keras.KerasTensor | None,
    names: _Names,
    pieces: list,
    log_dets: list,
) -> None:
    """Runs ``steps`` on the symbolic ``x``, appending latent pieces and log-dets."""
    for step in steps:
        if isinstance(step, Split):
            x, out = SplitStep(step.kept, name=names("split"))(x)
            pieces.append(out)
            _trace(step.inner, x, context, names, pieces, log_dets)
            return
        if isinstance(step, FlowLayer):
            x, log_det = step(x, context) if context is not None else step(x)
        else:
            x, log_det = BijectorStep(step, name=names(step.name))(x)
        log_dets.append(log_det)
    pieces.append(x)


def functional_view(model: FlowModel) -> keras.Model:
    """A functional ``keras.Model`` of ``model``'s steps, sharing its layers and weights.

    Inputs: ``x`` [batch, *event_shape] float32 and, for a conditional
    model, ``context`` (int32 labels [batch] or float32 [batch,
    context_dim]); output: log p(x) [batch], as ``model.log_prob``
    computes it (without its eager value checks).
    """
    x_in = keras.Input(shape=model.event_shape, dtype="float32", name="x")
    inputs = [x_in]
    context = None
    if model.is_conditional:
        if model.num_classes is not None:
            c_in = keras.Input(shape=(), dtype="int32", name="context")
        else:
            c_in = keras.Input(shape=(model.context_dim,), dtype="float32", name="context")
        inputs.append(c_in)
        size = model.context_size
        assert size is not None  # a conditional model's
        context = ContextStep(model.spec.context, size, name="context_in")(c_in)
    pieces: list = []
    log_dets: list = []
    _trace(model.plan.steps, x_in, context, _Names(), pieces, log_dets)
    z = pieces[0] if len(pieces) == 1 else keras.layers.Concatenate(axis=-1, name="latent")(pieces)
    if int(np.prod(z.shape[1:])) != model.num_dims:
        raise ValueError(
            f"{type(model).__name__}: the traced latent has shape {z.shape}, "
            f"expected [batch, {model.num_dims}]."
        )
    log_det = log_dets[0] if len(log_dets) == 1 else keras.layers.Add(name="log_det")(log_dets)
    log_prob = LogProbStep(name="log_prob")(z, log_det)
    return keras.Model(
        inputs=inputs if len(inputs) > 1 else x_in, outputs=log_prob, name=f"{model.name}_graph"
    )
