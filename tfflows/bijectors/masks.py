"""Masks for coupling bijectors: which entries condition and which move."""

from __future__ import annotations

import tensorflow as tf

__all__ = ["MASK_TYPES", "checkerboard", "split_channels", "merge_channels", "check_mask"]

MASK_TYPES = ("checkerboard", "channel", "half")


def check_mask(mask: str, parity: int, event_ndims: int, name: str) -> None:
    """Validates a mask specification at construction time."""
    if mask not in MASK_TYPES:
        raise ValueError(f"{name}: mask must be one of {MASK_TYPES}, got {mask!r}.")
    if parity not in (0, 1):
        raise ValueError(f"{name}: parity must be 0 or 1, got {parity!r}.")
    wanted = 1 if mask == "half" else 3
    if event_ndims != wanted:
        raise ValueError(
            f"{name}: mask {mask!r} works on events of {wanted} dimensions, "
            f"got event_ndims={event_ndims}."
        )


def checkerboard(height: int, width: int, parity: int, dtype: tf.DType) -> tf.Tensor:
    """A [height, width, 1] mask: 1 where (row + col + parity) is even (conditioning)."""
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    mask = tf.cast(tf.equal((rows + cols + parity) % 2, 0), dtype)
    return mask[:, :, None]


def split_channels(x: tf.Tensor, parity: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Returns ``(conditioning, moving)`` halves of the last axis.

    The last axis of size c splits at k = c // 2 into A = x[..., :k] and
    B = x[..., k:]. Parity 0 conditions on A and moves B; parity 1 the reverse.
    """
    c = x.shape[-1]
    k = c // 2
    a, b = x[..., :k], x[..., k:]
    return (a, b) if parity == 0 else (b, a)


def merge_channels(cond: tf.Tensor, moved: tf.Tensor, parity: int) -> tf.Tensor:
    """Inverse of :func:`split_channels`."""
    return tf.concat([cond, moved] if parity == 0 else [moved, cond], axis=-1)
