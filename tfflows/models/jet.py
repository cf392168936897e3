"""Jet (Kolesnikov et al. 2024): affine couplings with ViT conditioners over image patches."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from tfflows.bijectors.base import check_positive_ints
from tfflows.bijectors.patchify import FlattenTokens, Patchify
from tfflows.bijectors.preprocess import ScalePixels
from tfflows.deprecation import old_argument_names
from tfflows.layers.coupling import CouplingLayer
from tfflows.layers.transformer import check_heads
from tfflows.models.base import FlowModel
from tfflows.models.registry import ModelEntry, register_model

__all__ = ["Jet", "SPLITS"]

SPLITS = ("channel", "spatial")


def bits_per_dim_floor(num_couplings: int, num_bits: int) -> float:
    """The bits/dim below which a Jet of ``num_couplings`` cannot go on ``num_bits`` data.

    Pixel levels are scaled by 2⁻ⁿ, each coupling multiplies the values it
    moves by at most 2 and moves half of them, and the standard normal's
    density is at most 1/√(2π): so log₂ p(x)/D ≤ −n + K/2 − log₂ √(2π).
    """
    return num_bits + 0.5 * math.log2(2 * math.pi) - num_couplings / 2


def min_couplings(num_bits: int, floor: float = 2.0) -> int:
    """The fewest couplings whose :func:`bits_per_dim_floor` is at most ``floor``."""
    return max(1, math.ceil(2 * (num_bits + 0.5 * math.log2(2 * math.pi) - floor)))


def spatial_part_a(grid: tuple[int, int]) -> list[int]:
    """Tokens of a gh × gw patch grid (raster order) where (row + column) is even."""
    gh, gw = grid
    return [i * gw + j for i in range(gh) for j in range(gw) if (i + j) % 2 == 0]


@keras.saving.register_keras_serializable(package="tfflows")
@old_argument_names({"num_couplings": "num_steps"})
class Jet(FlowModel):
    """Jet: patches as tokens, then affine couplings whose conditioners are ViTs.

    Data → latent, for pixel levels x ∈ [0, 2ⁿ):

    1. scale to [−½, ½): x / 2ⁿ − ½ (log-det −D·n·ln 2, as Glow and TarFlow,
       so ``log_prob`` is in the units of the data and bits/dim are exact);
    2. patchify: [H, W, C] → T = (H/p)(W/p) tokens of p²C entries (log-det 0);
    3. ``num_steps`` × :class:`~tfflows.layers.CouplingLayer`: the moving
       part y₂ = x₂ ⊙ s + t with s = 2·sigmoid(u) ∈ (0, 2) and (t, u) from a
       ViT (:class:`~tfflows.layers.ViT`: every token attends to every
       token) of the conditioning part; log-det Σ log s. The ViT's output
       projection starts at zero, so each coupling starts as the identity.
       The couplings cycle through ``splits``:

       - ``"channel"``: half of every token's p²C features condition, a
         fixed random half per coupling (seeded by ``seed``);
       - ``"spatial"``: a checkerboard over the patch grid conditions
         (tokens with row + column even, then the other half); the ViT sees
         every token, the moving ones as zeros.

       No ActNorm, no multi-scale: Jet's point is that the transformer
       conditioners carry the model.
    4. the tokens flattened into one latent of D = H·W·C entries, standard normal.

    Sampling inverts the couplings in reverse order, one ViT pass each.
    Class-conditional models (``num_classes``) add a class embedding to
    every token of every conditioner.

    Jet's own code applies (x₂ + t)·s and gathers the conditioning half of
    the tokens for spatial couplings (so it needs an even token count);
    this one uses the coupling's usual x₂·s + t and a masked sequence.

    Args:
      event_shape: (H, W, C); H and W divisible by ``patch_size``.
      patch_size: p, the side of a patch.
      num_steps: coupling layers (the paper: 32 to 64); see :func:`bits_per_dim_floor`.
      width: ViT width (the paper: 512 to 1024).
      depth: transformer blocks per ViT (the paper: 1 to 4).
      heads: attention heads; must divide ``width``.
      mlp_ratio: MLP hidden size as a multiple of ``width``.
      num_bits: bits per pixel of the data.
      splits: the kinds of split the couplings cycle through.
      num_classes / context_dim: make the model conditional (a class embedding, or a
        projection of the context vector, added to every token).
      seed: seed of the channel splits.
      num_couplings: the deprecated old name of ``num_steps``.

    References:
      Kolesnikov, Susano Pinto, Tschannen. Jet: A Modern Transformer-Based
        Normalizing Flow. 2024. arXiv:2412.15129.
      Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
    """

    def __init__(
        self,
        event_shape: Sequence[int] = (28, 28, 1),
        patch_size: int = 4,
        num_steps: int = 16,
        width: int = 64,
        depth: int = 1,
        heads: int = 4,
        mlp_ratio: int = 4,
        num_bits: int = 8,
        splits: Sequence[str] = SPLITS,
        num_classes: int | None = None,
        context_dim: int | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(event_shape, num_classes=num_classes, context_dim=context_dim, **kwargs)
        name = type(self).__name__
        if len(self.event_shape) != 3:
            raise ValueError(
                f"{name}: event_shape must be (height, width, channels), got {tuple(event_shape)!r}."
            )
        check_positive_ints(
            name, patch_size=patch_size, num_steps=num_steps, depth=depth, mlp_ratio=mlp_ratio
        )
        check_heads(name, width, heads)
        h, w, c = self.event_shape
        if h % patch_size or w % patch_size:
            raise ValueError(
                f"{name}: height and width must be divisible by patch_size = {patch_size}, got {h}x{w}."
            )
        splits = [splits] if isinstance(splits, str) else list(splits)
        if not splits or any(s not in SPLITS for s in splits):
            raise ValueError(f"{name}: splits must be a non-empty list of {SPLITS}, got {splits!r}.")
        grid = (h // patch_size, w // patch_size)
        tokens, features = grid[0] * grid[1], patch_size * patch_size * c
        used = set(splits[i % len(splits)] for i in range(num_steps))
        if "spatial" in used and tokens < 2:
            raise ValueError(
                f"{name}: a spatial split needs at least 2 tokens, got {tokens} "
                f"({h}x{w} with patch_size={patch_size}); use a smaller patch_size "
                "or splits=('channel',)."
            )
        if "channel" in used and features < 2:
            raise ValueError(
                f"{name}: a channel split needs at least 2 features per token, got "
                f"{features} (patch_size={patch_size}, {c} channel); use a larger "
                "patch_size or splits=('spatial',)."
            )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"{name}: seed must be an integer, got {seed!r}.")
        floor = bits_per_dim_floor(num_steps, num_bits)
        if floor > 2.0:
            warnings.warn(
                f"{name}: each coupling stretches a value at most 2× (s = 2·sigmoid(u), as in the "
                f"paper) and a value moves in half of the couplings, so {num_steps} couplings "
                f"cannot take {num_bits}-bit data below about {floor:.2f} bits/dim; use "
                f"num_steps >= {min_couplings(num_bits, 2.0)} (the paper uses 32 to 64).",
                stacklevel=3,
            )
        self.patch_size = patch_size
        self.num_steps = num_steps
        self.width = width
        self.depth = depth
        self.heads = heads
        self.mlp_ratio = mlp_ratio
        self.num_bits: int = num_bits
        self.splits = splits
        self.seed = seed
        self.grid = grid
        self.token_shape = (tokens, features)
        self._finish_init()

    def _coupling(self, k: int) -> CouplingLayer:
        kind = self.splits[k % len(self.splits)]
        if kind == "channel":
            features = self.token_shape[1]
            rng = np.random.default_rng([self.seed, k])
            mask, parity = "token_channel", 0
            indices = [int(i) for i in rng.permutation(features)[: features // 2]]
        else:
            # Checkerboard, then its complement, on every other spatial coupling.
            spatial_index = sum(self.splits[i % len(self.splits)] == "spatial" for i in range(k))
            mask, parity, indices = "token_spatial", spatial_index % 2, spatial_part_a(self.grid)
        return CouplingLayer(
            mask,
            parity,
            scale_fn="scaled_sigmoid",
            conditioner="vit",
            hidden_channels=self.width,
            num_blocks=self.depth,
            indices=indices,
            conditioner_options={"heads": self.heads, "mlp_ratio": self.mlp_ratio},
            name=f"coupling_{k}",
        )

    def _make_steps(self) -> list:
        steps: list = [ScalePixels(self.num_bits, offset=-0.5), Patchify(self.event_shape, self.patch_size)]
        steps += [self._coupling(k) for k in range(self.num_steps)]
        steps.append(FlattenTokens(self.token_shape))
        return steps

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "patch_size": self.patch_size,
            "num_steps": self.num_steps,
            "width": self.width,
            "depth": self.depth,
            "heads": self.heads,
            "mlp_ratio": self.mlp_ratio,
            "num_bits": self.num_bits,
            "splits": list(self.splits),
            "seed": self.seed,
        }


register_model(
    ModelEntry(
        name="jet",
        data_kind="image",
        model_class=Jet,
        summary="couplings with ViT conditioners over patches (Kolesnikov et al. 2024)",
        build=lambda o: Jet(
            o.event_shape,
            patch_size=o.extra.get("patch_size", 4),
            num_steps=o.num_steps or 16,
            depth=o.depth or 1,
            width=o.width,
            heads=o.extra.get("heads", 4),
            num_bits=o.image_num_bits,
            num_classes=o.num_classes,
            seed=o.seed,
            **o.policy,
        ),
        tiny=lambda **cond: Jet(
            (4, 4, 1), patch_size=2, num_steps=4, width=8, depth=1, heads=2, mlp_ratio=2, num_bits=2, **cond
        ),
    )
)
