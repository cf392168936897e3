"""The registry of per-image OOD scores: one function and one registration reach ``score()``,
``tfflows score``, ``tfflows.ood.evaluate`` and the exported ``score`` signature.

An image score is a function of a batch of integer images and the model's
bits/dim on them, in plain TensorFlow ops (so it runs inside a SavedModel),
oriented like every score here: higher means more out-of-distribution.
Scores that need more than the one model (the likelihood ratio's background,
typicality's training mean) stay arguments of :func:`tfflows.ood.score`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import tensorflow as tf

__all__ = ["ImageScore", "image_scores", "register_score", "unregister_score"]


@dataclasses.dataclass(frozen=True)
class ImageScore:
    """One registered score.

    Attributes:
      name: the key of its column in ``score()``'s result and of its output in
        the exported ``score`` signature.
      compute: ``(images, bits_per_dim, num_bits) -> [batch]``: ``images`` the
        integer pixels ``[B, H, W, C]`` as given (uint8 or uint16),
        ``bits_per_dim`` float32 ``[B]``, ``num_bits`` the model's bits.
      description: one line for the model card and the docs.
    """

    name: str
    compute: Callable[[tf.Tensor, tf.Tensor, int], tf.Tensor]
    description: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"ImageScore: name must be an identifier, got {self.name!r}.")
        if not callable(self.compute):
            raise ValueError(f"ImageScore {self.name!r}: compute must be callable, got {self.compute!r}.")


_SCORES: dict[str, ImageScore] = {}
_RESERVED = {"nll", "bits_per_dim", "complexity_bits_per_dim", "likelihood_ratio", "typicality", "score"}


def register_score(score: ImageScore, overwrite: bool = False) -> ImageScore:
    """Adds ``score``; returns it.

    Raises:
      ValueError: a name that is taken (unless ``overwrite``) or reserved.
    """
    if not isinstance(score, ImageScore):
        raise ValueError(f"register_score: expected an ImageScore, got {type(score).__name__} {score!r}.")
    if not isinstance(score.name, str) or not score.name.isidentifier():
        raise ValueError(f"register_score: name must be an identifier, got {score.name!r}.")
    if score.name in _RESERVED:
        raise ValueError(
            f"register_score: {score.name!r} is a name of score()'s own outputs; "
            f"choose another, not one of {sorted(_RESERVED)}."
        )
    if score.name in _SCORES and not overwrite and _SCORES[score.name] is not score:
        raise ValueError(
            f"register_score: a score named {score.name!r} is registered already; "
            "pass overwrite=True to replace it."
        )
    _SCORES[score.name] = score
    return score


def unregister_score(name: str) -> None:
    """Removes a registered score (tests that register one clean up with it)."""
    _SCORES.pop(name, None)


def image_scores() -> list[ImageScore]:
    """Every registered image score, in registration order (the built-in one first)."""
    if "complexity_corrected" not in _SCORES:
        from tfflows.ood.scores import complexity_bits_per_dim, complexity_corrected

        register_score(
            ImageScore(
                "complexity_corrected",
                lambda images, bits, num_bits: complexity_corrected(
                    bits, complexity_bits_per_dim(images, num_bits)
                ),
                "bits/dim minus the PNG length in bits/dim (Serra et al. 2020)",
            )
        )
        _SCORES["complexity_corrected"] = _SCORES.pop("complexity_corrected")
    builtin = [_SCORES["complexity_corrected"]]
    return builtin + [s for n, s in _SCORES.items() if n != "complexity_corrected"]
