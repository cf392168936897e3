"""Masked autoregressive maps (MAF, and IAF as the inverse direction): affine or spline."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from tfflows.bijectors.base import FlowBijector, check_channels, sum_event
from tfflows.bijectors.coupling import call_conditioner
from tfflows.bijectors.transforms import (
    LOG_SCALE_BOUND,
    AffineTransform,
    ElementwiseTransform,
    SplineTransform,
    bounded_log_scale,
)
from tfflows.bijectors.transforms import make_transform as _make_any_transform

__all__ = [
    "MaskedAutoregressive",
    "DIRECTIONS",
    "TRANSFORMS",
    "AffineTransform",
    "SplineTransform",
    "ElementwiseTransform",
    "make_transform",
    "bounded_log_scale",
    "LOG_SCALE_BOUND",
]

DIRECTIONS = ("maf", "iaf")
TRANSFORMS = ("affine", "spline")


def make_transform(
    transform: str = "affine", num_bins: int = 8, bound: float = 4.0, name: str = "transform"
) -> ElementwiseTransform:
    """The autoregressive step's transform: ``"affine"`` (MAF's convention) or ``"spline"``."""
    if transform not in TRANSFORMS:
        raise ValueError(f"{name}: transform must be one of {TRANSFORMS}, got {transform!r}.")
    return _make_any_transform(transform, num_bins, bound, name)


class MaskedAutoregressive(FlowBijector):
    """z = f(x) elementwise (affine or spline), each entry's parameters from earlier entries.

    An autoregressive conditioner (MADE) maps a vector v to a shift μᵢ(v<ᵢ)
    and a log-scale αᵢ(v<ᵢ) per entry, where "< i" is the conditioner's
    ordering of the features. In the data → latent (forward) direction:

    ``direction="maf"`` (Papamakarios et al.), v = x:
      - forward: zᵢ = (xᵢ − μᵢ(x<ᵢ)) · exp(−αᵢ(x<ᵢ))   (one conditioner pass: density)
      - inverse: xᵢ = zᵢ · exp(αᵢ(x<ᵢ)) + μᵢ(x<ᵢ)      (D passes, one per ordering step: sampling)
      - log-det (forward): −Σᵢ αᵢ(x<ᵢ)

    ``direction="iaf"`` (Kingma et al.), v = z:
      - forward: zᵢ = (xᵢ − μᵢ(z<ᵢ)) · exp(−αᵢ(z<ᵢ))   (D passes: density)
      - inverse: xᵢ = zᵢ · exp(αᵢ(z<ᵢ)) + μᵢ(z<ᵢ)      (one pass: sampling)
      - log-det (forward): −Σᵢ αᵢ(z<ᵢ)

    Either way output i of the forward map depends only on the inputs that
    come no later than i in the ordering: its Jacobian is triangular in that
    ordering. α is the conditioner's raw output soft-clamped into (−7, 7).

    With a :class:`SplineTransform` (Durkan et al.'s autoregressive neural
    spline flow) the affine map is replaced by a monotone rational-quadratic
    spline per entry: zᵢ = gᵢ(xᵢ; θᵢ(v<ᵢ)), log-det Σᵢ log gᵢ′(xᵢ); the
    inverse runs each entry's spline backwards. Any
    :class:`ElementwiseTransform` plugs into the same one-pass/D-pass loop.
    The D-pass direction is a Python loop of D conditioner calls, so it
    traces into ``tf.function`` and XLA with a static D.

    Args:
      conditioner: callable ``conditioner(v[, context]) -> [..., P·D]``,
        autoregressive in its ordering, P = ``transform.params_per_entry``
        parameters laid out parameter-major (affine: the first D outputs are
        μ, the next D the raw log-scales).
      dim: D, the number of features.
      direction: ``"maf"`` or ``"iaf"``.
      context: optional [..., K] tensor passed to the conditioner.
      transform: the elementwise map (default :class:`AffineTransform`).

    References:
      Papamakarios, Pavlakou, Murray. Masked Autoregressive Flow for Density
        Estimation. NeurIPS 2017.
      Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling. Improved
        Variational Inference with Inverse Autoregressive Flow. NeurIPS 2016.
      Germain, Gregor, Murray, Larochelle. MADE: Masked Autoencoder for
        Distribution Estimation. ICML 2015.
      Durkan, Bekasov, Murray, Papamakarios. Neural Spline Flows. NeurIPS 2019.
    """

    def __init__(
        self,
        conditioner: Callable[..., tf.Tensor],
        dim: int,
        direction: str = "maf",
        context: tf.Tensor | None = None,
        transform: ElementwiseTransform | None = None,
        validate_args: bool = False,
        name: str = "masked_autoregressive",
    ) -> None:
        parameters = dict(locals())
        if direction not in DIRECTIONS:
            raise ValueError(f"{name}: direction must be one of {DIRECTIONS}, got {direction!r}.")
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"{name}: dim must be a positive integer, got {dim!r}.")
        if not callable(conditioner):
            raise ValueError(f"{name}: conditioner must be callable, got {type(conditioner).__name__}.")
        if transform is None:
            transform = AffineTransform()
        if not isinstance(transform, ElementwiseTransform):
            raise ValueError(
                f"{name}: transform must be an ElementwiseTransform, got {type(transform).__name__}."
            )
        self._transform = transform
        self._conditioner = conditioner
        self._dim = dim
        self._direction = direction
        self._context = context
        super().__init__(1, parameters=parameters, name=name, validate_args=validate_args)

    @property
    def direction(self) -> str:
        """``"maf"`` (density in one pass) or ``"iaf"`` (sampling in one pass)."""
        return self._direction

    def _validate(self, x, inverse):
        super()._validate(x, inverse)
        check_channels(x, self._dim, self.name)

    @property
    def transform(self) -> ElementwiseTransform:
        """The elementwise transform applied to each feature."""
        return self._transform

    def _one_pass(self, v: tf.Tensor, u: tf.Tensor, to_latent: bool) -> tuple[tf.Tensor, tf.Tensor]:
        """Parameters from ``v``, applied to ``u``; log-det of that map."""
        h = call_conditioner(
            self._conditioner, v, 1, self._context, self._transform.params_per_entry * self._dim, self.name
        )
        out, log_det = self._transform(h, u, to_latent)
        return out, sum_event(log_det, 1)

    def _recursive(self, u: tf.Tensor, to_latent: bool) -> tuple[tf.Tensor, tf.Tensor]:
        """Solves v = g(u; params(v)) in D passes, each fixing one more step of the ordering.

        After pass k the outputs of the first k features in the ordering are
        exact, because their parameters read only earlier ones; the last
        pass's parameters are therefore the exact ones.
        """
        v = tf.zeros_like(u)
        log_det = None
        for _ in range(self._dim):
            v, log_det = self._one_pass(v, u, to_latent)
        return v, log_det

    def _forward_and_log_det(self, x):
        if self._direction == "maf":
            return self._one_pass(x, x, to_latent=True)
        return self._recursive(x, to_latent=True)

    def _inverse_and_log_det(self, z):
        if self._direction == "maf":
            return self._recursive(z, to_latent=False)
        return self._one_pass(z, z, to_latent=False)
