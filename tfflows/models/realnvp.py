"""RealNVP (Dinh et al. 2017) as a Keras model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from tfflows.bijectors.base import check_positive_ints
from tfflows.bijectors.multiscale import Flatten
from tfflows.bijectors.preprocess import Logit, ScalePixels
from tfflows.bijectors.squeeze import Squeeze
from tfflows.deprecation import old_argument_names
from tfflows.layers.coupling import CouplingLayer
from tfflows.models.base import FlowModel
from tfflows.models.plan import Split
from tfflows.models.registry import ModelEntry, register_model

__all__ = ["RealNVP"]


@keras.saving.register_keras_serializable(package="tfflows")
@old_argument_names(
    {
        "input_shape": "event_shape",
        "num_scales": "num_levels",
        "num_blocks": "depth",
        "hidden_channels": "width",
    }
)
class RealNVP(FlowModel):
    """RealNVP: multi-scale affine couplings with checkerboard and channel masks.

    Data → latent, for pixel levels x ∈ [0, 2ⁿ):

    1. x / 2ⁿ, then the logit transform logit(α + (1 − 2α)·x);
    2. each scale but the last: 3 checkerboard couplings (parities 0, 1, 0),
       squeeze, 3 channel couplings (parities 0, 1, 0), factor out half the
       channels;
    3. the last scale: 4 checkerboard couplings (alternating parity).

    Scales are s = exp(a ⊙ tanh(h)) with a learned per-channel a; the
    conditioners are ResNets whose output layer starts at zero.

    Args:
      event_shape: (H, W, C); H and W divisible by 2**num_levels (every
        scale's checkerboard needs even sizes).
      num_levels: number of scales (default 2; 2 for 28×28, 3 or 4 for 32×32
        and larger), as Glow's ``num_levels``.
      depth: residual blocks per conditioner (8 in the paper on CIFAR-10).
      width: features in the ResNets (64 in the paper).
      num_bits: bits per pixel of the data.
      alpha: the logit margin α (0.05 in the paper).
      num_classes / context_dim: make the model conditional.
      input_shape, num_scales, num_blocks, hidden_channels: deprecated old names of
        ``event_shape``, ``num_levels``, ``depth`` and ``width``.

    References:
      Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
    """

    bounded_levels = True  # the logit needs levels inside [0, 2^num_bits)

    def __init__(
        self,
        event_shape: Sequence[int] = (28, 28, 1),
        num_levels: int = 2,
        depth: int = 4,
        width: int = 64,
        num_bits: int = 8,
        alpha: float = 0.05,
        num_classes: int | None = None,
        context_dim: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(event_shape, num_classes=num_classes, context_dim=context_dim, **kwargs)
        name = type(self).__name__
        if len(self.event_shape) != 3:
            raise ValueError(f"{name}: event_shape must be (height, width, channels), got {event_shape!r}.")
        check_positive_ints(name, num_levels=num_levels, depth=depth, width=width)
        h, w, _ = self.event_shape
        f = 2**num_levels
        if h % f or w % f:
            raise ValueError(
                f"{name}: height and width must be divisible by 2**num_levels = {f} (every "
                f"scale's checkerboard needs even sizes), got {h}x{w}."
            )
        self.num_levels = num_levels
        self.depth = depth
        self.width = width
        self.num_bits: int = num_bits
        self.alpha = alpha
        self._finish_init()

    def _coupling(self, mask: str, parity: int, tag: str) -> CouplingLayer:
        return CouplingLayer(
            mask,
            parity,
            scale_fn="tanh",
            conditioner="resnet",
            hidden_channels=self.width,
            num_blocks=self.depth,
            name=f"coupling_{tag}",
        )

    def _make_steps(self) -> list:
        steps: list = [ScalePixels(self.num_bits), Logit(self.alpha)]
        self._add_scale(steps, 0, self.event_shape)
        return steps

    def _add_scale(self, steps: list, scale: int, shape: tuple[int, ...]) -> None:
        if scale == self.num_levels - 1:
            steps += [self._coupling("checkerboard", i % 2, f"s{scale}_cb{i}") for i in range(4)]
            steps.append(Flatten(shape))
            return
        steps += [self._coupling("checkerboard", i % 2, f"s{scale}_cb{i}") for i in range(3)]
        steps.append(Squeeze(2))
        h, w, c = shape
        shape = (h // 2, w // 2, 4 * c)
        steps += [self._coupling("channel", i % 2, f"s{scale}_ch{i}") for i in range(3)]
        kept = shape[-1] // 2
        inner: list = []
        self._add_scale(inner, scale + 1, (shape[0], shape[1], kept))
        steps.append(Split(inner, shape, kept))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_levels": self.num_levels,
            "depth": self.depth,
            "width": self.width,
            "num_bits": self.num_bits,
            "alpha": self.alpha,
        }


register_model(
    ModelEntry(
        name="realnvp",
        data_kind="image",
        model_class=RealNVP,
        summary="multi-scale affine couplings with checkerboard and channel masks (Dinh et al. 2017)",
        build=lambda o: RealNVP(
            o.event_shape,
            num_levels=o.num_levels,
            depth=o.depth or 2,
            width=o.width,
            num_bits=o.image_num_bits,
            num_classes=o.num_classes,
            **o.policy,
        ),
        tiny=lambda **cond: RealNVP((8, 8, 1), num_levels=2, depth=1, width=8, num_bits=5, **cond),
    )
)
