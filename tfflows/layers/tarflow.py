"""Keras layer owning one TarFlow block: a causal transformer over image tokens."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from tfflows.bijectors.base import check_positive_ints
from tfflows.bijectors.tarflow import TokenAutoregressive
from tfflows.layers.base import FlowLayer
from tfflows.layers.conditioners import output_policy
from tfflows.layers.transformer import CausalTransformer, check_heads
from tfflows.typing import DTypeLike, Shape

__all__ = ["TarFlowBlockLayer"]


@keras.saving.register_keras_serializable(package="tfflows")
class TarFlowBlockLayer(FlowLayer):
    """Owns the transformer of a :class:`~tfflows.bijectors.TokenAutoregressive` block.

    The network reads tokens x [B, T, D] in the block's processing order:

    - h = W_in x_t + e_t (+ W_c c): an input projection to ``width``, a
      learned positional embedding and, for a conditional model, a class
      embedding of the one-hot context c added at every position;
    - ``num_layers`` pre-LN causal transformer blocks and a final LayerNorm;
    - W_out h_t: a projection to 2D raw parameters (shift, log-scale), whose
      weights start at zero so a fresh block is the identity.

    Token 0's parameters are a learned vector (plus a zero-initialised
    linear term in c), since it has no earlier token. The bijector's
    inverse (sampling) runs this network one token at a time with a
    key/value cache.

    An all-zero context is the null class of classifier-free guidance: its
    class embedding is zero, so a model trained with label dropout learns
    the unconditional density there.

    Args:
      num_layers: transformer blocks.
      width: transformer width.
      heads: attention heads; must divide ``width``.
      mlp_ratio: MLP hidden size as a multiple of ``width``.
      reverse: process the tokens last to first (TarFlow alternates).

    References:
      Zhai et al. Normalizing Flows are Capable Generative Models (TarFlow). 2024.
    """

    supported_event_ndims = (2,)
    sequential_inverse = True

    def __init__(
        self,
        num_layers: int = 2,
        width: int = 64,
        heads: int = 4,
        mlp_ratio: int = 4,
        reverse: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("event_ndims", 2)
        super().__init__(**kwargs)
        check_positive_ints(self.name, num_layers=num_layers, mlp_ratio=mlp_ratio)
        check_heads(self.name, width, heads)
        self.num_layers, self.width, self.heads = num_layers, width, heads
        self.mlp_ratio, self.reverse = mlp_ratio, bool(reverse)
        self.token_shape: tuple[int, int] | None = None

    def build(self, x_shape: Shape, context_shape: Shape | None = None) -> None:
        self._check_input_shape(x_shape)
        if x_shape[-2] is None:
            raise ValueError(f"{self.name}: the token axis must have a known size, got shape {x_shape}.")
        tokens, size = int(x_shape[-2]), int(x_shape[-1])
        self.token_shape = (tokens, size)
        policy = self.dtype_policy
        self.project_in = keras.layers.Dense(self.width, dtype=policy, name="project_in")
        self.project_in.build((None, None, size))
        self.position = self.add_weight(
            name="position",
            shape=(tokens, self.width),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )
        self.transformer = CausalTransformer(
            self.num_layers, self.width, self.heads, self.mlp_ratio, dtype=policy, name="transformer"
        )
        self.transformer.build((None, None, self.width))
        self.project_out = keras.layers.Dense(
            2 * size, kernel_initializer="zeros", dtype=output_policy(policy), name="project_out"
        )
        self.project_out.build((None, None, self.width))
        self.first_params = self.add_weight(name="first_params", shape=(2 * size,), initializer="zeros")
        self.class_embedding: keras.layers.Dense | None = None
        self.first_context: keras.layers.Dense | None = None
        if context_shape is not None:
            k = int(context_shape[-1])
            self.class_embedding = keras.layers.Dense(
                self.width, use_bias=False, dtype=policy, name="class_embedding"
            )
            self.class_embedding.build((None, k))
            self.first_context = keras.layers.Dense(
                2 * size,
                use_bias=False,
                kernel_initializer="zeros",
                dtype=output_policy(policy),
                name="first_context",
            )
            self.first_context.build((None, k))

    def _check_context(self, context):
        if context is not None and self.class_embedding is None:
            raise ValueError(f"{self.name}: got a context but the layer was built without one.")
        if context is None and self.class_embedding is not None:
            raise ValueError(f"{self.name}: the layer was built for a context; pass one.")

    def _context_layers(self) -> tuple[keras.layers.Dense, keras.layers.Dense]:
        if self.class_embedding is None or self.first_context is None:
            raise ValueError(f"{self.name}: got a context but the layer was built without one.")
        return self.class_embedding, self.first_context

    def _built_token_shape(self) -> tuple[int, int]:
        self._require_built()
        assert self.token_shape is not None  # build sets it with the weights
        return self.token_shape

    def _embed(self, h, context):
        if context is None:
            return h
        c = self._context_layers()[0](context)
        return h + (c[:, None, :] if len(h.shape) == 3 else c)

    # -- the TokenConditioner protocol ------------------------------------

    def sequence(self, x: tf.Tensor, context: tf.Tensor | None) -> tf.Tensor:
        """Raw parameters [B, L, 2D] at every position of x [B, L, D] (L ≤ T), causal."""
        h = self.project_in(x)
        h = h + tf.cast(self.position, h.dtype)[None, : tf.shape(x)[1]]
        return self.project_out(self.transformer(self._embed(h, context)))

    def first(self, context: tf.Tensor | None, batch: tf.Tensor, dtype: DTypeLike) -> tf.Tensor:
        """Raw parameters [B, 2D] of token 0."""
        size = self._built_token_shape()[1]
        p = tf.broadcast_to(tf.cast(self.first_params, dtype)[None], tf.stack([batch, 2 * size]))
        if context is not None:
            p = p + tf.cast(self._context_layers()[1](context), dtype)
        return p

    def initial_cache(self, batch: tf.Tensor, dtype: DTypeLike) -> list:
        """Empty key/value caches of the block's transformer, for sampling token by token."""
        return self.transformer.initial_cache(batch, self._built_token_shape()[0], self.compute_dtype)

    def step(
        self, x: tf.Tensor, index: tf.Tensor, cache: list, context: tf.Tensor | None
    ) -> tuple[tf.Tensor, list]:
        """Raw parameters [B, 2D] at position ``index`` for its token x [B, D], and the cache."""
        h = self.project_in(x)
        h = h + tf.gather(tf.cast(self.position, h.dtype), index)[None]
        h, cache = self.transformer.step(self._embed(h, context), index, cache)
        return self.project_out(h), cache

    # -- the bijector -------------------------------------------------------

    def bijector(
        self, context: tf.Tensor | None = None, guidance: float = 0.0, cached: bool = True
    ) -> TokenAutoregressive:
        """The block's bijector from the current weights.

        Args:
          context: [B, K] one-hot classes (zeros: the null class) or None.
          guidance: classifier-free guidance weight w (0: none).
          cached: sample with the key/value cache (True) or the uncached reference.
        """
        token_shape = self._built_token_shape()
        self._check_context(context)
        return TokenAutoregressive(
            self,
            token_shape,
            reverse=self.reverse,
            context=context,
            guidance=guidance,
            cached=cached,
            name=self.name,
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "width": self.width,
            "heads": self.heads,
            "mlp_ratio": self.mlp_ratio,
            "reverse": self.reverse,
        }
