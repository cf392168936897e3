"""Glow (Kingma & Dhariwal 2018) as a Keras model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from tfflows.bijectors.base import check_positive_ints
from tfflows.bijectors.multiscale import Flatten
from tfflows.bijectors.preprocess import ScalePixels
from tfflows.bijectors.squeeze import Squeeze
from tfflows.bijectors.transforms import transform_names
from tfflows.deprecation import old_argument_names
from tfflows.layers.actnorm import ActNormLayer
from tfflows.layers.conv1x1 import InvertibleConv1x1Layer
from tfflows.layers.coupling import CouplingLayer
from tfflows.layers.prior import PriorLayer
from tfflows.models.base import FlowModel
from tfflows.models.plan import Split
from tfflows.models.registry import ModelEntry, register_model

__all__ = ["Glow"]


@keras.saving.register_keras_serializable(package="tfflows")
@old_argument_names({"input_shape": "event_shape", "hidden_channels": "width"})
class Glow(FlowModel):
    """Glow: multi-scale flow of ActNorm, invertible 1×1 convolutions and couplings.

    Data → latent, for pixel levels x ∈ [0, 2ⁿ):

    1. scale to [−½, ½): x / 2ⁿ − ½ (log-det −D·n·ln 2, so ``log_prob`` is in
       the units of the data);
    2. ``num_levels`` levels, each: squeeze → ``num_steps`` × (ActNorm →
       invertible 1×1 conv → affine or additive coupling) → (all but the
       last level) a learned conditional Gaussian prior p(z₂ | z₁) written as
       a coupling with a zero-initialised 3×3 conv, then z₂ is factored out;
    3. the top latent gets a learned (class-conditional) diagonal prior.

    The whole map is one bijector into a standard normal base (see
    :class:`FlowModel`). The paper's settings are ``width=512``,
    ``num_steps=32``, ``num_levels=3`` (CIFAR-10) with affine couplings and LU.

    Args:
      event_shape: (H, W, C); H and W divisible by 2**num_levels.
      num_levels: L, the number of scales.
      num_steps: K, flow steps per level.
      width: channels of the coupling networks.
      coupling: ``"affine"`` or ``"additive"``.
      lu: LU-parameterised 1×1 convolutions.
      num_bits: bits per pixel of the data (8, or 5 as Glow's CelebA-HQ).
      learn_top: learn the top prior's mean and scale.
      num_classes / context_dim: make the model conditional.
      seed: seed of the 1×1 convolutions' initial rotations.
      input_shape, hidden_channels: deprecated old names of ``event_shape`` and ``width``.

    References:
      Kingma, Dhariwal. Glow: Generative Flow with Invertible 1x1
        Convolutions. NeurIPS 2018.
    """

    def __init__(
        self,
        event_shape: Sequence[int] = (28, 28, 1),
        num_levels: int = 3,
        num_steps: int = 32,
        width: int = 512,
        coupling: str = "affine",
        lu: bool = True,
        num_bits: int = 8,
        learn_top: bool = True,
        num_classes: int | None = None,
        context_dim: int | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(event_shape, num_classes=num_classes, context_dim=context_dim, **kwargs)
        name = type(self).__name__
        if len(self.event_shape) != 3:
            raise ValueError(f"{name}: event_shape must be (height, width, channels), got {event_shape!r}.")
        check_positive_ints(name, num_levels=num_levels, num_steps=num_steps, width=width)
        if coupling not in transform_names():
            raise ValueError(f"{name}: coupling must be one of {transform_names()}, got {coupling!r}.")
        h, w, _ = self.event_shape
        f = 2**num_levels
        if h % f or w % f:
            raise ValueError(
                f"{name}: height and width must be divisible by 2**num_levels = {f}, got {h}x{w}."
            )
        self.num_levels = num_levels
        self.num_steps = num_steps
        self.width = width
        self.coupling = coupling
        self.lu = lu
        self.num_bits: int = num_bits
        self.learn_top = learn_top
        self.seed = seed
        self._finish_init()

    def _make_steps(self) -> list:
        steps: list = [ScalePixels(self.num_bits, offset=-0.5)]
        self._add_level(steps, 0, self.event_shape)
        return steps

    def _add_level(self, steps: list, level: int, shape: tuple[int, ...]) -> None:
        h, w, c = shape
        shape = (h // 2, w // 2, 4 * c)
        steps.append(Squeeze(2))
        for k in range(self.num_steps):
            tag = f"l{level}_k{k}"
            steps += [
                ActNormLayer(name=f"actnorm_{tag}"),
                InvertibleConv1x1Layer(
                    lu=self.lu, seed=self.seed * 1000 + level * 100 + k, name=f"conv1x1_{tag}"
                ),
                CouplingLayer(
                    "channel",
                    0,
                    transform=self.coupling,
                    scale_fn="sigmoid",
                    conditioner="convnet",
                    hidden_channels=self.width,
                    name=f"coupling_{tag}",
                ),
            ]
        if level == self.num_levels - 1:
            if self.learn_top or self.is_conditional:
                steps.append(PriorLayer(name="prior_top"))
            steps.append(Flatten(shape))
            return
        kept = shape[-1] // 2
        steps.append(
            CouplingLayer("channel", 0, scale_fn="exp", conditioner="zeroconv", name=f"prior_l{level}")
        )
        inner: list = []
        self._add_level(inner, level + 1, (shape[0], shape[1], kept))
        steps.append(Split(inner, shape, kept))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_levels": self.num_levels,
            "num_steps": self.num_steps,
            "width": self.width,
            "coupling": self.coupling,
            "lu": self.lu,
            "num_bits": self.num_bits,
            "learn_top": self.learn_top,
            "seed": self.seed,
        }


register_model(
    ModelEntry(
        name="glow",
        data_kind="image",
        model_class=Glow,
        summary="multi-scale ActNorm, invertible 1x1 convolutions and couplings (Kingma & Dhariwal 2018)",
        build=lambda o: Glow(
            o.event_shape,
            num_levels=o.num_levels,
            num_steps=o.num_steps or 4,
            width=o.width,
            coupling=o.coupling,
            num_bits=o.image_num_bits,
            num_classes=o.num_classes,
            seed=o.seed,
            **o.policy,
        ),
        tiny=lambda **cond: Glow((8, 8, 1), num_levels=2, num_steps=2, width=8, num_bits=5, **cond),
    )
)
