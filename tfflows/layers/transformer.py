"""A small causal transformer in Keras 3 layers, with a key/value cache for decoding.

Each layer works on a whole sequence in one pass (``call``) and one token at
a time (``step``), reading and writing a cache of the keys and values of the
positions seen so far. Both give the same numbers (to round-off): ``step`` at
position t attends to the cached positions 0..t exactly as ``call`` attends
under its causal mask, so a sequential decoder costs one token per step
instead of the whole prefix.

Caches are fixed-size tensors [batch, heads, T, width/heads] written with a
one-hot update, so a decoding loop keeps the same shapes on every iteration
and runs inside ``tf.while_loop`` (and XLA).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

from tfflows.bijectors.base import check_positive_ints
from tfflows.typing import DTypeLike, Shape

KeyValues = tuple[tf.Tensor, tf.Tensor]
"""An attention layer's cache: keys and values, each [B, heads, T, head_size]."""

__all__ = ["CausalSelfAttention", "TransformerBlock", "CausalTransformer", "check_heads"]


def check_heads(name: str, width: int, heads: int) -> None:
    """Raises ValueError unless ``heads`` divides ``width`` (both positive)."""
    check_positive_ints(name, width=width, heads=heads)
    if width % heads:
        raise ValueError(
            f"{name}: width must be divisible by heads, got width={width} and "
            f"heads={heads} (width/heads = {width / heads:g})."
        )


def _write(cache: tf.Tensor, value: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """``cache`` [B, H, T, d] with position ``index`` set to ``value`` [B, H, 1, d].

    The position is still zero (each is written once), so adding the one-hot
    masked value writes it exactly.
    """
    hot = tf.one_hot(index, tf.shape(cache)[2], dtype=cache.dtype)
    return cache + hot[None, None, :, None] * value


@keras.saving.register_keras_serializable(package="tfflows")
class CausalSelfAttention(keras.layers.Layer):
    """Multi-head self-attention in which position t sees positions 0..t only.

    y_t = W_o · concat_h softmax_{s ≤ t}(q_{h,t} · k_{h,s} / √d) v_{h,s}, with
    q, k, v = W_qkv · x and d = width / heads.

    Args:
      width: model width (input and output features).
      heads: attention heads; must divide ``width``.
      causal: False lets every position see every other (a ViT encoder's
        attention, as Jet's conditioners use); ``step`` needs True.

    References:
      Vaswani et al. Attention Is All You Need. NeurIPS 2017.
    """

    def __init__(self, width: int, heads: int, causal: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_heads(self.name, width, heads)
        self.width, self.heads, self.causal = width, heads, bool(causal)
        self.head_size = width // heads
        self.qkv = keras.layers.Dense(3 * width, dtype=self.dtype_policy, name="qkv")
        self.out = keras.layers.Dense(width, dtype=self.dtype_policy, name="out")

    def build(self, input_shape: Shape) -> None:
        if input_shape[-1] != self.width:
            raise ValueError(
                f"{self.name}: expected inputs with {self.width} features, got shape {tuple(input_shape)}."
            )
        self.qkv.build((None, self.width))
        self.out.build((None, self.width))

    def _heads(self, x: tf.Tensor) -> list[tf.Tensor]:
        """q, k, v of x [B, T, width], each [B, heads, T, head_size]."""
        qkv = self.qkv(x)
        shape = tf.concat([tf.shape(x)[:2], [3, self.heads, self.head_size]], 0)
        qkv = tf.transpose(tf.reshape(qkv, shape), [2, 0, 3, 1, 4])
        return tf.unstack(qkv, 3, axis=0)

    def _attend(self, q, k, v, allowed) -> tf.Tensor:
        logits = tf.matmul(q, k, transpose_b=True) * (1.0 / math.sqrt(self.head_size))
        if allowed is not None:
            # A masked weight is exactly zero: the causal Jacobian blocks are exact zeros.
            logits = tf.where(allowed, logits, tf.constant(logits.dtype.min, logits.dtype))
        out = tf.matmul(tf.nn.softmax(logits, axis=-1), v)
        out = tf.transpose(out, [0, 2, 1, 3])
        return self.out(tf.reshape(out, tf.concat([tf.shape(out)[:2], [self.width]], 0)))

    def call(self, x: tf.Tensor) -> tf.Tensor:
        """x [B, T, width] → [B, T, width], causal unless ``causal=False``."""
        q, k, v = self._heads(x)
        if not self.causal:
            return self._attend(q, k, v, None)
        length = tf.shape(x)[1]
        pos = tf.range(length)
        allowed = pos[None, :] <= pos[:, None]  # [T_query, T_key]
        return self._attend(q, k, v, allowed)

    def initial_cache(self, batch: tf.Tensor, length: int, dtype: DTypeLike) -> KeyValues:
        """Empty (zero) keys and values for ``length`` positions: two [B, heads, T, d] tensors."""
        zeros = tf.zeros(tf.stack([batch, self.heads, length, self.head_size]), dtype)
        return zeros, zeros

    def step(self, x: tf.Tensor, index: tf.Tensor, cache: KeyValues) -> tuple[tf.Tensor, KeyValues]:
        """The output at position ``index`` for its input x [B, width], and the updated cache.

        ``cache`` holds the keys and values of positions 0..index−1 (see
        :meth:`initial_cache`); this step writes position ``index``.
        """
        q, k, v = self._heads(x[:, None, :])
        keys, values = _write(cache[0], k, index), _write(cache[1], v, index)
        allowed = (tf.range(tf.shape(keys)[2]) <= index)[None, :]
        return self._attend(q, keys, values, allowed)[:, 0], (keys, values)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "width": self.width, "heads": self.heads, "causal": self.causal}


@keras.saving.register_keras_serializable(package="tfflows")
class TransformerBlock(keras.layers.Layer):
    """A pre-LayerNorm transformer block: h = x + attn(LN(x)); y = h + MLP(LN(h)).

    The MLP is Dense(mlp_ratio · width, GELU) → Dense(width).

    Args:
      width: model width.
      heads: attention heads; must divide ``width``.
      mlp_ratio: hidden size of the MLP as a multiple of ``width``.
      causal: see :class:`CausalSelfAttention`.

    References:
      Xiong et al. On Layer Normalization in the Transformer Architecture. ICML 2020.
    """

    def __init__(
        self, width: int, heads: int, mlp_ratio: int = 4, causal: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        check_heads(self.name, width, heads)
        check_positive_ints(self.name, mlp_ratio=mlp_ratio)
        self.width, self.heads, self.mlp_ratio, self.causal = width, heads, mlp_ratio, bool(causal)
        policy = self.dtype_policy
        self.norm_attention = keras.layers.LayerNormalization(
            epsilon=1e-5, dtype=policy, name="norm_attention"
        )
        self.attention = CausalSelfAttention(width, heads, causal, dtype=policy, name="attention")
        self.norm_mlp = keras.layers.LayerNormalization(epsilon=1e-5, dtype=policy, name="norm_mlp")
        self.mlp_in = keras.layers.Dense(mlp_ratio * width, activation="gelu", dtype=policy, name="mlp_in")
        self.mlp_out = keras.layers.Dense(width, dtype=policy, name="mlp_out")

    def build(self, input_shape: Shape) -> None:
        shape = (None, None, self.width)
        self.norm_attention.build(shape)
        self.attention.build(shape)
        self.norm_mlp.build(shape)
        self.mlp_in.build(shape)
        self.mlp_out.build((None, None, self.mlp_ratio * self.width))

    def _mlp(self, h):
        return h + self.mlp_out(self.mlp_in(self.norm_mlp(h)))

    def call(self, x: tf.Tensor) -> tf.Tensor:
        """x [B, T, width] → [B, T, width]; position t reads positions 0..t."""
        return self._mlp(x + self.attention(self.norm_attention(x)))

    def initial_cache(self, batch: tf.Tensor, length: int, dtype: DTypeLike) -> KeyValues:
        """Empty (zero) keys and values of the block's attention for ``length`` positions."""
        return self.attention.initial_cache(batch, length, dtype)

    def step(self, x: tf.Tensor, index: tf.Tensor, cache: KeyValues) -> tuple[tf.Tensor, KeyValues]:
        """One position: x [B, width] at ``index`` → (output [B, width], updated cache)."""
        a, cache = self.attention.step(self.norm_attention(x), index, cache)
        return self._mlp(x + a), cache

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "width": self.width,
            "heads": self.heads,
            "mlp_ratio": self.mlp_ratio,
            "causal": self.causal,
        }


@keras.saving.register_keras_serializable(package="tfflows")
class CausalTransformer(keras.layers.Layer):
    """``num_layers`` :class:`TransformerBlock` s and a final LayerNorm.

    ``call`` runs a whole sequence; ``step`` one position with a cache per
    block (:meth:`initial_cache` makes them), giving the same outputs.

    Args:
      num_layers: transformer blocks.
      width: model width.
      heads: attention heads; must divide ``width``.
      mlp_ratio: MLP hidden size as a multiple of ``width``.
      causal: False for a ViT encoder: every position sees all (no ``step``).
    """

    def __init__(
        self, num_layers: int, width: int, heads: int, mlp_ratio: int = 4, causal: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        check_positive_ints(self.name, num_layers=num_layers)
        check_heads(self.name, width, heads)
        self.num_layers, self.width, self.heads, self.mlp_ratio = num_layers, width, heads, mlp_ratio
        self.causal = bool(causal)
        self.blocks = [
            TransformerBlock(width, heads, mlp_ratio, causal, dtype=self.dtype_policy, name=f"block_{i}")
            for i in range(num_layers)
        ]
        self.norm = keras.layers.LayerNormalization(epsilon=1e-5, dtype=self.dtype_policy, name="norm")

    def build(self, input_shape: Shape) -> None:
        for block in self.blocks:
            block.build((None, None, self.width))
        self.norm.build((None, None, self.width))

    def call(self, x: tf.Tensor) -> tf.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def initial_cache(self, batch: tf.Tensor, length: int, dtype: DTypeLike) -> list[KeyValues]:
        """One zero (keys, values) pair per block, for sequences of ``length`` positions."""
        return [block.initial_cache(batch, length, dtype) for block in self.blocks]

    def step(
        self, x: tf.Tensor, index: tf.Tensor, cache: list[KeyValues]
    ) -> tuple[tf.Tensor, list[KeyValues]]:
        """One position: x [B, width] at ``index`` → (output [B, width], updated caches)."""
        new = []
        for block, c in zip(self.blocks, cache):
            x, c = block.step(x, index, c)
            new.append(c)
        return self.norm(x), new

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "width": self.width,
            "heads": self.heads,
            "mlp_ratio": self.mlp_ratio,
            "causal": self.causal,
        }
