"""Per-channel affine normalisation (Glow's ActNorm)."""

from __future__ import annotations

import tensorflow as tf

from tfflows.bijectors.base import FlowBijector, check_channels, sum_event

__all__ = ["ActNorm", "ElementwiseAffine"]


class ElementwiseAffine(FlowBijector):
    """y = x ⊙ exp(log_scale) + shift, elementwise with broadcast parameters.

    - forward: y = x ⊙ exp(log_scale) + shift
    - inverse: x = (y − shift) ⊙ exp(−log_scale)
    - log-det: Σ over the event of log_scale broadcast to the event shape.

    ``log_scale`` and ``shift`` broadcast against x: per channel ([C]), per
    element of the event ([H, W, C]), or with leading batch axes for
    conditional use (e.g. [B, 1, 1, C] computed from a class label).

    Args:
      log_scale: log of the elementwise scale.
      shift: the elementwise shift.
      event_ndims: 3 for [H, W, C] images, 1 for vectors.
    """

    def __init__(
        self,
        log_scale: tf.Tensor,
        shift: tf.Tensor,
        event_ndims: int = 3,
        validate_args: bool = False,
        name: str = "elementwise_affine",
    ) -> None:
        parameters = dict(locals())
        self._log_scale = tf.convert_to_tensor(log_scale)
        self._shift = tf.convert_to_tensor(shift, dtype_hint=self._log_scale.dtype)
        super().__init__(event_ndims, parameters=parameters, name=name, validate_args=validate_args)

    def _params(self, x):
        return tf.cast(self._log_scale, x.dtype), tf.cast(self._shift, x.dtype)

    def _log_det(self, x, log_scale):
        full = tf.broadcast_to(log_scale, tf.broadcast_dynamic_shape(tf.shape(x), tf.shape(log_scale)))
        return sum_event(full, self.event_ndims)

    def _forward_and_log_det(self, x):
        log_scale, shift = self._params(x)
        return x * tf.exp(log_scale) + shift, self._log_det(x, log_scale)

    def _inverse_and_log_det(self, y):
        log_scale, shift = self._params(y)
        return (y - shift) * tf.exp(-log_scale), -self._log_det(y, log_scale)


class ActNorm(ElementwiseAffine):
    """y = x ⊙ exp(log_scale) + bias with one scale and bias per channel.

    - forward: y = x ⊙ exp(log_scale) + bias
    - inverse: x = (y − bias) ⊙ exp(−log_scale)
    - log-det: H·W·Σ_c log_scale_c for images, Σ_c log_scale_c for vectors.

    The data-dependent initialisation (per-channel zero mean and unit
    variance of y on a batch) lives in :class:`tfflows.layers.ActNormLayer`,
    which owns the weights; :func:`actnorm_init` gives the values.

    Args:
      log_scale: [C] log-scales.
      bias: [C] biases.
      event_ndims: 3 for [H, W, C] images, 1 for vectors.

    References:
      Kingma, Dhariwal. Glow: Generative Flow with Invertible 1x1
        Convolutions. NeurIPS 2018, section 3.1.
    """

    def __init__(
        self,
        log_scale: tf.Tensor,
        bias: tf.Tensor,
        event_ndims: int = 3,
        validate_args: bool = False,
        name: str = "act_norm",
    ) -> None:
        log_scale = tf.convert_to_tensor(log_scale)
        if log_scale.shape.rank != 1:
            raise ValueError(f"{name}: log_scale must have shape [channels], got {log_scale.shape}.")
        self._channels = log_scale.shape[0]
        super().__init__(log_scale, bias, event_ndims, validate_args=validate_args, name=name)

    def _validate(self, x, inverse):
        super()._validate(x, inverse)
        check_channels(x, self._channels, self.name)


def actnorm_init(x: tf.Tensor, event_ndims: int = 3, eps: float = 1e-6) -> tuple[tf.Tensor, tf.Tensor]:
    """Returns ``(log_scale, bias)`` that map ``x`` to zero mean, unit variance per channel.

    A channel whose variance is below ``eps`` (constant data: the ``eps``, not
    the data, would set its scale, up to 1/sqrt(eps)) keeps scale 1 and is
    only centred; :func:`actnorm_degenerate` says which.
    """
    axes = list(range(x.shape.rank - 1))
    mean, var = tf.nn.moments(x, axes=axes)
    log_scale = tf.where(actnorm_degenerate(var, eps), tf.zeros_like(var), -0.5 * tf.math.log(var + eps))
    return log_scale, -mean * tf.exp(log_scale)


def actnorm_degenerate(var: tf.Tensor, eps: float = 1e-6) -> tf.Tensor:
    """Channels whose variance ``var`` is too small to set a scale from (below ``eps``)."""
    return var < eps
