"""Feature-wise standardisation with fixed statistics, as a bijector."""

from __future__ import annotations

import tensorflow as tf

from tfflows.bijectors.actnorm import ElementwiseAffine
from tfflows.bijectors.base import check_channels

__all__ = ["Standardize", "standardize_degenerate", "standardize_stats"]


class Standardize(ElementwiseAffine):
    """y = (x − mean) / scale per feature, with statistics fitted once from data.

    - forward: y = (x − mean) / scale
    - inverse: x = y · scale + mean
    - log-det: −Σ_d log scale_d (per example, constant in x).

    Being part of the flow, it keeps ``log_prob`` in the units of the data:
    a model on standardised features pays −Σ log scale for the change of
    variables instead of reporting densities of the rescaled data.

    Args:
      mean: [D] feature means.
      scale: [D] positive feature scales (standard deviations).
      event_ndims: 1 for vectors (3 for [H, W, C] images, per channel).
    """

    def __init__(
        self,
        mean: tf.Tensor,
        scale: tf.Tensor,
        event_ndims: int = 1,
        validate_args: bool = False,
        name: str = "standardize",
    ) -> None:
        mean = tf.convert_to_tensor(mean)
        scale = tf.convert_to_tensor(scale, dtype_hint=mean.dtype)
        if mean.shape.rank != 1 or scale.shape != mean.shape:
            raise ValueError(
                f"{name}: mean and scale must both have shape [features], got {mean.shape} and {scale.shape}."
            )
        self._channels = mean.shape[0]
        log_scale = -tf.math.log(scale)
        super().__init__(
            log_scale, -mean * tf.exp(log_scale), event_ndims, validate_args=validate_args, name=name
        )

    def _validate(self, x, inverse):
        super()._validate(x, inverse)
        check_channels(x, self._channels, self.name)


def standardize_stats(x: tf.Tensor, min_scale: float = 1e-6) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-feature ``(mean, scale)`` of ``x`` [N, D]; a constant feature gets scale 1."""
    axes = list(range(x.shape.rank - 1))
    mean, var = tf.nn.moments(x, axes=axes)
    std = tf.sqrt(var)
    return mean, tf.where(standardize_degenerate(std, min_scale), tf.ones_like(std), std)


def standardize_degenerate(std: tf.Tensor, min_scale: float = 1e-6) -> tf.Tensor:
    """Features whose standard deviation ``std`` is too small to divide by (constant ones)."""
    return ~(std > min_scale)
