"""Pre-processing bijectors: pixel scaling and RealNVP's logit transform.

They sit first in a model (data side) so that ``log_prob`` is the density of
the dequantized data in its own units, pixel levels in [0, 2ⁿ), and bits per
dimension come out exact.
"""

from __future__ import annotations

import math

import tensorflow as tf

from tfflows.bijectors.base import FlowBijector, event_size

__all__ = ["ScalePixels", "Logit"]


class ScalePixels(FlowBijector):
    """y = x / 2ⁿ + offset: pixel levels in [0, 2ⁿ) to the unit interval.

    - forward: y = x · 2⁻ⁿ + offset
    - inverse: x = (y − offset) · 2ⁿ
    - log-det: −D · n · ln 2, D the number of entries in one event.

    Glow uses ``offset=-0.5`` (data in [−½, ½)); RealNVP uses 0 and then
    :class:`Logit`.

    Args:
      num_bits: bits per pixel n (1..16).
      offset: added after scaling.
      event_ndims: 3 for images, 1 for vectors.
    """

    def __init__(
        self,
        num_bits: int = 8,
        offset: float = 0.0,
        event_ndims: int = 3,
        validate_args: bool = False,
        name: str = "scale_pixels",
    ) -> None:
        parameters = dict(locals())
        if not isinstance(num_bits, int) or not 1 <= num_bits <= 16:
            raise ValueError(f"{name}: num_bits must be an integer in 1..16, got {num_bits!r}.")
        self._num_bits = num_bits
        self._offset = float(offset)
        super().__init__(
            event_ndims,
            parameters=parameters,
            name=name,
            is_constant_jacobian=True,
            validate_args=validate_args,
        )

    def _log_det(self, x):
        batch = tf.zeros(tf.shape(x)[: tf.rank(x) - self.event_ndims], x.dtype)
        return batch - event_size(x, self.event_ndims) * (self._num_bits * math.log(2.0))

    def _forward_and_log_det(self, x):
        return x * (2.0**-self._num_bits) + self._offset, self._log_det(x)

    def _inverse_and_log_det(self, y):
        return (y - self._offset) * (2.0**self._num_bits), -self._log_det(y)


class Logit(FlowBijector):
    """y = logit(α + (1 − 2α)·x): the unit interval to the real line.

    - forward: u = α + (1 − 2α)x,  y = log u − log(1 − u)
    - inverse: x = (sigmoid(y) − α) / (1 − 2α)
    - log-det: Σ [log(1 − 2α) − log u − log(1 − u)].

    α keeps the transform away from 0 and 1 where the logit is infinite.

    Args:
      alpha: boundary margin in [0, 0.5); RealNVP uses 0.05.
      event_ndims: 3 for images, 1 for vectors.

    References:
      Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP.
        ICLR 2017, section 4.1.
    """

    def __init__(
        self, alpha: float = 0.05, event_ndims: int = 3, validate_args: bool = False, name: str = "logit"
    ) -> None:
        parameters = dict(locals())
        if not 0.0 <= alpha < 0.5:
            raise ValueError(f"{name}: alpha must be in [0, 0.5), got {alpha!r}.")
        self._alpha = float(alpha)
        super().__init__(event_ndims, parameters=parameters, name=name, validate_args=validate_args)

    def _forward_and_log_det(self, x):
        a = self._alpha
        u = a + (1.0 - 2.0 * a) * x
        log_u, log_1mu = tf.math.log(u), tf.math.log1p(-u)
        terms = math.log1p(-2.0 * a) - log_u - log_1mu
        return log_u - log_1mu, tf.reduce_sum(terms, axis=list(range(-self.event_ndims, 0)))

    def _inverse_and_log_det(self, y):
        a = self._alpha
        log_u, log_1mu = tf.math.log_sigmoid(y), tf.math.log_sigmoid(-y)
        x = (tf.sigmoid(y) - a) / (1.0 - 2.0 * a)
        terms = log_u + log_1mu - math.log1p(-2.0 * a)
        return x, tf.reduce_sum(terms, axis=list(range(-self.event_ndims, 0)))
