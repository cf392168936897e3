"""Conditioner networks for coupling layers: Glow's ConvNet, RealNVP's ResNet, an MLP.

Each maps the conditioning part of its input (and an optional ``context``
vector, broadcast over space for images) to the raw shift and scale of the
moving part. The output layer starts at zero, so a fresh coupling is the
identity (up to Glow's constant sigmoid(2) scale).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from tfflows.bijectors.base import check_positive_ints
from tfflows.layers.convolution import Conv2D

__all__ = ["ConvNet", "ResNet", "MLP", "ZeroConv"]


def _with_context(x, context):
    """Concatenates a [B, K] context to x, broadcast over x's spatial axes."""
    if context is None:
        return x
    context = ops.cast(context, x.dtype)
    if len(x.shape) == 4:
        # Adding zeros broadcasts [B, 1, 1, K] over space with no shape
        # arithmetic, so it works eagerly, traced with unknown sizes and in XLA.
        context = context[:, None, None, :] + ops.zeros_like(x[..., :1])
    return ops.concatenate([x, context], axis=-1)


@keras.saving.register_keras_serializable(package="tfflows")
class ConvNet(keras.layers.Layer):
    """Glow's coupling network: 3×3 conv, ReLU, 1×1 conv, ReLU, zero 3×3 conv.

    Args:
      hidden_channels: width of the hidden convolutions (512 in the paper).
      output_channels: channels of the output.
    """

    def __init__(self, hidden_channels: int, output_channels: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_positive_ints(self.name, hidden_channels=hidden_channels, output_channels=output_channels)
        self.hidden_channels = hidden_channels
        self.output_channels = output_channels
        # tfflows' Conv2D: stride 1, 'same' padding, thin convs as matmuls on CPUs.
        self.conv_in = Conv2D(hidden_channels, 3, activation="relu", dtype=self.dtype_policy)
        self.conv_mid = Conv2D(hidden_channels, 1, activation="relu", dtype=self.dtype_policy)
        self.conv_out = Conv2D(output_channels, 3, kernel_initializer="zeros", dtype=self.dtype_policy)

    def build(self, x_shape, context_shape=None):
        channels = x_shape[-1] + (0 if context_shape is None else context_shape[-1])
        self.conv_in.build((*x_shape[:-1], channels))
        self.conv_mid.build((*x_shape[:-1], self.hidden_channels))
        self.conv_out.build((*x_shape[:-1], self.hidden_channels))

    def call(self, x, context=None):
        return self.conv_out(self.conv_mid(self.conv_in(_with_context(x, context))))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "hidden_channels": self.hidden_channels,
                "output_channels": self.output_channels}


@keras.saving.register_keras_serializable(package="tfflows")
class ResNet(keras.layers.Layer):
    """RealNVP's conditioner: a 3×3 conv in, residual blocks, a zero 3×3 conv out.

    Each block is x + conv3×3(ReLU(conv3×3(ReLU(x)))).

    Args:
      num_blocks: residual blocks (RealNVP uses 8 on CIFAR-10, 4 on smaller data).
      hidden_channels: features inside the blocks (64 in the paper).
      output_channels: channels of the output.
    """

    def __init__(self, num_blocks: int, hidden_channels: int, output_channels: int,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_positive_ints(self.name, num_blocks=num_blocks, hidden_channels=hidden_channels,
                        output_channels=output_channels)
        self.num_blocks = num_blocks
        self.hidden_channels = hidden_channels
        self.output_channels = output_channels
        dtype = self.dtype_policy
        self.conv_in = Conv2D(hidden_channels, 3, dtype=dtype)
        # A flat list: Keras tracks layers in lists, not in tuples.
        self.block_convs = [Conv2D(hidden_channels, 3, dtype=dtype) for _ in range(2 * num_blocks)]
        self.conv_out = Conv2D(output_channels, 3, kernel_initializer="zeros", dtype=dtype)

    def build(self, x_shape, context_shape=None):
        channels = x_shape[-1] + (0 if context_shape is None else context_shape[-1])
        hidden = (*x_shape[:-1], self.hidden_channels)
        self.conv_in.build((*x_shape[:-1], channels))
        for conv in self.block_convs:
            conv.build(hidden)
        self.conv_out.build(hidden)

    def call(self, x, context=None):
        h = self.conv_in(_with_context(x, context))
        convs = self.block_convs
        for first, second in zip(convs[0::2], convs[1::2]):
            h = h + second(ops.relu(first(ops.relu(h))))
        return self.conv_out(ops.relu(h))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_blocks": self.num_blocks,
                "hidden_channels": self.hidden_channels, "output_channels": self.output_channels}


@keras.saving.register_keras_serializable(package="tfflows")
class MLP(keras.layers.Layer):
    """A dense conditioner for vector flows: ReLU hidden layers, a zero output layer.

    Args:
      hidden_units: width of each hidden layer, e.g. ``[64, 64]``.
      output_units: size of the output.
    """

    def __init__(self, hidden_units: list[int], output_units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        hidden_units = list(hidden_units)
        check_positive_ints(self.name, output_units=output_units,
                        **{f"hidden_units[{i}]": u for i, u in enumerate(hidden_units)})
        self.hidden_units = hidden_units
        self.output_units = output_units
        self.hidden = [layers.Dense(u, activation="relu", dtype=self.dtype_policy) for u in hidden_units]
        self.out = layers.Dense(output_units, kernel_initializer="zeros", dtype=self.dtype_policy)

    def build(self, x_shape, context_shape=None):
        width = x_shape[-1] + (0 if context_shape is None else context_shape[-1])
        for dense in self.hidden:
            dense.build((*x_shape[:-1], width))
            width = dense.units
        self.out.build((*x_shape[:-1], width))

    def call(self, x, context=None):
        h = _with_context(x, context)
        for dense in self.hidden:
            h = dense(h)
        return self.out(h)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "hidden_units": self.hidden_units,
                "output_units": self.output_units}


@keras.saving.register_keras_serializable(package="tfflows")
class ZeroConv(keras.layers.Layer):
    """One zero-initialised 3×3 convolution: Glow's network for the split prior.

    Args:
      output_channels: channels of the output (2× the factored-out channels).
    """

    def __init__(self, output_channels: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_positive_ints(self.name, output_channels=output_channels)
        self.output_channels = output_channels
        self.conv = Conv2D(output_channels, 3, kernel_initializer="zeros", dtype=self.dtype_policy)

    def build(self, x_shape, context_shape=None):
        channels = x_shape[-1] + (0 if context_shape is None else context_shape[-1])
        self.conv.build((*x_shape[:-1], channels))

    def call(self, x, context=None):
        return self.conv(_with_context(x, context))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "output_channels": self.output_channels}
