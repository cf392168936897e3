"""Keras layer owning a masked autoregressive flow step's MADE."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from tfflows.bijectors.autoregressive import DIRECTIONS, MaskedAutoregressive, make_transform
from tfflows.bijectors.base import check_dropout, check_positive_ints, dropout_config
from tfflows.layers.base import FlowLayer
from tfflows.layers.made import MADE, ORDERINGS, make_ordering
from tfflows.typing import Shape

__all__ = ["MaskedAutoregressiveLayer"]


@keras.saving.register_keras_serializable(package="tfflows")
class MaskedAutoregressiveLayer(FlowLayer):
    """Owns the :class:`~tfflows.layers.MADE` of a :class:`~tfflows.bijectors.MaskedAutoregressive`.

    Args:
      hidden_units: MADE width.
      num_hidden: MADE hidden layers.
      ordering: ``"natural"``, ``"reversed"`` or ``"random"`` (seeded by ``seed``).
      direction: ``"maf"`` (density in one pass) or ``"iaf"`` (sampling in one pass).
      seed: seed of a random ordering.
      transform: ``"affine"`` or ``"spline"`` (monotone rational-quadratic, as in
        Durkan et al.'s autoregressive neural spline flow).
      num_bins: K, spline bins (``transform="spline"`` only).
      bound: B, the spline's interval [−B, B]; identity outside.
      dropout: the MADE's dropout rate while training (0: none).
    """

    def __init__(
        self,
        hidden_units: int = 64,
        num_hidden: int = 2,
        ordering: str = "natural",
        direction: str = "maf",
        seed: int = 0,
        transform: str = "affine",
        num_bins: int = 8,
        bound: float = 4.0,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("event_ndims", 1)
        super().__init__(**kwargs)
        if self.event_ndims != 1:
            raise ValueError(
                f"{self.name}: a masked autoregressive step is for vectors "
                f"(event_ndims=1), got event_ndims={self.event_ndims}."
            )
        check_positive_ints(self.name, hidden_units=hidden_units, num_hidden=num_hidden)
        if ordering not in ORDERINGS:
            raise ValueError(f"{self.name}: ordering must be one of {ORDERINGS}, got {ordering!r}.")
        if direction not in DIRECTIONS:
            raise ValueError(f"{self.name}: direction must be one of {DIRECTIONS}, got {direction!r}.")
        self.hidden_units, self.num_hidden = hidden_units, num_hidden
        self.ordering, self.direction, self.seed = ordering, direction, int(seed)
        # MAF inverts one feature at a time (IAF's forward pass is the sequential one).
        self.sequential_inverse = direction == "maf"
        self.transform = make_transform(transform, num_bins, bound, self.name)
        self.transform_name, self.num_bins, self.bound = transform, num_bins, float(bound)
        self.dropout = check_dropout(self.name, dropout)
        self.made: MADE | None = None

    def build(self, x_shape: Shape, context_shape: Shape | None = None) -> None:
        self._check_input_shape(x_shape)
        dim = int(x_shape[-1])
        made = MADE(
            make_ordering(dim, self.ordering, self.seed),
            self.hidden_units,
            self.num_hidden,
            params_per_feature=self.transform.params_per_entry,
            dropout=self.dropout,
            dtype=self.dtype_policy,
            name="made",
        )
        self.made = made
        made.build((None, dim), None if context_shape is None else (None, context_shape[-1]))

    def _built_made(self) -> MADE:
        self._require_built()
        assert self.made is not None  # build makes it with the weights
        return self.made

    @property
    def degrees(self) -> list[int]:
        """The place of every feature in this step's ordering (1 = first)."""
        return list(self._built_made().ordering)

    def bijector(self, context: tf.Tensor | None = None) -> MaskedAutoregressive:
        made = self._built_made()
        return MaskedAutoregressive(
            made,
            len(made.ordering),
            self.direction,
            context=context,
            transform=self.transform,
            name=self.name,
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "hidden_units": self.hidden_units,
            "num_hidden": self.num_hidden,
            "ordering": self.ordering,
            "direction": self.direction,
            "seed": self.seed,
            "transform": self.transform_name,
            "num_bins": self.num_bins,
            "bound": self.bound,
            **dropout_config(self.dropout),
        }
