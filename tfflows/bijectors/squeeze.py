"""Space-to-depth reshaping (RealNVP's squeeze)."""

from __future__ import annotations

import tensorflow as tf

from tfflows.bijectors.base import FlowBijector

__all__ = ["Squeeze"]


class Squeeze(FlowBijector):
    """y = x with each f×f spatial block moved into the channels.

    - forward: [..., H, W, C] → [..., H/f, W/f, f·f·C]; the channel index of
      y is (row offset, column offset, c), as ``tf.nn.space_to_depth``.
    - inverse: depth-to-space, the exact reverse.
    - log-det: 0 (a permutation of entries).

    Args:
      factor: the block size f ≥ 2.

    References:
      Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP.
        ICLR 2017, section 3.6.
    """

    def __init__(self, factor: int = 2, validate_args: bool = False, name: str = "squeeze") -> None:
        parameters = dict(locals())
        if not isinstance(factor, int) or factor < 2:
            raise ValueError(f"{name}: factor must be an integer >= 2, got {factor!r}.")
        self._factor = factor
        super().__init__(
            3, parameters=parameters, name=name, is_constant_jacobian=True, validate_args=validate_args
        )

    @property
    def factor(self) -> int:
        """The side of the blocks folded into channels (2: [H, W, C] to [H/2, W/2, 4C])."""
        return self._factor

    def _validate(self, x, inverse):
        super()._validate(x, inverse)
        f = self._factor
        if inverse:
            c = x.shape[-1]
            if c is not None and c % (f * f):
                raise ValueError(
                    f"{self.name}: the inverse needs channels divisible by {f * f}, "
                    f"got {c} (input shape {x.shape})."
                )
            return
        h, w = x.shape[-3], x.shape[-2]
        if (h is not None and h % f) or (w is not None and w % f):
            raise ValueError(
                f"{self.name}: height and width must be divisible by {f}, "
                f"got {h}x{w} (input shape {x.shape})."
            )

    def _reshape4(self, x, fn):
        shape = tf.shape(x)
        batch = shape[:-3]
        out = fn(tf.reshape(x, tf.concat([[-1], shape[-3:]], 0)), self._factor)
        return tf.reshape(out, tf.concat([batch, tf.shape(out)[1:]], 0))

    def _batch_zeros(self, x):
        return tf.zeros(tf.shape(x)[:-3], x.dtype)

    def _forward_and_log_det(self, x):
        return self._reshape4(x, tf.nn.space_to_depth), self._batch_zeros(x)

    def _inverse_and_log_det(self, y):
        return self._reshape4(y, tf.nn.depth_to_space), self._batch_zeros(y)

    def _forward_event_shape(self, s):
        f = self._factor
        if s.rank is None:
            return s
        h, w, c = s[-3:]
        return s[:-3].concatenate(
            [None if h is None else h // f, None if w is None else w // f, None if c is None else c * f * f]
        )

    def _inverse_event_shape(self, s):
        f = self._factor
        if s.rank is None:
            return s
        h, w, c = s[-3:]
        return s[:-3].concatenate(
            [None if h is None else h * f, None if w is None else w * f, None if c is None else c // (f * f)]
        )

    def _forward_event_shape_tensor(self, s):
        f = self._factor
        return tf.concat([s[:-3], [s[-3] // f, s[-2] // f, s[-1] * f * f]], 0)

    def _inverse_event_shape_tensor(self, s):
        f = self._factor
        return tf.concat([s[:-3], [s[-3] * f, s[-2] * f, s[-1] // (f * f)]], 0)
