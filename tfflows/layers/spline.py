"""Keras layer owning a spline coupling's conditioner network."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from tfflows.bijectors.spline import SplineCoupling, spline_params_per_entry
from tfflows.deprecation import DENSE_NAMES, conditioner_size, renamed_keys
from tfflows.layers.base import FlowLayer
from tfflows.layers.conditioners import MLP, ConvNet

__all__ = ["SplineCouplingLayer"]


@keras.saving.register_keras_serializable(package="tfflows")
class SplineCouplingLayer(FlowLayer):
    """Owns the conditioner of a :class:`~tfflows.bijectors.SplineCoupling`.

    Args:
      mask: ``"half"`` (vectors, MLP conditioner) or ``"channel"`` (images,
        ConvNet conditioner).
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

    def __init__(self, mask: str = "half", parity: int = 0, num_bins: int = 8, bound: float = 4.0,
                 hidden_channels: int | None = None, num_blocks: int | None = None,
                 hidden_units: int | None = None, num_hidden: int | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("event_ndims", 1 if mask == "half" else 3)
        super().__init__(**kwargs)
        if mask not in ("half", "channel"):
            raise ValueError(f"{self.name}: mask must be 'half' or 'channel', got {mask!r}.")
        if parity not in (0, 1):
            raise ValueError(f"{self.name}: parity must be 0 or 1, got {parity!r}.")
        if not isinstance(num_bins, int) or num_bins < 2:
            raise ValueError(f"{self.name}: num_bins must be an integer >= 2, got {num_bins!r}.")
        self.mask, self.parity, self.num_bins, self.bound = mask, parity, num_bins, float(bound)
        # The MLP's width and depth are kept in hidden_channels and num_blocks too.
        self.hidden_channels, self.num_blocks = conditioner_size(
            self.name, mask == "half", hidden_channels, num_blocks, hidden_units, num_hidden,
            default_width=64, default_depth=2)
        self.conditioner = None

    def build(self, x_shape, context_shape=None):
        self._check_input_shape(x_shape)
        channels = x_shape[-1]
        if channels < 2:
            raise ValueError(f"{self.name}: needs at least 2 features, got shape {x_shape}.")
        k = channels // 2
        moving = channels - k if self.parity == 0 else k
        out = moving * spline_params_per_entry(self.num_bins)
        if self.mask == "half":
            self.conditioner = MLP([self.hidden_channels] * self.num_blocks, out,
                                   dtype=self.dtype_policy, name="conditioner")
        else:
            self.conditioner = ConvNet(self.hidden_channels, out, dtype=self.dtype_policy,
                                       name="conditioner")
        # The bijector calls the conditioner with one batch axis (any leading
        # batch axes flattened), so build it for that whatever x's batch rank.
        event = tuple(x_shape[len(x_shape) - self.event_ndims:])
        cond_shape = (None, *event[:-1], channels - moving)
        if context_shape is None:
            self.conditioner.build(cond_shape)
        else:
            self.conditioner.build(cond_shape, (None, context_shape[-1]))

    def bijector(self, context: tf.Tensor | None = None) -> SplineCoupling:
        self._require_built()
        return SplineCoupling(self.conditioner, self.num_bins, self.bound, self.mask, self.parity,
                              context=context, name=self.name)

    def get_config(self) -> dict[str, Any]:
        size = ({"hidden_units": self.hidden_channels, "num_hidden": self.num_blocks}
                if self.mask == "half"
                else {"hidden_channels": self.hidden_channels, "num_blocks": self.num_blocks})
        return {**super().get_config(), "mask": self.mask, "parity": self.parity,
                "num_bins": self.num_bins, "bound": self.bound, **size}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "SplineCouplingLayer":
        if config.get("mask", "half") == "half":
            config = renamed_keys(config, DENSE_NAMES)  # saved before the MLP had its own names
        return super().from_config(config)
