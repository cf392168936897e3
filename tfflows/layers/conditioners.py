"""Conditioner networks for coupling layers, and the registry that names them.

Glow's ConvNet, RealNVP's ResNet, an MLP, a zero convolution and Jet's
ViT. Each maps the conditioning part of its input (and an optional
``context`` vector, broadcast over space for images and over tokens for
sequences) to the raw parameters of the moving part's transform. The output
layer starts at zero, so a fresh coupling is the identity (up to Glow's
constant sigmoid(2) scale).

A :class:`~tfflows.layers.CouplingLayer` asks for its network by name:
``"convnet"``, ``"resnet"``, ``"mlp"``, ``"zeroconv"`` and ``"vit"`` are
entries of a registry that :func:`register_conditioner` extends, so a new
network needs no edit to the layer. A factory is called as::

    factory(output_channels, hidden_channels=..., num_blocks=..., dtype=..., name=..., **options)

and returns a Keras layer whose ``call(x, context=None)`` keeps x's leading
axes and returns ``output_channels`` values in the last one; ``options``
are the layer's JSON-safe ``conditioner_options``. Register the name before
a model that uses it is built or loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import keras
from keras import layers, ops

from tfflows.bijectors.base import check_dropout, check_positive_ints, dropout_config
from tfflows.layers.convolution import Conv2D
from tfflows.layers.transformer import CausalTransformer, check_heads
from tfflows.typing import Shape

if TYPE_CHECKING:
    import tensorflow as tf  # Keras hands call() the backend's tensors

__all__ = [
    "ConvNet",
    "ResNet",
    "MLP",
    "ZeroConv",
    "ViT",
    "ConditionerFactory",
    "register_conditioner",
    "get_conditioner",
    "conditioner_names",
    "BUILTIN_CONDITIONERS",
]

ConditionerFactory = Callable[..., keras.layers.Layer]
_REGISTRY: dict[str, ConditionerFactory] = {}


def register_conditioner(name: str, factory: ConditionerFactory, overwrite: bool = False) -> None:
    """Makes ``factory`` the conditioner network called ``name`` (see the module docstring).

    Raises:
      ValueError: ``name`` is not a non-empty string, ``factory`` is not
        callable, or the name is taken and ``overwrite`` is false.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_conditioner: name must be a non-empty string, got {name!r}.")
    if not callable(factory):
        raise ValueError(f"register_conditioner: factory must be callable, got {type(factory).__name__}.")
    if name in _REGISTRY and not overwrite:
        raise ValueError(
            f"register_conditioner: a conditioner called {name!r} is registered "
            "already; pass overwrite=True to replace it."
        )
    _REGISTRY[name] = factory


def conditioner_names() -> tuple[str, ...]:
    """The registered conditioner names, built-in ones first."""
    return tuple(_REGISTRY)


def get_conditioner(name: str, owner: str = "get_conditioner") -> ConditionerFactory:
    """The factory registered as ``name``.

    Raises:
      ValueError: no conditioner has that name.
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(
            f"{owner}: conditioner must be a Keras layer or one of {conditioner_names()}, got {name!r}."
        )
    return _REGISTRY[name]


def output_policy(policy: keras.DTypePolicy) -> keras.DTypePolicy:
    """The policy of a conditioner's output layer: ``policy`` computing in its variable dtype.

    Under a mixed policy the hidden layers compute in bfloat16 / float16 but
    the last layer, which gives the transform's shift, scale or spline
    parameters, computes in float32 (as Keras advises for a model's last
    layer): rounding those to 8 mantissa bits puts noise of about 0.4 % into
    every log-det and shift, and measurably slowed training
    (``bench/mixed_precision.py``).
    """
    if policy.compute_dtype == policy.variable_dtype:
        return policy
    return keras.DTypePolicy(policy.variable_dtype)


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
        self.conv_out = Conv2D(
            output_channels, 3, kernel_initializer="zeros", dtype=output_policy(self.dtype_policy)
        )

    def build(self, x_shape: Shape, context_shape: Shape | None = None) -> None:
        channels = x_shape[-1] + (0 if context_shape is None else context_shape[-1])
        self.conv_in.build((*x_shape[:-1], channels))
        self.conv_mid.build((*x_shape[:-1], self.hidden_channels))
        self.conv_out.build((*x_shape[:-1], self.hidden_channels))

    def call(self, x: tf.Tensor, context: tf.Tensor | None = None) -> tf.Tensor:
        return self.conv_out(self.conv_mid(self.conv_in(_with_context(x, context))))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "hidden_channels": self.hidden_channels,
            "output_channels": self.output_channels,
        }


@keras.saving.register_keras_serializable(package="tfflows")
class ResNet(keras.layers.Layer):
    """RealNVP's conditioner: a 3×3 conv in, residual blocks, a zero 3×3 conv out.

    Each block is x + conv3×3(ReLU(conv3×3(ReLU(x)))).

    Args:
      num_blocks: residual blocks (RealNVP uses 8 on CIFAR-10, 4 on smaller data).
      hidden_channels: features inside the blocks (64 in the paper).
      output_channels: channels of the output.
    """

    def __init__(self, num_blocks: int, hidden_channels: int, output_channels: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_positive_ints(
            self.name, num_blocks=num_blocks, hidden_channels=hidden_channels, output_channels=output_channels
        )
        self.num_blocks = num_blocks
        self.hidden_channels = hidden_channels
        self.output_channels = output_channels
        dtype = self.dtype_policy
        self.conv_in = Conv2D(hidden_channels, 3, dtype=dtype)
        # A flat list: Keras tracks layers in lists, not in tuples.
        self.block_convs = [Conv2D(hidden_channels, 3, dtype=dtype) for _ in range(2 * num_blocks)]
        self.conv_out = Conv2D(output_channels, 3, kernel_initializer="zeros", dtype=output_policy(dtype))

    def build(self, x_shape: Shape, context_shape: Shape | None = None) -> None:
        channels = x_shape[-1] + (0 if context_shape is None else context_shape[-1])
        hidden = (*x_shape[:-1], self.hidden_channels)
        self.conv_in.build((*x_shape[:-1], channels))
        for conv in self.block_convs:
            conv.build(hidden)
        self.conv_out.build(hidden)

    def call(self, x: tf.Tensor, context: tf.Tensor | None = None) -> tf.Tensor:
        h = self.conv_in(_with_context(x, context))
        convs = self.block_convs
        for first, second in zip(convs[0::2], convs[1::2]):
            h = h + second(ops.relu(first(ops.relu(h))))
        return self.conv_out(ops.relu(h))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_blocks": self.num_blocks,
            "hidden_channels": self.hidden_channels,
            "output_channels": self.output_channels,
        }


@keras.saving.register_keras_serializable(package="tfflows")
class MLP(keras.layers.Layer):
    """A dense conditioner for vector flows: ReLU hidden layers, a zero output layer.

    Args:
      hidden_units: width of each hidden layer, e.g. ``[64, 64]``.
      output_units: size of the output.
      dropout: the rate of dropout after each hidden layer while training
        (0: none). Training draws a new mask every step, so each step fits
        another thinned conditioner; ``log_prob``, sampling and evaluation use
        the whole network. Small tables overfit without it.
    """

    def __init__(
        self, hidden_units: list[int], output_units: int, dropout: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        hidden_units = list(hidden_units)
        check_positive_ints(
            self.name,
            output_units=output_units,
            **{f"hidden_units[{i}]": u for i, u in enumerate(hidden_units)},
        )
        self.hidden_units = hidden_units
        self.output_units = output_units
        self.dropout = check_dropout(self.name, dropout)
        self.hidden = [layers.Dense(u, activation="relu", dtype=self.dtype_policy) for u in hidden_units]
        self.drops = (
            [layers.Dropout(self.dropout, dtype=self.dtype_policy) for _ in hidden_units]
            if self.dropout
            else []
        )
        self.out = layers.Dense(
            output_units, kernel_initializer="zeros", dtype=output_policy(self.dtype_policy)
        )

    def build(self, x_shape: Shape, context_shape: Shape | None = None) -> None:
        width = x_shape[-1] + (0 if context_shape is None else context_shape[-1])
        for dense in self.hidden:
            dense.build((*x_shape[:-1], width))
            width = dense.units
        self.out.build((*x_shape[:-1], width))

    def call(self, x: tf.Tensor, context: tf.Tensor | None = None, training: bool | None = None) -> tf.Tensor:
        h = _with_context(x, context)
        for i, dense in enumerate(self.hidden):
            h = dense(h)
            if self.drops:
                h = self.drops[i](h, training=training)
        return self.out(h)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "hidden_units": self.hidden_units,
            "output_units": self.output_units,
            **dropout_config(self.dropout),
        }


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
        self.conv = Conv2D(
            output_channels, 3, kernel_initializer="zeros", dtype=output_policy(self.dtype_policy)
        )

    def build(self, x_shape: Shape, context_shape: Shape | None = None) -> None:
        channels = x_shape[-1] + (0 if context_shape is None else context_shape[-1])
        self.conv.build((*x_shape[:-1], channels))

    def call(self, x: tf.Tensor, context: tf.Tensor | None = None) -> tf.Tensor:
        return self.conv(_with_context(x, context))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "output_channels": self.output_channels}


@keras.saving.register_keras_serializable(package="tfflows")
class ViT(keras.layers.Layer):
    """Jet's coupling network: a non-causal transformer over tokens, zero output projection.

    For tokens x [B, T, D]: h = W_in x + e (a learned position embedding per
    token, plus W_c c for a context c, at every token); ``num_layers`` pre-LN
    transformer blocks in which every token attends to every token; a final
    LayerNorm; then W_out h, zero-initialised, to ``output_channels`` per token.

    Args:
      num_layers: transformer blocks (Jet's block depth).
      width: model width.
      heads: attention heads; must divide ``width``.
      output_channels: outputs per token.
      mlp_ratio: MLP hidden size as a multiple of ``width``.

    References:
      Dosovitskiy et al. An Image is Worth 16x16 Words. ICLR 2021.
      Kolesnikov, Susano Pinto, Tschannen. Jet: A Modern Transformer-Based
        Normalizing Flow. 2024. arXiv:2412.15129.
    """

    def __init__(
        self, num_layers: int, width: int, heads: int, output_channels: int, mlp_ratio: int = 4, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        check_positive_ints(
            self.name, num_layers=num_layers, output_channels=output_channels, mlp_ratio=mlp_ratio
        )
        check_heads(self.name, width, heads)
        self.num_layers, self.width, self.heads = num_layers, width, heads
        self.output_channels, self.mlp_ratio = output_channels, mlp_ratio
        policy = self.dtype_policy
        self.project_in = layers.Dense(width, dtype=policy, name="project_in")
        self.transformer = CausalTransformer(
            num_layers, width, heads, mlp_ratio, causal=False, dtype=policy, name="transformer"
        )
        self.project_out = layers.Dense(
            output_channels, kernel_initializer="zeros", dtype=output_policy(policy), name="project_out"
        )
        self.context_embedding: layers.Dense | None = None

    def build(self, x_shape: Shape, context_shape: Shape | None = None) -> None:
        if len(x_shape) != 3 or x_shape[-2] is None or x_shape[-1] is None:
            raise ValueError(
                f"{self.name}: expected inputs shaped [batch, tokens, features] with "
                f"known tokens and features, got shape {tuple(x_shape)}."
            )
        self.project_in.build((None, None, x_shape[-1]))
        self.position = self.add_weight(
            name="position",
            shape=(int(x_shape[-2]), self.width),
            initializer=keras.initializers.RandomNormal(stddev=self.width**-0.5),
        )
        self.transformer.build((None, None, self.width))
        self.project_out.build((None, None, self.width))
        if context_shape is not None:
            self.context_embedding = layers.Dense(
                self.width, use_bias=False, dtype=self.dtype_policy, name="context_embedding"
            )
            self.context_embedding.build((None, context_shape[-1]))

    def call(self, x: tf.Tensor, context: tf.Tensor | None = None) -> tf.Tensor:
        h = self.project_in(x) + ops.cast(self.position, self.compute_dtype)[None]
        if context is not None:
            if self.context_embedding is None:
                raise ValueError(f"{self.name}: got a context but the layer was built without one.")
            h = h + self.context_embedding(ops.cast(context, self.compute_dtype))[:, None, :]
        return self.project_out(self.transformer(h))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "width": self.width,
            "heads": self.heads,
            "output_channels": self.output_channels,
            "mlp_ratio": self.mlp_ratio,
        }


def _convnet(output_channels, *, hidden_channels, num_blocks, dtype, name, **options):
    return ConvNet(hidden_channels, output_channels, dtype=dtype, name=name, **options)


def _resnet(output_channels, *, hidden_channels, num_blocks, dtype, name, **options):
    return ResNet(num_blocks, hidden_channels, output_channels, dtype=dtype, name=name, **options)


def _mlp(output_channels, *, hidden_channels, num_blocks, dtype, name, **options):
    return MLP([hidden_channels] * num_blocks, output_channels, dtype=dtype, name=name, **options)


def _zeroconv(output_channels, *, hidden_channels, num_blocks, dtype, name, **options):
    return ZeroConv(output_channels, dtype=dtype, name=name, **options)


def _vit(output_channels, *, hidden_channels, num_blocks, dtype, name, heads=4, mlp_ratio=4):
    return ViT(num_blocks, hidden_channels, heads, output_channels, mlp_ratio, dtype=dtype, name=name)


for _name, _factory in (
    ("convnet", _convnet),
    ("resnet", _resnet),
    ("mlp", _mlp),
    ("zeroconv", _zeroconv),
    ("vit", _vit),
):
    register_conditioner(_name, _factory)

BUILTIN_CONDITIONERS = conditioner_names()
"""The conditioners tfflows registers itself."""
