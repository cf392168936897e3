"""An image density to score: a tfflows model or an exported SavedModel, behind one interface.

Both take uint8 images ``[B, H, W, C]`` with pixels 0..255, reduce them to the
model's ``num_bits`` as ``k = floor(x / 2^(8 − n))`` and score the bin centre
``k + ½`` (as the exported ``log_prob`` signature does), giving ``log p(x)``
in nats, one per image.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from tfflows.data.pipeline import bin_centres

__all__ = ["ImageDensity", "as_density"]


@dataclass
class ImageDensity:
    """``log_prob(uint8 images [B, H, W, C]) -> float32 [B]`` (nats), with the shape it expects."""

    log_prob: Callable[[tf.Tensor], tf.Tensor]
    event_shape: tuple[int, ...]  # (H, W, C)
    num_bits: int
    name: str
    source: Any = None
    """What ``log_prob`` needs kept alive (a loaded SavedModel), or None."""

    @property
    def num_dims(self) -> int:
        """D, the number of entries of one example (H·W·C)."""
        return int(np.prod(self.event_shape))

    @classmethod
    def from_model(cls, model: Any, name: str | None = None) -> ImageDensity:
        """Wraps a :class:`~tfflows.models.FlowModel` of images (unconditional, with ``num_bits``)."""
        from tfflows.models.base import FlowModel

        if not isinstance(model, FlowModel):
            raise ValueError(
                f"expected a tfflows FlowModel or a SavedModel folder, got {type(model).__name__}."
            )
        shape = tuple(int(d) for d in model.event_shape)
        if not model.spec.models_pixel_levels:
            raise ValueError(
                f"OOD scoring is for image models [H, W, C] with num_bits; got "
                f"{type(model).__name__} with event shape {list(shape)}."
            )
        if model.is_conditional:
            raise ValueError(
                f"OOD scoring takes an unconditional model; {type(model).__name__} "
                "is conditional (it would need a label per image)."
            )
        num_bits = int(model.num_bits or 0)  # models_pixel_levels: never None here
        if not 1 <= num_bits <= 8:
            raise ValueError(f"OOD scoring takes 8-bit images: num_bits must be in 1..8, got {num_bits}.")

        @tf.function(input_signature=[tf.TensorSpec((None, *shape), tf.uint8)], reduce_retracing=True)
        def log_prob(images):
            return model.log_prob(bin_centres(images, num_bits))

        return cls(log_prob, shape, num_bits, name or type(model).__name__)

    @classmethod
    def from_saved_model(cls, path: str | os.PathLike) -> ImageDensity:
        """Loads a SavedModel written by :func:`tfflows.export_saved_model` (its ``log_prob`` signature)."""
        path = os.fspath(path)
        loaded = tf.saved_model.load(path)
        if "log_prob" not in loaded.signatures:
            raise ValueError(
                f"expected a SavedModel with a 'log_prob' signature in {path!r}, "
                f"got signatures {sorted(loaded.signatures)}."
            )
        fn = loaded.signatures["log_prob"]
        spec = fn.structured_input_signature[1]
        images = spec.get("images")
        if images is None or images.dtype != tf.uint8 or set(spec) != {"images"}:
            raise ValueError(
                f"expected an unconditional image SavedModel taking uint8 'images' in "
                f"{path!r}, got inputs { ({k: v.dtype.name for k, v in spec.items()}) }."
            )
        shape = tuple(int(d) for d in images.shape[1:])
        card_path = os.path.join(path, "assets.extra", "model_card.json")
        num_bits = 8
        if os.path.isfile(card_path):
            with open(card_path, encoding="utf-8") as f:
                num_bits = int(json.load(f).get("num_bits", 8))

        def log_prob(batch):
            return fn(images=batch)["log_prob"]

        parts = os.path.normpath(path).split(os.sep)
        # a TF Serving version folder ("glow/1") is named by its model
        name = "/".join(parts[-2:]) if parts[-1].isdigit() and len(parts) > 1 else parts[-1]
        # The signature needs its module alive: the density keeps it.
        return cls(log_prob, shape, num_bits, name, source=loaded)


def as_density(model: Any) -> ImageDensity:
    """An :class:`ImageDensity` from a FlowModel, a SavedModel folder or an ImageDensity."""
    if isinstance(model, ImageDensity):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return ImageDensity.from_saved_model(path)
        raise ValueError(
            f"expected a SavedModel folder (with saved_model.pb), got {path!r}; "
            "load a .keras file with keras.models.load_model first."
        )
    return ImageDensity.from_model(model)
