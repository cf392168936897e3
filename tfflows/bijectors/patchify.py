"""Images to token sequences and token sequences to flat latents (TarFlow's reshapes)."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from tfflows.bijectors.base import FlowBijector

__all__ = ["Patchify", "FlattenTokens"]


def _check_tail(x: tf.Tensor, want: Sequence[int], name: str, what: str) -> None:
    k = len(want)
    if x.shape.rank is not None and (x.shape.rank < k or not x.shape[-k:].is_compatible_with(want)):
        raise ValueError(
            f"{name}: expected {what} of shape [..., {', '.join(map(str, want))}], got shape {x.shape}."
        )


def _batch_zeros(x: tf.Tensor, event_ndims: int) -> tf.Tensor:
    return tf.zeros(tf.shape(x)[: tf.rank(x) - event_ndims], x.dtype)


class Patchify(FlowBijector):
    """y = the p×p patches of an image as a sequence of tokens.

    - forward: [..., H, W, C] → [..., T, p²C] with T = (H/p)(W/p); token
      t = i·(W/p) + j is patch (i, j) in raster order, its entries ordered
      (row in patch, column in patch, channel).
    - inverse: the exact reverse.
    - log-det: 0 (a permutation of entries).

    Args:
      event_shape: the image shape (H, W, C); H and W divisible by p.
      patch_size: p ≥ 1.

    References:
      Dosovitskiy et al. An Image is Worth 16x16 Words. ICLR 2021 (patches as tokens).
      Zhai et al. Normalizing Flows are Capable Generative Models. 2024 (TarFlow).
    """

    def __init__(
        self, event_shape: Sequence[int], patch_size: int, validate_args: bool = False, name: str = "patchify"
    ) -> None:
        parameters = dict(locals())
        shape = tuple(int(d) for d in event_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(
                f"{name}: event_shape must be (height, width, channels) of positive "
                f"sizes, got {tuple(event_shape)!r}."
            )
        if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"{name}: patch_size must be a positive integer, got {patch_size!r}.")
        h, w, c = shape
        if h % patch_size or w % patch_size:
            raise ValueError(
                f"{name}: height and width must be divisible by patch_size = {patch_size}, got {h}x{w}."
            )
        self._shape = shape
        self._p = patch_size
        self._grid = (h // patch_size, w // patch_size)
        self._tokens = (self._grid[0] * self._grid[1], patch_size * patch_size * c)
        super().__init__(
            3,
            inverse_event_ndims=2,
            parameters=parameters,
            name=name,
            is_constant_jacobian=True,
            validate_args=validate_args,
        )

    @property
    def patch_size(self) -> int:
        """Side p of the square p×p patches."""
        return self._p

    @property
    def token_shape(self) -> tuple[int, int]:
        """(T, p²C): the number of tokens and the size of one."""
        return self._tokens

    def _validate(self, x, inverse):
        super()._validate(x, inverse)
        if inverse:
            _check_tail(x, self._tokens, self.name, "tokens")
        else:
            _check_tail(x, self._shape, self.name, "images")

    def _forward_and_log_det(self, x):
        (gh, gw), p, c = self._grid, self._p, self._shape[2]
        batch = tf.shape(x)[:-3]
        t = tf.reshape(x, [-1, gh, p, gw, p, c])
        t = tf.transpose(t, [0, 1, 3, 2, 4, 5])
        return tf.reshape(t, tf.concat([batch, self._tokens], 0)), _batch_zeros(x, 3)

    def _inverse_and_log_det(self, y):
        (gh, gw), p, c = self._grid, self._p, self._shape[2]
        batch = tf.shape(y)[:-2]
        t = tf.reshape(y, [-1, gh, gw, p, p, c])
        t = tf.transpose(t, [0, 1, 3, 2, 4, 5])
        return tf.reshape(t, tf.concat([batch, self._shape], 0)), _batch_zeros(y, 2)

    def _forward_event_shape(self, s):
        return s[:-3].concatenate(self._tokens)

    def _inverse_event_shape(self, s):
        return s[:-2].concatenate(self._shape)

    def _forward_event_shape_tensor(self, s):
        return tf.concat([s[:-3], self._tokens], 0)

    def _inverse_event_shape_tensor(self, s):
        return tf.concat([s[:-2], self._shape], 0)


class FlattenTokens(FlowBijector):
    """y = tokens [..., T, D] reshaped to a flat [..., T·D] latent (log-det 0).

    Args:
      token_shape: (T, D).
    """

    flattens_latent = True

    supported_event_ndims = (2,)

    def __init__(
        self, token_shape: Sequence[int], validate_args: bool = False, name: str = "flatten_tokens"
    ) -> None:
        parameters = dict(locals())
        shape = tuple(int(d) for d in token_shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(
                f"{name}: token_shape must be (tokens, features) of positive sizes, "
                f"got {tuple(token_shape)!r}."
            )
        self._shape = shape
        self._size = shape[0] * shape[1]
        super().__init__(
            2,
            inverse_event_ndims=1,
            parameters=parameters,
            name=name,
            is_constant_jacobian=True,
            validate_args=validate_args,
        )

    def _validate(self, x, inverse):
        super()._validate(x, inverse)
        if inverse:
            _check_tail(x, (self._size,), self.name, "latents")
        else:
            _check_tail(x, self._shape, self.name, "tokens")

    def _forward_and_log_det(self, x):
        return tf.reshape(x, tf.concat([tf.shape(x)[:-2], [self._size]], 0)), _batch_zeros(x, 2)

    def _inverse_and_log_det(self, y):
        return tf.reshape(y, tf.concat([tf.shape(y)[:-1], self._shape], 0)), _batch_zeros(y, 1)

    def _forward_event_shape(self, s):
        return s[:-2].concatenate([self._size])

    def _inverse_event_shape(self, s):
        return s[:-1].concatenate(self._shape)

    def _forward_event_shape_tensor(self, s):
        return tf.concat([s[:-2], [self._size]], 0)

    def _inverse_event_shape_tensor(self, s):
        return tf.concat([s[:-1], self._shape], 0)
