"""Keras layer owning a coupling bijector's conditioner network."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from tfflows.bijectors.coupling import SCALE_FNS, AdditiveCoupling, AffineCoupling
from tfflows.bijectors.masks import check_mask
from tfflows.deprecation import DENSE_NAMES, conditioner_size, renamed_keys
from tfflows.layers.base import FlowLayer
from tfflows.layers.conditioners import MLP, ConvNet, ResNet, ZeroConv

__all__ = ["CouplingLayer", "CONDITIONERS"]

CONDITIONERS = ("convnet", "resnet", "mlp", "zeroconv")


@keras.saving.register_keras_serializable(package="tfflows")
class CouplingLayer(FlowLayer):
    """Owns the conditioner of an :class:`~tfflows.bijectors.AffineCoupling`.

    Args:
      mask: ``"checkerboard"`` or ``"channel"`` for images, ``"half"`` for vectors.
      parity: 0 or 1, which part conditions.
      additive: an additive (NICE, log-det 0) coupling instead of an affine one.
      scale_fn: ``"sigmoid"`` (Glow), ``"tanh"`` (RealNVP, with a learned
        per-channel factor) or ``"exp"``.
      conditioner: a Keras layer mapping the conditioning part (and context)
        to the raw outputs, or the name of a built-in network
        (``"convnet"``, ``"resnet"``, ``"mlp"``, ``"zeroconv"``). The default is ``"convnet"``
        for images and ``"mlp"`` for vectors. A layer given here must return
        2× the moving channels (1× when additive) and should zero-initialise
        its output so the coupling starts as the identity.
      hidden_channels: width of the ``"convnet"`` and ``"resnet"``
        conditioners (default 512).
      num_blocks: residual blocks of the ``"resnet"`` conditioner (default 2).
      hidden_units: width of the ``"mlp"`` conditioner (default 512), as in
        the vector models; ``hidden_channels`` is its deprecated old name.
      num_hidden: hidden layers of the ``"mlp"`` conditioner (default 2);
        ``num_blocks`` is its deprecated old name.
    """

    def __init__(
        self,
        mask: str = "channel",
        parity: int = 0,
        additive: bool = False,
        scale_fn: str = "sigmoid",
        conditioner: str | keras.layers.Layer | None = None,
        hidden_channels: int | None = None,
        num_blocks: int | None = None,
        hidden_units: int | None = None,
        num_hidden: int | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("event_ndims", 1 if mask == "half" else 3)
        super().__init__(**kwargs)
        check_mask(mask, parity, self.event_ndims, self.name)
        if scale_fn not in SCALE_FNS:
            raise ValueError(f"{self.name}: scale_fn must be one of {SCALE_FNS}, got {scale_fn!r}.")
        if conditioner is None:
            conditioner = "mlp" if self.event_ndims == 1 else "convnet"
        if isinstance(conditioner, str) and conditioner not in CONDITIONERS:
            raise ValueError(
                f"{self.name}: conditioner must be a Keras layer or one of {CONDITIONERS}, "
                f"got {conditioner!r}."
            )
        if isinstance(conditioner, dict):
            conditioner = keras.saving.deserialize_keras_object(conditioner)
        if not isinstance(conditioner, (str, keras.layers.Layer)):
            raise ValueError(
                f"{self.name}: conditioner must be a Keras layer or one of {CONDITIONERS}, "
                f"got {type(conditioner).__name__}."
            )
        # The MLP's width and depth are kept in hidden_channels and num_blocks too.
        hidden_channels, num_blocks = conditioner_size(
            self.name, conditioner == "mlp", hidden_channels, num_blocks, hidden_units, num_hidden,
            default_width=512, default_depth=2)
        self.mask = mask
        self.parity = parity
        self.additive = additive
        self.scale_fn = scale_fn
        self.hidden_channels = hidden_channels
        self.num_blocks = num_blocks
        self._conditioner_spec = conditioner
        self.conditioner = None if isinstance(conditioner, str) else conditioner

    def _moving_channels(self, channels: int) -> int:
        if self.mask == "checkerboard":
            return channels
        k = channels // 2
        return channels - k if self.parity == 0 else k

    def _make_conditioner(self, out: int) -> keras.layers.Layer:
        kind = self._conditioner_spec
        policy = self.dtype_policy
        if kind == "convnet":
            return ConvNet(self.hidden_channels, out, dtype=policy, name="conditioner")
        if kind == "zeroconv":
            return ZeroConv(out, dtype=policy, name="conditioner")
        if kind == "resnet":
            return ResNet(self.num_blocks, self.hidden_channels, out, dtype=policy, name="conditioner")
        return MLP([self.hidden_channels] * self.num_blocks, out, dtype=policy, name="conditioner")

    def build(self, x_shape, context_shape=None):
        self._check_input_shape(x_shape)
        channels = x_shape[-1]
        if self.mask != "checkerboard" and channels < 2:
            raise ValueError(
                f"{self.name}: a {self.mask!r} mask needs at least 2 channels, got shape {x_shape}."
            )
        moving = self._moving_channels(channels)
        out = moving if self.additive else 2 * moving
        if self.conditioner is None:
            self.conditioner = self._make_conditioner(out)
        # The bijector calls the conditioner with one batch axis (any leading
        # batch axes flattened), so build it for that whatever x's batch rank.
        event = tuple(x_shape[len(x_shape) - self.event_ndims:])
        cond_shape = (None, *event) if self.mask == "checkerboard" else (
            None, *event[:-1], channels - moving)
        if not self.conditioner.built:
            if context_shape is None:
                self.conditioner.build(cond_shape)
            else:
                self.conditioner.build(cond_shape, (None, context_shape[-1]))
        self.tanh_factor = None
        if self.scale_fn == "tanh" and not self.additive:
            self.tanh_factor = self.add_weight(
                name="tanh_factor", shape=(moving,), initializer="ones", trainable=True)
        self.channels = channels

    def bijector(self, context: tf.Tensor | None = None) -> AffineCoupling:
        self._require_built()
        cls = AdditiveCoupling if self.additive else AffineCoupling
        factor = None if self.tanh_factor is None else tf.convert_to_tensor(self.tanh_factor)
        return cls(self.conditioner, mask=self.mask, parity=self.parity, scale_fn=self.scale_fn,
                   tanh_factor=factor, context=context, name=self.name)

    def get_config(self) -> dict[str, Any]:
        spec = self._conditioner_spec
        if not isinstance(spec, str):
            spec = keras.saving.serialize_keras_object(spec)
        size = ({"hidden_units": self.hidden_channels, "num_hidden": self.num_blocks} if spec == "mlp"
                else {"hidden_channels": self.hidden_channels, "num_blocks": self.num_blocks})
        return {**super().get_config(), "mask": self.mask, "parity": self.parity,
                "additive": self.additive, "scale_fn": self.scale_fn, "conditioner": spec, **size}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "CouplingLayer":
        event_ndims = config.get("event_ndims", 1 if config.get("mask") == "half" else 3)
        if config.get("conditioner", "mlp" if event_ndims == 1 else "convnet") == "mlp":
            config = renamed_keys(config, DENSE_NAMES)  # saved before the MLP had its own names
        return super().from_config(config)

