"""Affine and additive coupling bijectors (NICE, RealNVP, Glow)."""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from tfflows.bijectors.base import FlowBijector, check_channels, sum_event
from tfflows.bijectors.masks import check_mask, checkerboard, merge_channels, split_channels

__all__ = ["AffineCoupling", "AdditiveCoupling", "SCALE_FNS", "call_conditioner"]

SCALE_FNS = ("sigmoid", "tanh", "exp")
Conditioner = Callable[..., tf.Tensor]


def _flatten_batch(t: tf.Tensor, event_ndims: int) -> tf.Tensor:
    """Reshapes ``t`` to [-1, *event]: all leading batch axes made one."""
    event = t.shape[-event_ndims:]
    if event.is_fully_defined():
        return tf.reshape(t, [-1, *event.as_list()])
    return tf.reshape(t, tf.concat([[-1], tf.shape(t)[-event_ndims:]], axis=0))


def call_conditioner(conditioner: Conditioner, x: tf.Tensor, event_ndims: int,
                     context: tf.Tensor | None, channels: int, name: str) -> tf.Tensor:
    """Returns ``conditioner(x[, context])`` cast to x's dtype, with x's batch shape.

    The conditioner sees exactly one batch axis (Keras convolutions need
    rank-4 inputs): leading batch axes are flattened into one before the
    call and restored after it, and the context is broadcast to match.

    Raises:
      ValueError: when the output does not keep the input's leading shape
        or does not have ``channels`` entries in its last axis.
    """
    rank = x.shape.rank if x.shape.rank is not None else tf.rank(x)
    batch_shape = tf.shape(x)[: rank - event_ndims]
    flat = _flatten_batch(x, event_ndims)
    if context is None:
        h = conditioner(flat)
    else:
        context = tf.convert_to_tensor(context)
        context = tf.broadcast_to(context, tf.concat([batch_shape, tf.shape(context)[-1:]], 0))
        h = conditioner(flat, _flatten_batch(context, 1))
    h = tf.cast(h, x.dtype)
    if h.shape.rank is not None and (
        h.shape.rank != flat.shape.rank or not h.shape[:-1].is_compatible_with(flat.shape[:-1])
    ):
        raise ValueError(
            f"{name}: the conditioner must keep the leading shape of its input "
            f"{flat.shape[:-1]} and return {channels} channels, got output shape {h.shape}."
        )
    check_channels(h, channels, f"{name}: conditioner output")
    return tf.reshape(h, tf.concat([batch_shape, tf.shape(h)[1:]], axis=0))


class AffineCoupling(FlowBijector):
    """y = x with one part moved by a scale and shift computed from the other.

    Split x into a conditioning part x₁ and a moving part x₂ (by ``mask``).
    A conditioner network maps x₁ (and an optional ``context``) to raw outputs
    ``h = [t, u]`` and the scale is s = g(u) for the bounded ``scale_fn`` g:

    - forward: y₁ = x₁,  y₂ = x₂ ⊙ s(x₁) + t(x₁)
    - inverse: x₁ = y₁,  x₂ = (y₂ − t(y₁)) ⊘ s(y₁)
    - log-det: log|det ∂y/∂x| = Σ log s over the moving entries.

    Scale functions:

    - ``"sigmoid"``: s = sigmoid(u + 2), Glow's bound s ∈ (0, 1); a zero
      conditioner gives s = sigmoid(2) ≈ 0.881.
    - ``"tanh"``: s = exp(a ⊙ tanh(u)) with a per-entry factor ``a`` (RealNVP),
      so |log s| ≤ |a|; a zero conditioner gives the identity.
    - ``"exp"``: s = exp(u), unbounded (used for the learned Gaussian priors).

    Masks: ``"checkerboard"`` (images; x₁ are the pixels where
    (row + col + parity) is even, the conditioner sees x ⊙ m and returns 2C
    channels), ``"channel"`` (images; first or second half of the channels)
    and ``"half"`` (vectors; first or second half of the features). For
    the split masks the conditioner returns twice the moving channels.

    Args:
      conditioner: callable (a Keras layer or model) mapping the conditioning
        part, and ``context`` when given, to ``h``.
      mask: ``"checkerboard"``, ``"channel"`` or ``"half"``.
      parity: 0 or 1; which part conditions.
      scale_fn: ``"sigmoid"``, ``"tanh"`` or ``"exp"``.
      tanh_factor: the factor ``a`` for ``scale_fn="tanh"``, shape broadcastable
        to the moving part's channels; defaults to 1.
      context: optional tensor passed to the conditioner as its second argument.
      event_ndims: 3 for [H, W, C] images, 1 for vectors; inferred from ``mask``.

    References:
      Dinh, Krueger, Bengio. NICE: Non-linear Independent Components
        Estimation. ICLR 2015 workshop.
      Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
      Kingma, Dhariwal. Glow: Generative Flow with Invertible 1x1
        Convolutions. NeurIPS 2018.
    """

    _additive = False

    def __init__(
        self,
        conditioner: Conditioner,
        mask: str = "channel",
        parity: int = 0,
        scale_fn: str = "sigmoid",
        tanh_factor: tf.Tensor | None = None,
        context: tf.Tensor | None = None,
        validate_args: bool = False,
        name: str | None = None,
    ) -> None:
        parameters = dict(locals())
        name = name or ("additive_coupling" if self._additive else "affine_coupling")
        event_ndims = 1 if mask == "half" else 3
        check_mask(mask, parity, event_ndims, name)
        if not self._additive and scale_fn not in SCALE_FNS:
            raise ValueError(f"{name}: scale_fn must be one of {SCALE_FNS}, got {scale_fn!r}.")
        if not callable(conditioner):
            raise ValueError(f"{name}: conditioner must be callable, got {type(conditioner).__name__}.")
        self._conditioner = conditioner
        self._mask = mask
        self._parity = parity
        self._scale_fn = scale_fn
        self._tanh_factor = tanh_factor
        self._context = context
        super().__init__(
            event_ndims,
            parameters=parameters,
            name=name,
            is_constant_jacobian=self._additive,
            validate_args=validate_args,
        )

    @property
    def mask(self) -> str:
        return self._mask

    @property
    def parity(self) -> int:
        return self._parity

    def _validate(self, x, inverse):
        super()._validate(x, inverse)
        if self._mask == "checkerboard":
            h, w = x.shape[-3], x.shape[-2]
            if (h is not None and h % 2) or (w is not None and w % 2):
                raise ValueError(
                    f"{self.name}: a checkerboard mask needs even height and width, "
                    f"got {h}x{w} (input shape {x.shape})."
                )
        elif x.shape[-1] is not None and x.shape[-1] < 2:
            raise ValueError(
                f"{self.name}: a {self._mask!r} mask needs at least 2 entries in the "
                f"last axis, got {x.shape[-1]} (input shape {x.shape})."
            )

    def _condition(self, x_cond: tf.Tensor, moving_channels: int) -> tuple[tf.Tensor, tf.Tensor]:
        """Runs the conditioner; returns (shift, log_scale) for the moving part."""
        want = moving_channels if self._additive else 2 * moving_channels
        h = call_conditioner(self._conditioner, x_cond, self.event_ndims, self._context, want,
                             self.name)
        if self._additive:
            return h, tf.zeros_like(h)
        shift, raw = tf.split(h, 2, axis=-1)
        if self._scale_fn == "sigmoid":
            log_scale = tf.math.log_sigmoid(raw + 2.0)
        elif self._scale_fn == "tanh":
            factor = 1.0 if self._tanh_factor is None else tf.cast(self._tanh_factor, raw.dtype)
            log_scale = factor * tf.tanh(raw)
        else:
            log_scale = raw
        return shift, log_scale

    def _transform(self, x: tf.Tensor, inverse: bool) -> tuple[tf.Tensor, tf.Tensor]:
        sign = -1.0 if inverse else 1.0
        if self._mask == "checkerboard":
            shape = tf.shape(x)
            m = checkerboard(shape[-3], shape[-2], self._parity, x.dtype)
            channels = x.shape[-1]
            shift, log_scale = self._condition(x * m, channels)
            shift, log_scale = shift * (1.0 - m), log_scale * (1.0 - m)
            if inverse:
                y = (x - shift) * tf.exp(-log_scale)
            else:
                y = x * tf.exp(log_scale) + shift
            log_det = 0.0 if self._additive else sign * sum_event(log_scale, 3)
            return y, log_det + tf.zeros(tf.shape(x)[:-3], x.dtype)
        cond, moving = split_channels(x, self._parity)
        shift, log_scale = self._condition(cond, moving.shape[-1])
        if inverse:
            moved = (moving - shift) * tf.exp(-log_scale)
        else:
            moved = moving * tf.exp(log_scale) + shift
        y = merge_channels(cond, moved, self._parity)
        n = self.event_ndims
        batch = tf.zeros(tf.shape(x)[: tf.rank(x) - n], x.dtype)
        log_det = batch if self._additive else sign * sum_event(log_scale, n)
        return y, log_det + batch

    def _forward_and_log_det(self, x):
        return self._transform(x, inverse=False)

    def _inverse_and_log_det(self, y):
        return self._transform(y, inverse=True)


class AdditiveCoupling(AffineCoupling):
    """y = x with one part shifted by a function of the other (NICE).

    - forward: y₁ = x₁,  y₂ = x₂ + t(x₁)
    - inverse: x₁ = y₁,  x₂ = y₂ − t(y₁)
    - log-det: 0 (volume preserving).

    The conditioner returns as many channels as the moving part has. Masks
    and arguments as for :class:`AffineCoupling` (``scale_fn`` is ignored).

    References:
      Dinh, Krueger, Bengio. NICE: Non-linear Independent Components
        Estimation. ICLR 2015 workshop.
    """

    _additive = True
