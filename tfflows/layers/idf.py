"""Layers of the integer discrete flow: the rounded additive coupling and the mixture prior network."""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

__all__ = [
    "ConvNet",
    "IntegerCoupling",
    "LogisticMixturePrior",
    "discretized_logistic_mixture_log_prob",
    "round_straight_through",
    "LOG_SCALE_MIN",
    "LOG_SCALE_MAX",
]

LOG_SCALE_MIN = -4.0
"""Smallest log scale of a prior component (s ≈ 0.018: one integer holds all but e⁻⁵⁴ of the mass)."""
LOG_SCALE_MAX = 6.0
"""Largest log scale of a prior component (s ≈ 403, wider than any latent's range)."""


def round_straight_through(t: tf.Tensor) -> tf.Tensor:
    """``round(t)`` forward, identity backward (the straight-through estimator of IDF)."""
    return t + tf.stop_gradient(tf.round(t) - t)


def discretized_logistic_mixture_log_prob(z: tf.Tensor, params: tf.Tensor) -> tf.Tensor:
    """log P(z) of integers z under a mixture of logistics discretized to unit bins.

    P(z) = Σₖ πₖ [σ((z + ½ − μₖ)/sₖ) − σ((z − ½ − μₖ)/sₖ)], computed as
    log σ(p) + log σ(−m) + log(1 − e^{−(p − m)}) per component (p − m = 1/sₖ),
    which stays finite far in the tails.

    Args:
      z: integer-valued latents ``[..., n]``.
      params: ``[..., n, K, 3]``: μ, log s (clipped to [LOG_SCALE_MIN, LOG_SCALE_MAX]) and the
        mixture logits.

    Returns:
      log P(z) per element, ``[..., n]``.
    """
    mean, log_scale, logits = tf.unstack(params, axis=-1)
    log_scale = tf.clip_by_value(log_scale, LOG_SCALE_MIN, LOG_SCALE_MAX)
    inv = tf.exp(-log_scale)
    centred = z[..., None] - mean
    plus = (centred + 0.5) * inv
    minus = (centred - 0.5) * inv
    log_bin = tf.math.log_sigmoid(plus) + tf.math.log_sigmoid(-minus) + tf.math.log(-tf.math.expm1(-inv))
    return tf.reduce_logsumexp(tf.nn.log_softmax(logits, axis=-1) + log_bin, axis=-1)


@keras.saving.register_keras_serializable(package="tfflows.idf")  # its own names: ConvNet is taken
class ConvNet(keras.layers.Layer):
    """3×3 conv → ReLU → (``depth`` × 3×3 residual conv → ReLU) → zero-initialised 3×3 conv.

    Args:
      out_channels: channels of the output.
      width: channels of the hidden convolutions.
      depth: residual hidden convolutions after the first.
    """

    def __init__(self, out_channels: int, width: int = 64, depth: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.out_channels = int(out_channels)
        self.width = int(width)
        self.depth = int(depth)
        self.first = keras.layers.Conv2D(
            self.width, 3, padding="same", activation="relu", dtype=self.dtype_policy, name="first"
        )
        self.hidden = [
            keras.layers.Conv2D(
                self.width, 3, padding="same", activation="relu", dtype=self.dtype_policy, name=f"hidden_{i}"
            )
            for i in range(self.depth)
        ]
        self.last = keras.layers.Conv2D(
            self.out_channels,
            3,
            padding="same",
            kernel_initializer="zeros",
            dtype=self.dtype_policy,
            name="last",
        )

    def build(self, input_shape: Any) -> None:
        self.first.build(input_shape)
        hidden_shape = tuple(input_shape[:-1]) + (self.width,)
        for layer in self.hidden:
            layer.build(hidden_shape)
        self.last.build(hidden_shape)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        h = self.first(x)
        for layer in self.hidden:
            h = h + layer(h)
        return self.last(h)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "out_channels": self.out_channels,
            "width": self.width,
            "depth": self.depth,
        }


@keras.saving.register_keras_serializable(package="tfflows.idf")  # its own names: ConvNet is taken
class IntegerCoupling(keras.layers.Layer):
    """b ← b + round(T·tanh(NN(a / input_scale) / T)) on integer-valued channels.

    Forward (data → latent): x = [a, b] split in halves along channels;
    y = [b + t(a), a] (the halves swap so that the next coupling changes the
    other one). Inverse: a = y₂, b = y₁ − t(a). The map is a bijection of
    integer tensors, with no log-det (volume is preserved on the integers).
    The translation is bounded by ``max_shift`` so that every latent lies in
    a known finite range, which the entropy coder needs.

    Args:
      channels: channels of x (even).
      max_shift: T, the largest |translation|.
      input_scale: the network sees a / input_scale.
      width, depth: of the conditioner (:class:`ConvNet`).

    References:
      Hoogeboom, Peters, van den Berg, Welling. Integer Discrete Flows and
        Lossless Compression. NeurIPS 2019.
    """

    def __init__(
        self,
        channels: int,
        max_shift: int = 32,
        input_scale: float = 128.0,
        width: int = 64,
        depth: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if channels % 2:
            raise ValueError(f"IntegerCoupling: channels must be even, got {channels}.")
        self.channels = int(channels)
        self.max_shift = int(max_shift)
        self.input_scale = float(input_scale)
        self.width = int(width)
        self.depth = int(depth)
        self.net = ConvNet(
            self.channels // 2, width=self.width, depth=self.depth, dtype=self.dtype_policy, name="net"
        )

    def build(self, input_shape: Any) -> None:
        self.net.build(tuple(input_shape[:-1]) + (self.channels // 2,))

    def shift(self, a: tf.Tensor) -> tf.Tensor:
        """The unrounded translation T·tanh(NN(a / input_scale) / T), in the layer's compute dtype."""
        return self.max_shift * tf.tanh(self.net(a / self.input_scale) / self.max_shift)

    def call(self, x: tf.Tensor, inverse: bool = False) -> tf.Tensor:
        return self.couple(x, inverse)[0]

    def couple(self, x: tf.Tensor, inverse: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """``(y, t)``: the coupling's output and its unrounded translation t (for the coder's guard)."""
        half = self.channels // 2
        if inverse:
            b, a = x[..., :half], x[..., half:]
            t = self.shift(a)
            return tf.concat([a, b - round_straight_through(t)], axis=-1), t
        a, b = x[..., :half], x[..., half:]
        t = self.shift(a)
        return tf.concat([b + round_straight_through(t), a], axis=-1), t

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "channels": self.channels,
            "max_shift": self.max_shift,
            "input_scale": self.input_scale,
            "width": self.width,
            "depth": self.depth,
        }


@keras.saving.register_keras_serializable(package="tfflows.idf")  # its own names: ConvNet is taken
class LogisticMixturePrior(keras.layers.Layer):
    """Parameters of p(z | context): a K-component logistic mixture per latent.

    With ``context_channels > 0`` a :class:`ConvNet` maps the context (the
    latents already known) to the parameters; with 0 the parameters are
    learned per position (the first group of the top level).

    Args:
      shape: (h, w) of the latents.
      channels: n, latent channels this prior covers.
      context_channels: channels of the context (0 for none).
      num_mixtures: K.
      input_scale: the network sees context / input_scale.
      width, depth: of the network.

    Returns (call): ``[B, h, w, n, K, 3]``: μ, log s, mixture logits.
    """

    def __init__(
        self,
        shape: tuple[int, int],
        channels: int,
        context_channels: int,
        num_mixtures: int = 3,
        input_scale: float = 128.0,
        width: int = 64,
        depth: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.shape = tuple(int(s) for s in shape)
        self.channels = int(channels)
        self.context_channels = int(context_channels)
        self.num_mixtures = int(num_mixtures)
        self.input_scale = float(input_scale)
        self.width = int(width)
        self.depth = int(depth)
        size = self.channels * self.num_mixtures * 3
        if self.context_channels:
            self.net = ConvNet(size, width=self.width, depth=self.depth, dtype=self.dtype_policy, name="net")
        # Components start spread over the pixel range with a broad scale.
        k = self.num_mixtures
        means = [(i + 0.5) / k * 2.0 - 1.0 for i in range(k)]
        init = [[m * self.input_scale * 0.8, math.log(self.input_scale / (2 * k)), 0.0] for m in means]
        self._init = [v for comp in init for v in comp]

    def build(self, input_shape: Any = None) -> None:
        n, k = self.channels, self.num_mixtures
        self.bias = self.add_weight(
            shape=(n * k * 3,), name="bias", initializer=keras.initializers.Constant(self._init * n)
        )
        if self.context_channels:
            self.net.build(self.shape_with(self.context_channels))
        else:
            self.table = self.add_weight(shape=self.shape + (n * k * 3,), name="table", initializer="zeros")

    def shape_with(self, channels: int) -> tuple:
        return (None,) + self.shape + (channels,)

    def call(self, context: tf.Tensor | None = None, batch_size: int | None = None) -> tf.Tensor:
        """The mixture parameters [batch, H, W, channels, num_mixtures, 3] (from ``context``, or
        the learned table repeated ``batch_size`` times for a group coded first)."""
        if self.context_channels:
            if context is None:
                raise ValueError(f"{self.name}: this prior is conditioned on earlier groups; got no context.")
            h = self.net(context / self.input_scale) + self.bias
        else:
            h = tf.broadcast_to(self.table + self.bias, tf.concat([[batch_size], tf.shape(self.table)], 0))
        return tf.reshape(h, tf.concat([tf.shape(h)[:-1], [self.channels, self.num_mixtures, 3]], 0))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "shape": list(self.shape),
            "channels": self.channels,
            "context_channels": self.context_channels,
            "num_mixtures": self.num_mixtures,
            "input_scale": self.input_scale,
            "width": self.width,
            "depth": self.depth,
        }
