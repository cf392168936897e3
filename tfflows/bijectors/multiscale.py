"""Multi-scale plumbing: run steps in order, flatten, and factor out half the channels.

A multi-scale flow (RealNVP, Glow) maps an [H, W, C] image to one flat latent
vector: at each level half the channels leave the flow ("factor out") and
are written to the latent as they are; the other half goes on to the next
level. With these three bijectors a whole multi-scale model is a single
``tfp.bijectors.Bijector`` from images to a flat [H·W·C] vector, so it sits
in one ``tfd.TransformedDistribution`` over a standard normal base.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfflows.bijectors.base import FlowBijector

tfb = tfp.bijectors

__all__ = ["FlowChain", "Flatten", "FactorOut", "forward_and_log_det", "inverse_and_log_det"]


def _batch_zeros(x, event_ndims):
    return tf.zeros(tf.shape(x)[: tf.rank(x) - event_ndims], x.dtype)


def forward_and_log_det(bijector: tfp.bijectors.Bijector, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """One-pass forward for tfflows bijectors; two TFP calls for any other bijector."""
    if isinstance(bijector, FlowBijector):
        return bijector.forward_and_log_det(x)
    nd = bijector.forward_min_event_ndims
    return bijector.forward(x), bijector.forward_log_det_jacobian(x, event_ndims=nd)


def inverse_and_log_det(bijector: tfp.bijectors.Bijector, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """One-pass inverse for tfflows bijectors; two TFP calls for any other bijector."""
    if isinstance(bijector, FlowBijector):
        return bijector.inverse_and_log_det(y)
    nd = bijector.inverse_min_event_ndims
    return bijector.inverse(y), bijector.inverse_log_det_jacobian(y, event_ndims=nd)


class FlowChain(FlowBijector):
    """y = fₙ(…f₂(f₁(x))): steps applied first to last, in one pass.

    Unlike ``tfb.Chain`` (which lists the last step first and evaluates the
    output and the log-det in separate passes), the steps run in the order
    given and each is evaluated once for both:

    - forward: y = fₙ ∘ … ∘ f₁ (x)
    - inverse: x = f₁⁻¹ ∘ … ∘ fₙ⁻¹ (y)
    - log-det: Σᵢ log|det ∂fᵢ| at each step's input.

    Every step's log-det must be summed over a whole event, so each step's
    ``forward_min_event_ndims`` equals the event rank at its input (true of
    all tfflows bijectors inside a model).

    Args:
      bijectors: the steps, first applied first.
    """

    def __init__(
        self,
        bijectors: Sequence[tfp.bijectors.Bijector],
        validate_args: bool = False,
        name: str = "flow_chain",
    ) -> None:
        parameters = dict(locals())
        self._steps = list(bijectors)
        if not self._steps:
            raise ValueError(f"{name}: needs at least one bijector, got none.")
        nd_in = self._steps[0].forward_min_event_ndims
        nd_out = self._steps[-1].inverse_min_event_ndims
        super().__init__(
            nd_in,
            inverse_event_ndims=nd_out,
            parameters=parameters,
            name=name,
            is_constant_jacobian=all(b.is_constant_jacobian for b in self._steps),
            validate_args=validate_args,
        )

    @property
    def steps(self) -> list[tfp.bijectors.Bijector]:
        """The bijectors of the chain, in the order ``forward`` applies them."""
        return list(self._steps)

    def _forward_and_log_det(self, x):
        total = _batch_zeros(x, self.forward_min_event_ndims)
        for step in self._steps:
            x, log_det = forward_and_log_det(step, x)
            total += log_det
        return x, total

    def _inverse_and_log_det(self, y):
        total = _batch_zeros(y, self.inverse_min_event_ndims)
        for step in reversed(self._steps):
            y, log_det = inverse_and_log_det(step, y)
            total += log_det
        return y, total

    def _forward_event_shape(self, s):
        for step in self._steps:
            s = step.forward_event_shape(s)
        return s

    def _inverse_event_shape(self, s):
        for step in reversed(self._steps):
            s = step.inverse_event_shape(s)
        return s

    def _forward_event_shape_tensor(self, s):
        for step in self._steps:
            s = step.forward_event_shape_tensor(s)
        return s

    def _inverse_event_shape_tensor(self, s):
        for step in reversed(self._steps):
            s = step.inverse_event_shape_tensor(s)
        return s


def _check_shape(x, want, name, what):
    got = x.shape[-len(want) :] if x.shape.rank is not None and x.shape.rank >= len(want) else x.shape
    if x.shape.rank is not None and (x.shape.rank < len(want) or not got.is_compatible_with(want)):
        raise ValueError(
            f"{name}: expected {what} of shape [..., {', '.join(map(str, want))}], got shape {x.shape}."
        )


class _ImageToVector(FlowBijector):
    """Shared shape logic of bijectors from [..., H, W, C] images (``_shape``) to
    flat [..., H·W·C] vectors (``_size``)."""

    def _validate(self, x, inverse):
        super()._validate(x, inverse)
        if inverse:
            _check_shape(x, (self._size,), self.name, "latents")
        else:
            _check_shape(x, self._shape, self.name, "images")

    def _forward_event_shape(self, s):
        return s[:-3].concatenate([self._size])

    def _inverse_event_shape(self, s):
        return s[:-1].concatenate(self._shape)

    def _forward_event_shape_tensor(self, s):
        return tf.concat([s[:-3], [self._size]], 0)

    def _inverse_event_shape_tensor(self, s):
        return tf.concat([s[:-1], self._shape], 0)


class Flatten(_ImageToVector):
    """y = x reshaped from [..., H, W, C] to [..., H·W·C] (log-det 0).

    Args:
      event_shape: the image shape (H, W, C).
    """

    flattens_latent = True

    def __init__(
        self, event_shape: Sequence[int], validate_args: bool = False, name: str = "flatten"
    ) -> None:
        parameters = dict(locals())
        self._shape = tuple(int(d) for d in event_shape)
        if len(self._shape) != 3:
            raise ValueError(f"{name}: event_shape must be (height, width, channels), got {event_shape!r}.")
        self._size = int(np.prod(self._shape))
        super().__init__(
            3,
            inverse_event_ndims=1,
            parameters=parameters,
            name=name,
            is_constant_jacobian=True,
            validate_args=validate_args,
        )

    def _forward_and_log_det(self, x):
        batch = tf.shape(x)[:-3]
        return tf.reshape(x, tf.concat([batch, [self._size]], 0)), _batch_zeros(x, 3)

    def _inverse_and_log_det(self, y):
        batch = tf.shape(y)[:-1]
        return tf.reshape(y, tf.concat([batch, self._shape], 0)), _batch_zeros(y, 1)


class FactorOut(_ImageToVector):
    """y = [flatten(x₂), g(x₁)]: half the channels leave, the rest go through ``inner``.

    With x = [x₁, x₂] split along channels (x₁ the first ``kept`` channels):

    - forward: y = concat(flatten(x₂), g(x₁)), g = ``inner`` mapping
      [H, W, kept] to a flat vector
    - inverse: x₁ = g⁻¹(y[n:]), x₂ = reshape(y[:n]), n = H·W·(C − kept)
    - log-det: log|det ∂g/∂x₁| (the factored-out half passes unchanged).

    A learned prior on x₂ given x₁ (Glow) is a coupling step placed just
    before this one.

    Args:
      inner: bijector from [..., H, W, kept] images to flat vectors.
      event_shape: the input image shape (H, W, C).
      kept: channels that continue through ``inner``; defaults to C // 2.

    References:
      Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP.
        ICLR 2017, section 3.6.
    """

    def __init__(
        self,
        inner: tfp.bijectors.Bijector,
        event_shape: Sequence[int],
        kept: int | None = None,
        validate_args: bool = False,
        name: str = "factor_out",
    ) -> None:
        parameters = dict(locals())
        self._shape = tuple(int(d) for d in event_shape)
        if len(self._shape) != 3 or self._shape[-1] < 2:
            raise ValueError(
                f"{name}: event_shape must be (height, width, channels) with channels >= 2, "
                f"got {event_shape!r}."
            )
        h, w, c = self._shape
        self._kept = c // 2 if kept is None else int(kept)
        if not 0 < self._kept < c:
            raise ValueError(f"{name}: kept must be in 1..{c - 1}, got {kept!r}.")
        self._out_size = h * w * (c - self._kept)
        self._size = h * w * c
        self._inner = inner
        super().__init__(
            3, inverse_event_ndims=1, parameters=parameters, name=name, validate_args=validate_args
        )

    @property
    def inner(self) -> tfp.bijectors.Bijector:
        """The bijector applied to the kept channels."""
        return self._inner

    @property
    def factored_shape(self) -> tuple[int, int, int]:
        """Shape [H, W, C] of the channels factored out here (sent to the latent)."""
        h, w, c = self._shape
        return (h, w, c - self._kept)

    def _forward_and_log_det(self, x):
        kept, out = x[..., : self._kept], x[..., self._kept :]
        z, log_det = forward_and_log_det(self._inner, kept)
        flat = tf.reshape(out, tf.concat([tf.shape(x)[:-3], [self._out_size]], 0))
        return tf.concat([flat, z], axis=-1), log_det

    def _inverse_and_log_det(self, y):
        flat, z = y[..., : self._out_size], y[..., self._out_size :]
        kept, log_det = inverse_and_log_det(self._inner, z)
        out = tf.reshape(flat, tf.concat([tf.shape(y)[:-1], self.factored_shape], 0))
        return tf.concat([kept, out], axis=-1), log_det
