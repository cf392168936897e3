"""MADE: masked dense layers whose outputs depend only on earlier inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
from keras import ops

from tfflows.bijectors.base import check_dropout, check_positive_ints, dropout_config
from tfflows.layers.conditioners import output_policy
from tfflows.typing import Shape

if TYPE_CHECKING:
    import tensorflow as tf  # Keras hands call() the backend's tensors

__all__ = ["MaskedDense", "MADE", "ORDERINGS", "make_ordering"]

ORDERINGS = ("natural", "reversed", "random")


def make_ordering(dim: int, ordering: str, seed: int = 0) -> list[int]:
    """Degrees 1..D of the D inputs: feature i comes at place ``degrees[i]`` of the ordering."""
    if ordering not in ORDERINGS:
        raise ValueError(f"ordering must be one of {ORDERINGS}, got {ordering!r}.")
    if ordering == "natural":
        return list(range(1, dim + 1))
    if ordering == "reversed":
        return list(range(dim, 0, -1))
    return [int(d) + 1 for d in np.random.default_rng(seed).permutation(dim)]


@keras.saving.register_keras_serializable(package="tfflows")
class MaskedDense(keras.layers.Layer):
    """y = a(x · (W ⊙ M) + b) with a fixed 0/1 mask M from unit degrees.

    M[j, k] = 1 when output degree k ≥ input degree j (hidden layers), or
    k > j with ``strict=True`` (the output layer), so no path leads from an
    input to an output of the same or an earlier degree.

    Args:
      in_degrees: degree of every input unit.
      out_degrees: degree of every output unit (their count is the width).
      strict: strict inequality (output layer).
      activation: Keras activation name.
      kernel_initializer: Keras initializer name ("zeros" for an identity start).
    """

    def __init__(
        self,
        in_degrees: Sequence[int],
        out_degrees: Sequence[int],
        strict: bool = False,
        activation: str | None = None,
        kernel_initializer: str = "glorot_uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.in_degrees = [int(d) for d in in_degrees]
        self.out_degrees = [int(d) for d in out_degrees]
        if not self.in_degrees or not self.out_degrees:
            raise ValueError(
                f"{self.name}: in_degrees and out_degrees must be non-empty, got "
                f"{len(self.in_degrees)} and {len(self.out_degrees)} entries."
            )
        self.strict = bool(strict)
        self.activation_name = activation
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = kernel_initializer
        inp, out = np.array(self.in_degrees)[:, None], np.array(self.out_degrees)[None, :]
        self.mask = (out > inp if self.strict else out >= inp).astype("float32")

    def build(self, x_shape: Shape) -> None:
        if x_shape[-1] != len(self.in_degrees):
            raise ValueError(
                f"{self.name}: expected inputs with {len(self.in_degrees)} features, got shape {x_shape}."
            )
        self.kernel = self.add_weight(
            name="kernel", shape=self.mask.shape, initializer=self.kernel_initializer
        )
        self.bias = self.add_weight(name="bias", shape=(len(self.out_degrees),), initializer="zeros")

    def call(self, x: tf.Tensor) -> tf.Tensor:
        kernel = self.kernel * ops.cast(self.mask, self.kernel.dtype)
        return self.activation(ops.matmul(x, kernel) + self.bias)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "in_degrees": self.in_degrees,
            "out_degrees": self.out_degrees,
            "strict": self.strict,
            "activation": self.activation_name,
            "kernel_initializer": self.kernel_initializer,
        }


@keras.saving.register_keras_serializable(package="tfflows")
class MADE(keras.layers.Layer):
    """An autoregressive MLP: the parameters of feature i see only features before i.

    Hidden unit degrees cycle through 1..D−1; the output has P·D units laid
    out parameter-major (P = ``params_per_feature``; P = 2: the shifts then
    the raw log-scales), unit p·D + i of degree ``ordering[i]``, masked
    strictly. The output layer starts at zero (an identity flow step). A
    context vector, when given, enters the first hidden layer through an
    unmasked dense layer (it is conditioning, not data), and the output
    through another (zero at the start), so even the first feature in the
    ordering, which sees no hidden unit, depends on it.

    Args:
      ordering: degree (1..D) of every input feature, e.g. from :func:`make_ordering`.
      hidden_units: width of the hidden layers.
      num_hidden: number of hidden layers.
      params_per_feature: P, outputs per feature (2 for affine, 3K − 1 for a K-bin spline).
      dropout: the rate of dropout after each hidden layer while training (0:
        none); masking hidden units keeps every output's autoregressive
        dependencies, and ``log_prob`` and sampling use the whole network.

    References:
      Germain, Gregor, Murray, Larochelle. MADE: Masked Autoencoder for
        Distribution Estimation. ICML 2015.
    """

    def __init__(
        self,
        ordering: Sequence[int],
        hidden_units: int = 64,
        num_hidden: int = 2,
        params_per_feature: int = 2,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_positive_ints(
            self.name, hidden_units=hidden_units, num_hidden=num_hidden, params_per_feature=params_per_feature
        )
        self.dropout = check_dropout(self.name, dropout)
        self.params_per_feature = params_per_feature
        self.ordering = [int(d) for d in ordering]
        dim = len(self.ordering)
        if sorted(self.ordering) != list(range(1, dim + 1)):
            raise ValueError(f"{self.name}: ordering must be a permutation of 1..{dim}, got {self.ordering}.")
        self.hidden_units, self.num_hidden = hidden_units, num_hidden
        hidden = [int(d) for d in np.arange(hidden_units) % max(dim - 1, 1) + 1]
        degrees = self.ordering
        self.hidden_layers = []
        for k in range(num_hidden):
            self.hidden_layers.append(
                MaskedDense(degrees, hidden, activation="relu", dtype=self.dtype_policy, name=f"hidden_{k}")
            )
            degrees = hidden
        self.drops = (
            [keras.layers.Dropout(self.dropout, dtype=self.dtype_policy) for _ in range(num_hidden)]
            if self.dropout
            else []
        )
        self.output_layer = MaskedDense(
            degrees,
            self.ordering * params_per_feature,
            strict=True,
            kernel_initializer="zeros",
            dtype=output_policy(self.dtype_policy),
            name="output",
        )
        self.context_layer: keras.layers.Dense | None = None
        self.context_output: keras.layers.Dense | None = None

    def build(self, x_shape: Shape, context_shape: Shape | None = None) -> None:
        shape = (None, x_shape[-1])
        for layer in self.hidden_layers:
            layer.build(shape)
            shape = (None, self.hidden_units)
        self.output_layer.build(shape)
        if context_shape is not None:
            self.context_layer = keras.layers.Dense(
                self.hidden_units, use_bias=False, dtype=self.dtype_policy, name="context"
            )
            self.context_layer.build((None, context_shape[-1]))
            self.context_output = keras.layers.Dense(
                self.params_per_feature * len(self.ordering),
                use_bias=False,
                kernel_initializer="zeros",
                dtype=output_policy(self.dtype_policy),
                name="context_output",
            )
            self.context_output.build((None, context_shape[-1]))

    def call(self, x: tf.Tensor, context: tf.Tensor | None = None, training: bool | None = None) -> tf.Tensor:
        first = self.hidden_layers[0]
        h = ops.matmul(x, first.kernel * ops.cast(first.mask, first.kernel.dtype)) + first.bias
        context_output = None
        if context is not None:
            if self.context_layer is None or self.context_output is None:
                raise ValueError(f"{self.name}: was built without a context, but one was given.")
            h = h + self.context_layer(ops.cast(context, h.dtype))
            context_output = self.context_output
        h = first.activation(h)
        for k, layer in enumerate(self.hidden_layers):
            if k:
                h = layer(h)
            if self.drops:
                h = self.drops[k](h, training=training)
        out = self.output_layer(h)
        if context_output is not None:
            out = out + context_output(ops.cast(context, out.dtype))
        return out

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "ordering": self.ordering,
            "hidden_units": self.hidden_units,
            "num_hidden": self.num_hidden,
            "params_per_feature": self.params_per_feature,
            **dropout_config(self.dropout),
        }
