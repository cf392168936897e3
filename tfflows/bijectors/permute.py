"""Fixed permutations of the channel (or feature) axis."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfflows.bijectors.base import FlowBijector, check_channels

__all__ = ["ChannelPermutation"]


class ChannelPermutation(FlowBijector):
    """y = x with its last axis reordered by a fixed permutation π.

    - forward: y[..., i] = x[..., π(i)]
    - inverse: x[..., π(i)] = y[..., i]
    - log-det: 0.

    Use :meth:`reverse` for RealNVP's reversal or :meth:`shuffle` for a
    seeded random order.

    Args:
      permutation: a permutation of 0..C−1.
      event_ndims: 3 for [H, W, C] images, 1 for vectors.

    References:
      Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
      Kingma, Dhariwal. Glow. NeurIPS 2018 (reverse and shuffle baselines).
    """

    def __init__(
        self,
        permutation: Sequence[int] | np.ndarray,
        event_ndims: int = 3,
        validate_args: bool = False,
        name: str = "channel_permutation",
    ) -> None:
        parameters = dict(locals())
        perm = np.asarray(permutation)
        is_reordering = (
            perm.ndim == 1
            and np.issubdtype(perm.dtype, np.integer)
            and sorted(perm.tolist()) == list(range(perm.size))
        )
        if not is_reordering:
            raise ValueError(f"{name}: permutation must be a 1-D reordering of 0..C-1, got {permutation!r}.")
        self._perm = perm.astype(np.int32)
        self._inverse_perm = np.argsort(perm).astype(np.int32)
        super().__init__(
            event_ndims,
            parameters=parameters,
            name=name,
            is_constant_jacobian=True,
            validate_args=validate_args,
        )

    @classmethod
    def reverse(cls, channels: int, event_ndims: int = 3) -> ChannelPermutation:
        """The reversal C−1, …, 0."""
        return cls(np.arange(channels)[::-1], event_ndims, name="reverse_channels")

    @classmethod
    def shuffle(cls, channels: int, seed: int, event_ndims: int = 3) -> ChannelPermutation:
        """A random order drawn from ``seed``, the same on every run."""
        return cls(np.random.default_rng(seed).permutation(channels), event_ndims, name="shuffle_channels")

    @property
    def permutation(self) -> np.ndarray:
        """A copy of the channel permutation applied by ``forward``."""
        return self._perm.copy()

    def _validate(self, x, inverse):
        super()._validate(x, inverse)
        check_channels(x, self._perm.size, self.name)

    def _batch_zeros(self, x):
        return tf.zeros(tf.shape(x)[: tf.rank(x) - self.event_ndims], x.dtype)

    def _forward_and_log_det(self, x):
        return tf.gather(x, self._perm, axis=-1), self._batch_zeros(x)

    def _inverse_and_log_det(self, y):
        return tf.gather(y, self._inverse_perm, axis=-1), self._batch_zeros(y)
