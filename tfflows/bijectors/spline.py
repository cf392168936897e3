"""Rational-quadratic spline coupling (Neural Spline Flows)."""

from __future__ import annotations

import math
from typing import Callable

import tensorflow as tf
import tensorflow_probability as tfp

from tfflows.bijectors.base import FlowBijector, sum_event
from tfflows.bijectors.coupling import call_conditioner
from tfflows.bijectors.masks import check_mask, merge_channels, split_channels

tfb = tfp.bijectors

__all__ = ["SplineCoupling", "rational_quadratic_spline", "spline_params_per_entry"]

MIN_BIN = 1e-3
MIN_SLOPE = 1e-3
# softplus(_SLOPE_SHIFT) + MIN_SLOPE = 1: a zero conditioner gives unit slopes.
_SLOPE_SHIFT = math.log(math.expm1(1.0 - MIN_SLOPE))


def spline_params_per_entry(num_bins: int) -> int:
    """Conditioner outputs per moving entry: K widths, K heights, K − 1 slopes."""
    return 3 * num_bins - 1


def rational_quadratic_spline(h: tf.Tensor, num_bins: int, bound: float) -> tfb.RationalQuadraticSpline:
    """Monotone splines on [−B, B] (identity outside) from raw parameters h: [N, M, 3K − 1].

    Widths and heights are softmaxes scaled to 2B with a floor of ``1e-3``;
    slopes are softplus with a shift that makes h = 0 give equal bins and
    unit slopes, i.e. the identity. Callers fold leading axes into N first:
    oneDNN's softmax takes tensors of rank 5 at most.
    """
    k, width = num_bins, 2.0 * bound
    w, hh, s = h[..., :k], h[..., k:2 * k], h[..., 2 * k:]
    widths = tf.nn.softmax(w, axis=-1) * (width - k * MIN_BIN) + MIN_BIN
    heights = tf.nn.softmax(hh, axis=-1) * (width - k * MIN_BIN) + MIN_BIN
    slopes = tf.nn.softplus(s + _SLOPE_SHIFT) + MIN_SLOPE
    return tfb.RationalQuadraticSpline(widths, heights, slopes, range_min=-bound)


class SplineCoupling(FlowBijector):
    """y = x with one part moved by monotone rational-quadratic splines of the other.

    Split x into x₁ (conditioning) and x₂ (moving) by ``mask``. The
    conditioner maps x₁ to, for each moving entry, K bin widths, K bin
    heights and K − 1 interior knot slopes of a monotone rational-quadratic
    spline g on [−B, B] (identity outside, with unit slopes at ±B):

    - forward: y₁ = x₁,  y₂ = g(x₂; θ(x₁))
    - inverse: x₁ = y₁,  x₂ = g⁻¹(y₂; θ(y₁)) (a quadratic root per entry)
    - log-det: Σ log g′(x₂) over the moving entries.

    Widths and heights are softmaxes scaled to 2B with a floor of
    ``1e-3``; slopes are softplus with a shift that makes a zero
    conditioner output give equal bins and unit slopes, i.e. the identity.
    The spline itself is TFP's ``tfb.RationalQuadraticSpline``.

    Args:
      conditioner: callable mapping x₁ (and ``context``) to
        [..., moving · (3K − 1)] raw parameters.
      num_bins: K.
      bound: B, the half-width of the spline's interval.
      mask: ``"half"`` (vectors) or ``"channel"`` (images).
      parity: 0 or 1, which half conditions.
      context: optional tensor passed to the conditioner as its second argument.

    References:
      Durkan, Bekasov, Murray, Papamakarios. Neural Spline Flows. NeurIPS 2019.
    """

    def __init__(self, conditioner: Callable[..., tf.Tensor], num_bins: int = 8, bound: float = 4.0,
                 mask: str = "half", parity: int = 0, context: tf.Tensor | None = None,
                 validate_args: bool = False, name: str = "spline_coupling") -> None:
        parameters = dict(locals())
        if mask not in ("half", "channel"):
            raise ValueError(f"{name}: mask must be 'half' or 'channel', got {mask!r}.")
        event_ndims = 1 if mask == "half" else 3
        check_mask(mask, parity, event_ndims, name)
        if not isinstance(num_bins, int) or num_bins < 2:
            raise ValueError(f"{name}: num_bins must be an integer >= 2, got {num_bins!r}.")
        if not bound > 0:
            raise ValueError(f"{name}: bound must be > 0, got {bound!r}.")
        self._conditioner = conditioner
        self._num_bins = num_bins
        self._bound = float(bound)
        self._mask = mask
        self._parity = parity
        self._context = context
        super().__init__(event_ndims, parameters=parameters, name=name, validate_args=validate_args)

    def _validate(self, x, inverse):
        super()._validate(x, inverse)
        if x.shape[-1] is not None and x.shape[-1] < 2:
            raise ValueError(f"{self.name}: needs at least 2 entries in the last axis, got shape {x.shape}.")

    def _spline(self, cond: tf.Tensor, moving: int) -> tfb.RationalQuadraticSpline:
        """The spline for every moving entry, with parameters flattened to [N, moving, 3K − 1].

        Leading axes (batch, and height and width for images) are folded into
        one: oneDNN's softmax takes tensors of rank 5 at most, and an image
        batch with two batch axes would give rank 6.
        """
        per = spline_params_per_entry(self._num_bins)
        h = call_conditioner(self._conditioner, cond, self.event_ndims, self._context,
                             moving * per, self.name)
        return rational_quadratic_spline(tf.reshape(h, [-1, moving, per]), self._num_bins, self._bound)

    def _transform(self, x, inverse):
        cond, moving = split_channels(x, self._parity)
        spline = self._spline(cond, moving.shape[-1])
        flat = tf.reshape(moving, [-1, moving.shape[-1]])
        if inverse:
            moved = spline.inverse(flat)
            log_det = spline.inverse_log_det_jacobian(flat, event_ndims=0)
        else:
            moved = spline.forward(flat)
            log_det = spline.forward_log_det_jacobian(flat, event_ndims=0)
        shape = tf.shape(moving)
        moved = tf.reshape(moved, shape)
        log_det = tf.reshape(log_det, shape)
        return merge_channels(cond, moved, self._parity), sum_event(log_det, self.event_ndims)

    def _forward_and_log_det(self, x):
        return self._transform(x, inverse=False)

    def _inverse_and_log_det(self, y):
        return self._transform(y, inverse=True)
