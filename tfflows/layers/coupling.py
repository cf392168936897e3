"""Keras layer owning a coupling bijector's conditioner network (every transform and mask)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from tfflows.bijectors.coupling import Coupling
from tfflows.bijectors.masks import MASK_EVENT_NDIMS, check_mask, make_mask
from tfflows.bijectors.transforms import SCALE_FNS, make_transform, transform_names
from tfflows.deprecation import DENSE_NAMES, conditioner_size, renamed_keys
from tfflows.layers.base import FlowLayer
from tfflows.layers.conditioners import BUILTIN_CONDITIONERS, get_conditioner
from tfflows.typing import Shape

__all__ = ["CouplingLayer", "CONDITIONERS"]

CONDITIONERS = BUILTIN_CONDITIONERS
"""The built-in conditioner names; :func:`~tfflows.layers.register_conditioner` adds more."""

_DEFAULT_CONDITIONER = {1: "mlp", 2: "vit", 3: "convnet"}


@keras.saving.register_keras_serializable(package="tfflows")
class CouplingLayer(FlowLayer):
    """Owns the conditioner of a :class:`~tfflows.bijectors.Coupling` (any transform, any mask).

    Args:
      mask: ``"checkerboard"`` or ``"channel"`` for images, ``"half"`` for
        vectors, ``"token_channel"`` or ``"token_spatial"`` for [T, D] token
        sequences (see :mod:`tfflows.bijectors.masks`).
      parity: 0 or 1, which part conditions.
      additive: an additive (NICE, log-det 0) coupling: ``transform="additive"``.
      scale_fn: the affine transform's scale: ``"sigmoid"`` (Glow),
        ``"tanh"`` (RealNVP, with a learned per-channel factor), ``"exp"``,
        ``"bounded"`` or ``"scaled_sigmoid"`` (Jet).
      conditioner: a Keras layer mapping the conditioning part (and context)
        to the raw outputs, or the name of a registered network
        (``"convnet"``, ``"resnet"``, ``"mlp"``, ``"zeroconv"``, ``"vit"`` or
        one added with :func:`~tfflows.layers.register_conditioner`). The
        default is ``"convnet"`` for images, ``"mlp"`` for vectors and
        ``"vit"`` for tokens. A layer given here must return P× the moving
        channels (P = 2 affine, 1 additive, 3K − 1 spline) and should
        zero-initialise its output so the coupling starts as the identity.
      hidden_channels: width of the ``"convnet"``, ``"resnet"`` and
        ``"vit"`` conditioners (default 512).
      num_blocks: residual blocks of the ``"resnet"`` conditioner, transformer
        blocks of the ``"vit"`` (default 2).
      hidden_units: width of the ``"mlp"`` conditioner (default 512), as in
        the vector models; ``hidden_channels`` is its deprecated old name.
      num_hidden: hidden layers of the ``"mlp"`` conditioner (default 2);
        ``num_blocks`` is its deprecated old name.
      transform: ``"affine"`` (default), ``"additive"`` or ``"spline"``.
      num_bins: K, the spline's bins.
      bound: B, the spline acts on [−B, B].
      indices: part A of the mask (features, or tokens for ``"token_spatial"``).
      conditioner_options: further JSON-safe keyword arguments of the named
        conditioner's factory (e.g. ``{"heads": 4}`` for ``"vit"``).
    """

    supported_event_ndims = (1, 2, 3)

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
        transform: str | None = None,
        num_bins: int = 8,
        bound: float = 4.0,
        indices: Sequence[int] | None = None,
        conditioner_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("event_ndims", MASK_EVENT_NDIMS.get(mask, 3))
        super().__init__(**kwargs)
        check_mask(mask, parity, self.event_ndims, self.name, indices)
        if transform is None:
            transform = "additive" if additive else "affine"
        if transform not in transform_names():
            raise ValueError(f"{self.name}: transform must be one of {transform_names()}, got {transform!r}.")
        if additive and transform != "additive":
            raise ValueError(
                f"{self.name}: additive=True is transform='additive', got transform={transform!r}."
            )
        if scale_fn not in SCALE_FNS:
            raise ValueError(f"{self.name}: scale_fn must be one of {SCALE_FNS}, got {scale_fn!r}.")
        # Rejects bad spline settings now rather than at build.
        make_transform(transform, num_bins, bound, self.name, scale_fn=scale_fn)
        if conditioner is None:
            conditioner = _DEFAULT_CONDITIONER[self.event_ndims]
        if isinstance(conditioner, dict):
            conditioner = keras.saving.deserialize_keras_object(conditioner)
        if isinstance(conditioner, str):
            get_conditioner(conditioner, self.name)
        elif not isinstance(conditioner, keras.layers.Layer):
            raise ValueError(
                f"{self.name}: conditioner must be a Keras layer or one of "
                f"{CONDITIONERS}, got {type(conditioner).__name__}."
            )
        if conditioner_options is not None and not isinstance(conditioner_options, dict):
            raise ValueError(
                f"{self.name}: conditioner_options must be a dict of keyword "
                f"arguments, got {type(conditioner_options).__name__}."
            )
        # The MLP's width and depth are kept in hidden_channels and num_blocks too.
        hidden_channels, num_blocks = conditioner_size(
            self.name,
            conditioner == "mlp",
            hidden_channels,
            num_blocks,
            hidden_units,
            num_hidden,
            default_width=512,
            default_depth=2,
        )
        self.mask = mask
        self.parity = parity
        self.transform = transform
        self.additive = transform == "additive"
        self.scale_fn = scale_fn
        self.num_bins = num_bins
        self.bound = float(bound)
        self.indices = None if indices is None else [int(i) for i in indices]
        self.conditioner_options = dict(conditioner_options or {})
        self.hidden_channels = hidden_channels
        self.num_blocks = num_blocks
        self._conditioner_spec = conditioner
        self.conditioner = None if isinstance(conditioner, str) else conditioner

    def _mask(self):
        return make_mask(self.mask, self.parity, self.indices, self.name)

    def _transform(self, tanh_factor=None):
        return make_transform(
            self.transform,
            self.num_bins,
            self.bound,
            self.name,
            scale_fn=self.scale_fn,
            tanh_factor=tanh_factor,
            maps_to_latent=True,
            entry_major=True,
        )

    def _make_conditioner(self, out: int) -> keras.layers.Layer:
        factory = get_conditioner(self._conditioner_spec, self.name)
        return factory(
            out,
            hidden_channels=self.hidden_channels,
            num_blocks=self.num_blocks,
            dtype=self.dtype_policy,
            name="conditioner",
            **self.conditioner_options,
        )

    def build(self, x_shape: Shape, context_shape: Shape | None = None) -> None:
        self._check_input_shape(x_shape)
        channels = x_shape[-1]
        mask = self._mask()
        event = tuple(x_shape[len(x_shape) - self.event_ndims :])
        if mask.kind != "checkerboard" and mask.kind != "token_spatial" and channels < 2:
            raise ValueError(
                f"{self.name}: a {self.mask!r} mask needs at least 2 channels, got shape {x_shape}."
            )
        mask.check_event(event, self.name)
        moving = mask.moving_channels(channels)
        out = self._transform().params_per_entry * moving
        if self.conditioner is None:
            self.conditioner = self._make_conditioner(out)
        # The bijector calls the conditioner with one batch axis (any leading
        # batch axes flattened), so build it for that whatever x's batch rank.
        cond_shape = (None, *mask.conditioner_input_shape(event))
        if not self.conditioner.built:
            if context_shape is None:
                self.conditioner.build(cond_shape)
            else:
                self.conditioner.build(cond_shape, (None, context_shape[-1]))
        self.tanh_factor = None
        if self.scale_fn == "tanh" and self.transform == "affine":
            self.tanh_factor = self.add_weight(
                name="tanh_factor", shape=(moving,), initializer="ones", trainable=True
            )
        self.channels = channels

    def bijector(self, context: tf.Tensor | None = None) -> Coupling:
        self._require_built()
        assert self.conditioner is not None  # build makes it with the weights
        factor = None if self.tanh_factor is None else tf.convert_to_tensor(self.tanh_factor)
        return Coupling(
            self.conditioner, self._transform(factor), self._mask(), context=context, name=self.name
        )

    def get_config(self) -> dict[str, Any]:
        spec = self._conditioner_spec
        if not isinstance(spec, str):
            spec = keras.saving.serialize_keras_object(spec)
        size = (
            {"hidden_units": self.hidden_channels, "num_hidden": self.num_blocks}
            if spec == "mlp"
            else {"hidden_channels": self.hidden_channels, "num_blocks": self.num_blocks}
        )
        return {
            **super().get_config(),
            "mask": self.mask,
            "parity": self.parity,
            "additive": self.additive,
            "scale_fn": self.scale_fn,
            "conditioner": spec,
            **size,
            "transform": self.transform,
            "num_bins": self.num_bins,
            "bound": self.bound,
            "indices": self.indices,
            "conditioner_options": self.conditioner_options,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CouplingLayer:
        mask = config.get("mask", "channel")
        event_ndims = config.get("event_ndims", MASK_EVENT_NDIMS.get(mask, 3))
        default = _DEFAULT_CONDITIONER.get(event_ndims, "convnet")
        if config.get("conditioner", default) == "mlp":
            config = renamed_keys(config, DENSE_NAMES)  # saved before the MLP had its own names
        return super().from_config(config)
