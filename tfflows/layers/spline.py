"""Keras layer owning a spline coupling's conditioner: the generic CouplingLayer with a spline."""

from __future__ import annotations

from typing import Any

import keras

from tfflows.deprecation import DENSE_NAMES, conditioner_size, renamed_keys
from tfflows.layers.coupling import CouplingLayer

__all__ = ["SplineCouplingLayer"]


@keras.saving.register_keras_serializable(package="tfflows")
class SplineCouplingLayer(CouplingLayer):
    """A :class:`~tfflows.layers.CouplingLayer` with ``transform="spline"``, sized as before.

    Owns the conditioner of a :class:`~tfflows.bijectors.SplineCoupling`;
    the constructor, the defaults (64 wide, 2 deep) and the saved config
    keys are those of the separate spline layer this replaces, so its saved
    models load unchanged.

    Args:
      mask: ``"half"`` (vectors, MLP conditioner) or ``"channel"`` (images,
        ConvNet conditioner); any other mask of the generic coupling works too.
      parity: 0 or 1, which half conditions.
      num_bins: spline bins K.
      bound: the spline acts on [−bound, bound], identity outside.
      hidden_units: width of the MLP conditioner (``"half"``; default 64).
      num_hidden: hidden layers of the MLP conditioner (default 2).
      hidden_channels: width of the ConvNet conditioner (``"channel"``;
        default 64); with ``"half"`` the deprecated old name of ``hidden_units``.
      num_blocks: with ``"half"`` the deprecated old name of ``num_hidden``
        (the ConvNet has no blocks to count).
    """

    def __init__(
        self,
        mask: str = "half",
        parity: int = 0,
        num_bins: int = 8,
        bound: float = 4.0,
        hidden_channels: int | None = None,
        num_blocks: int | None = None,
        hidden_units: int | None = None,
        num_hidden: int | None = None,
        **kwargs: Any,
    ) -> None:
        owner = kwargs.get("name") or "spline_coupling_layer"
        width, depth = conditioner_size(
            owner,
            mask == "half",
            hidden_channels,
            num_blocks,
            hidden_units,
            num_hidden,
            default_width=64,
            default_depth=2,
        )
        kwargs.pop("transform", None)
        kwargs.pop("additive", None)
        kwargs.pop("scale_fn", None)
        size: dict[str, Any] = (
            {"hidden_units": width, "num_hidden": depth}
            if mask == "half"
            else {"hidden_channels": width, "num_blocks": depth}
        )
        kwargs.setdefault("conditioner", "mlp" if mask == "half" else "convnet")
        super().__init__(mask, parity, transform="spline", num_bins=num_bins, bound=bound, **size, **kwargs)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        for key in ("additive", "scale_fn", "transform"):
            config.pop(key)
        if config["conditioner"] == ("mlp" if self.mask == "half" else "convnet"):
            config.pop("conditioner")
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SplineCouplingLayer:
        if config.get("mask", "half") == "half":
            config = renamed_keys(config, DENSE_NAMES)  # saved before the MLP had its own names
        return cls(**config)
