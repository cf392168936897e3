"""Image sets to score against a model: named datasets, held-out classes and synthetic images.

A spec is one of
- a name :func:`tfflows.data.load_images` knows (``digits``, ``fashion_mnist``, ``mnist``, TFDS names);
- ``NAME:class=K`` (only class K) or ``NAME:without=K`` (every class but K);
- ``noise``: uniform random pixels 0..255; ``constant``: images of one random
  value each (the same value in every pixel).
Images come as uint8 0..255 at the requested ``[H, W, C]``: data of fewer bits
(the digits' 0..16) is rescaled to 0..255 and other sizes are resized
bilinearly (``tf.image.resize``); 1 channel is repeated to give 3.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["SYNTHETIC", "load_ood_images", "parse_spec"]

SYNTHETIC = ("noise", "constant")
"""Synthetic OOD sets: uniform noise and constant images."""
_TOP = {"digits": 16}
"""Largest pixel value of a dataset that does not use its full bit range (the digits: 0..16)."""


def parse_spec(spec: str) -> tuple[str, str | None, int | None]:
    """``(name, "class" | "without" | None, K)`` from ``NAME[:class=K|:without=K]``."""
    name, _, option = spec.partition(":")
    if not name:
        raise ValueError(
            f"expected a dataset name such as fashion_mnist or fashion_mnist:class=0, got {spec!r}."
        )
    if not option:
        return name, None, None
    key, _, value = option.partition("=")
    if key not in ("class", "without") or not value.lstrip("-").isdigit():
        raise ValueError(f"expected NAME:class=K or NAME:without=K with an integer K, got {spec!r}.")
    if name in SYNTHETIC:
        raise ValueError(f"{name!r} images have no classes, got {spec!r}.")
    return name, key, int(value)


def _fit(images: np.ndarray, shape: tuple[int, ...], top: int) -> np.ndarray:
    import tensorflow as tf

    x = images.astype(np.float32)
    if top != 255:
        x = x * (255.0 / top)
    h, w, c = shape
    if x.shape[-1] != c:
        if x.shape[-1] == 1 and c == 3:
            x = np.repeat(x, 3, axis=-1)
        else:
            raise ValueError(f"expected images with {c} channel(s) (or 1, repeated), got {x.shape[-1]}.")
    if x.shape[1:3] != (h, w):
        out = []
        for start in range(0, len(x), 1024):
            out.append(tf.image.resize(x[start : start + 1024], (h, w), method="bilinear").numpy())
        x = np.concatenate(out) if out else np.zeros((0, h, w, c), np.float32)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def load_ood_images(
    spec: str,
    shape: Sequence[int],
    *,
    split: str = "test",
    max_examples: int | None = None,
    seed: int = 0,
    data_dir: str | None = None,
) -> np.ndarray:
    """uint8 images ``[N, *shape]``, 0..255, for a spec of this module's docstring.

    Synthetic sets have ``max_examples`` images (1000 if not given).
    """
    from tfflows.data import load_images, num_bits_of

    if max_examples is not None and (
        isinstance(max_examples, bool) or not isinstance(max_examples, (int, np.integer)) or max_examples < 1
    ):
        raise ValueError(f"max_examples: expected a positive integer or None (all), got {max_examples!r}.")
    shape = tuple(int(d) for d in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"expected an image shape [H, W, C] of positive sizes, got {list(shape)}.")
    name, key, k = parse_spec(spec)
    rng = np.random.default_rng(seed)
    if name == "noise":
        return rng.integers(0, 256, size=(max_examples or 1000, *shape), dtype=np.uint8)
    if name == "constant":
        values = rng.integers(0, 256, size=(max_examples or 1000, 1, 1, 1), dtype=np.uint8)
        return np.broadcast_to(values, (len(values), *shape)).copy()
    if key is None:
        images = load_images(name, split=split, data_dir=data_dir)
    else:
        images, labels = load_images(name, split=split, data_dir=data_dir, with_labels=True)
        keep = labels == k if key == "class" else labels != k
        if k not in set(labels.tolist()):
            raise ValueError(
                f"{spec!r}: expected class {k} among the labels {sorted(set(labels.tolist()))}, "
                "got no image of it."
            )
        images = images[keep]
    images = np.asarray(images)
    if max_examples:
        images = images[:max_examples]
    if len(images) == 0:
        raise ValueError(f"{spec!r}: expected images in its {split!r} split, got none.")
    return _fit(images, shape, _TOP.get(name, 2 ** num_bits_of(name) - 1))
