"""Rational-quadratic spline coupling (Neural Spline Flows): the generic coupling with a spline."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from tfflows.bijectors.coupling import Coupling
from tfflows.bijectors.transforms import (
    MIN_BIN,
    MIN_SLOPE,
    SplineTransform,
    rational_quadratic_spline,
    spline_params_per_entry,
)

__all__ = ["SplineCoupling", "rational_quadratic_spline", "spline_params_per_entry", "MIN_BIN", "MIN_SLOPE"]


class SplineCoupling(Coupling):
    """y = x with one part moved by monotone rational-quadratic splines of the other.

    The :class:`~tfflows.bijectors.Coupling` with a
    :class:`~tfflows.bijectors.SplineTransform`. Split x into x₁
    (conditioning) and x₂ (moving) by ``mask``. The conditioner maps x₁ to,
    for each moving entry, K bin widths, K bin heights and K − 1 interior
    knot slopes of a monotone rational-quadratic spline g on [−B, B]
    (identity outside, with unit slopes at ±B), each entry's 3K − 1 values
    side by side in the output's last axis:

    - forward: y₁ = x₁,  y₂ = g(x₂; θ(x₁))
    - inverse: x₁ = y₁,  x₂ = g⁻¹(y₂; θ(y₁)) (a quadratic root per entry)
    - log-det: Σ log g′(x₂) over the moving entries.

    Widths and heights are softmaxes scaled to 2B with a floor of
    ``1e-3``; slopes are softplus with a shift that makes a zero
    conditioner output give equal bins and unit slopes, i.e. the identity.

    Args:
      conditioner: callable mapping x₁ (and ``context``) to
        [..., moving · (3K − 1)] raw parameters.
      num_bins: K.
      bound: B, the half-width of the spline's interval.
      mask: any mask of :class:`~tfflows.bijectors.Coupling` (``"half"`` for
        vectors, ``"channel"`` for images as before).
      parity: 0 or 1, which half conditions.
      context: optional tensor passed to the conditioner as its second argument.
      indices: part A of the mask.

    References:
      Durkan, Bekasov, Murray, Papamakarios. Neural Spline Flows. NeurIPS 2019.
    """

    def __init__(
        self,
        conditioner: Callable[..., tf.Tensor],
        num_bins: int = 8,
        bound: float = 4.0,
        mask: str = "half",
        parity: int = 0,
        context: tf.Tensor | None = None,
        validate_args: bool = False,
        name: str = "spline_coupling",
        indices: Sequence[int] | None = None,
    ) -> None:
        parameters = dict(locals())
        transform = SplineTransform(num_bins, bound, entry_major=True, name=name)
        super().__init__(
            conditioner,
            transform,
            mask,
            parity,
            indices,
            context,
            validate_args,
            name,
            _parameters=parameters,
        )
