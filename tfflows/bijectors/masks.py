"""Masks for coupling bijectors: which entries condition and which move.

Two kinds, one protocol (:class:`Mask`):

- :class:`SplitMask` cuts the last axis in two: image channels
  (``"channel"``), vector features (``"half"``) or the features of every
  token of a [T, D] sequence (``"token_channel"``). The conditioner sees
  the conditioning part only and returns parameters for the moving part.
- :class:`PatternMask` fixes a 0/1 pattern over positions: pixels
  (``"checkerboard"``) or tokens (``"token_spatial"``). The conditioner sees
  the whole input with the moving positions zeroed and returns parameters
  for every position; only the moving ones are used.

Both may take ``indices``, the entries (features, or tokens) of part A;
parity 0 conditions on A and moves the rest, parity 1 the reverse. Without
``indices`` A is the first half of the features (split masks) or the even
positions (pattern masks).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

__all__ = [
    "MASK_TYPES",
    "MASK_EVENT_NDIMS",
    "Mask",
    "SplitMask",
    "PatternMask",
    "make_mask",
    "check_mask",
    "checkerboard",
    "split_channels",
    "merge_channels",
]

MASK_EVENT_NDIMS = {"checkerboard": 3, "channel": 3, "half": 1, "token_channel": 2, "token_spatial": 2}
"""Each mask's event rank: images [H, W, C], vectors [D], token sequences [T, D]."""
MASK_TYPES = tuple(MASK_EVENT_NDIMS)
"""The mask names a coupling takes."""


def _check_indices(indices, name: str) -> tuple[int, ...] | None:
    if indices is None:
        return None
    values = list(indices)
    if (
        not values
        or any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 0 for i in values)
        or len(set(values)) != len(values)
    ):
        raise ValueError(
            f"{name}: indices must be a non-empty list of distinct integers >= 0, got {indices!r}."
        )
    return tuple(int(i) for i in values)


def check_mask(
    mask: str, parity: int, event_ndims: int, name: str, indices: Sequence[int] | None = None
) -> None:
    """Validates a mask specification at construction time."""
    if mask not in MASK_TYPES:
        raise ValueError(f"{name}: mask must be one of {MASK_TYPES}, got {mask!r}.")
    if isinstance(parity, bool) or parity not in (0, 1):
        raise ValueError(f"{name}: parity must be 0 or 1, got {parity!r}.")
    wanted = MASK_EVENT_NDIMS[mask]
    if event_ndims != wanted:
        raise ValueError(
            f"{name}: mask {mask!r} works on events of {wanted} dimensions, got event_ndims={event_ndims}."
        )
    if indices is not None and mask == "checkerboard":
        raise ValueError(f"{name}: the checkerboard mask takes no indices, got {indices!r}.")
    _check_indices(indices, name)


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
    a, b = tf.split(x, [k, c - k], axis=-1)  # one op (its gradient one concat), not two slices
    return (a, b) if parity == 0 else (b, a)


def merge_channels(cond: tf.Tensor, moved: tf.Tensor, parity: int) -> tf.Tensor:
    """Inverse of :func:`split_channels`."""
    return tf.concat([cond, moved] if parity == 0 else [moved, cond], axis=-1)


class Mask:
    """Which entries of an event condition a coupling and which move.

    ``split(x)`` gives (what the conditioner sees, the moving part u);
    the transform maps u to v; ``merge(x, v)`` puts v back in place of the
    moving entries, and ``moving_log_det(log_det)`` keeps the per-entry
    log-det of the moving entries only (zeros elsewhere), ready to sum.
    """

    kind: str = ""
    event_ndims: int = 3

    def __init__(
        self, kind: str, parity: int = 0, indices: Sequence[int] | None = None, name: str = "mask"
    ) -> None:
        check_mask(kind, parity, MASK_EVENT_NDIMS.get(kind, -1), name, indices)
        self.kind, self.parity, self.name = kind, parity, name
        self.event_ndims = MASK_EVENT_NDIMS[kind]
        self.indices = _check_indices(indices, name)

    def check_event(self, event_shape: Sequence[int | None], owner: str) -> None:
        """Raises ValueError when the mask cannot split events of ``event_shape``."""
        raise NotImplementedError

    def conditioner_input_shape(self, event_shape: Sequence[int]) -> tuple[int, ...]:
        """The event shape the conditioner sees."""
        raise NotImplementedError

    def moving_channels(self, channels: int) -> int:
        """Entries in the last axis of the moving part (the conditioner returns P per entry)."""
        raise NotImplementedError

    def split(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Returns ``(conditioning, moving)``: what the conditioner reads and what the transform moves."""
        raise NotImplementedError

    def merge(self, x: tf.Tensor, moved: tf.Tensor) -> tf.Tensor:
        """Puts the moved entries back into ``x`` in place of the moving part."""
        raise NotImplementedError

    def moving_log_det(self, log_det: tf.Tensor) -> tf.Tensor:
        """The elementwise log-det of the moving entries only, ready to sum."""
        return log_det

    def _part_a(self, size: int, owner: str) -> np.ndarray:
        """Indices of part A along an axis of ``size`` entries."""
        if self.indices is None:
            return np.arange(size // 2) if isinstance(self, SplitMask) else np.arange(0, size, 2)
        if max(self.indices) >= size or len(self.indices) >= size:
            raise ValueError(
                f"{owner}: mask indices must pick fewer than all of the {size} entries of the split "
                f"axis, each below {size}, got {list(self.indices)}."
            )
        return np.asarray(self.indices)


class SplitMask(Mask):
    """Conditioning and moving entries are two sets of the last axis (see the module docstring)."""

    def _parts(self, size: int, owner: str) -> tuple[np.ndarray, np.ndarray]:
        a = self._part_a(size, owner)
        b = np.setdiff1d(np.arange(size), a)
        return (a, b) if self.parity == 0 else (b, a)

    def check_event(self, event_shape: Sequence[int | None], owner: str) -> None:
        size = event_shape[-1]
        if size is not None and size < 2:
            raise ValueError(
                f"{owner}: a {self.kind!r} mask needs at least 2 entries in the last "
                f"axis, got {size} (event shape {tuple(event_shape)})."
            )
        if size is not None:
            self._parts(size, owner)

    def conditioner_input_shape(self, event_shape: Sequence[int]) -> tuple[int, ...]:
        cond, _ = self._parts(event_shape[-1], self.name)
        return (*event_shape[:-1], len(cond))

    def moving_channels(self, channels: int) -> int:
        return len(self._parts(channels, self.name)[1])

    def split(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if self.indices is None:
            return split_channels(x, self.parity)
        cond, moving = self._parts(x.shape[-1], self.name)
        return tf.gather(x, cond, axis=-1), tf.gather(x, moving, axis=-1)

    def merge(self, x: tf.Tensor, moved: tf.Tensor) -> tf.Tensor:
        if self.indices is None:
            return merge_channels(split_channels(x, self.parity)[0], moved, self.parity)
        cond, moving = self._parts(x.shape[-1], self.name)
        order = np.argsort(np.concatenate([cond, moving]))
        return tf.gather(tf.concat([tf.gather(x, cond, axis=-1), moved], -1), order, axis=-1)


class PatternMask(Mask):
    """A fixed 0/1 pattern over pixels (``"checkerboard"``) or tokens (``"token_spatial"``)."""

    def pattern(self, shape: tf.Tensor | Sequence[int], dtype: tf.DType) -> tf.Tensor:
        """1 at the conditioning positions, broadcasting against one event."""
        if self.kind == "checkerboard":
            return checkerboard(shape[-3], shape[-2], self.parity, dtype)
        tokens = int(shape[-2])
        a = np.zeros(tokens, bool)
        a[self._part_a(tokens, self.name)] = True
        cond = a if self.parity == 0 else ~a
        return tf.constant(cond.astype(np.float64)[:, None], dtype)

    def check_event(self, event_shape: Sequence[int | None], owner: str) -> None:
        if self.kind == "checkerboard":
            h, w = event_shape[-3], event_shape[-2]
            if (h is not None and h % 2) or (w is not None and w % 2):
                raise ValueError(
                    f"{owner}: a checkerboard mask needs even height and width, "
                    f"got {h}x{w} (event shape {tuple(event_shape)})."
                )
            return
        tokens = event_shape[-2]
        if tokens is None:
            raise ValueError(
                f"{owner}: a 'token_spatial' mask needs a known number of tokens, "
                f"got event shape {tuple(event_shape)}."
            )
        if tokens < 2:
            raise ValueError(
                f"{owner}: a 'token_spatial' mask needs at least 2 tokens, got "
                f"{tokens} (event shape {tuple(event_shape)})."
            )
        self._part_a(tokens, owner)

    def conditioner_input_shape(self, event_shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(event_shape)

    def moving_channels(self, channels: int) -> int:
        return channels

    def _mask_of(self, x):
        shape = tf.shape(x) if self.kind == "checkerboard" else x.shape
        return self.pattern(shape, x.dtype)

    def split(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return x * self._mask_of(x), x

    def merge(self, x: tf.Tensor, moved: tf.Tensor) -> tf.Tensor:
        keep = tf.broadcast_to(self._mask_of(x) > 0, tf.shape(x))
        return tf.where(keep, x, moved)

    def moving_log_det(self, log_det: tf.Tensor) -> tf.Tensor:
        keep = tf.broadcast_to(self._mask_of(log_det) > 0, tf.shape(log_det))
        return tf.where(keep, tf.zeros_like(log_det), log_det)


def make_mask(
    kind: str | Mask, parity: int = 0, indices: Sequence[int] | None = None, name: str = "mask"
) -> Mask:
    """The :class:`Mask` named ``kind`` (one of :data:`MASK_TYPES`); a Mask is returned as is."""
    if isinstance(kind, Mask):
        return kind
    if kind not in MASK_TYPES:
        raise ValueError(f"{name}: mask must be one of {MASK_TYPES}, got {kind!r}.")
    cls = PatternMask if kind in ("checkerboard", "token_spatial") else SplitMask
    return cls(kind, parity, indices, name)
