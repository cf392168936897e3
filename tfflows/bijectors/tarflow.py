"""TarFlow's block: an affine autoregressive map over a sequence of tokens."""

from __future__ import annotations

from typing import Any, Protocol

import tensorflow as tf

from tfflows.bijectors.autoregressive import bounded_log_scale
from tfflows.bijectors.base import FlowBijector

__all__ = ["TokenAutoregressive", "TokenConditioner"]


class TokenConditioner(Protocol):
    """What :class:`TokenAutoregressive` asks of its network (a Keras layer in tfflows).

    Raw parameters have 2D entries per token: D shifts, then D raw log-scales.
    Position t of a sequence reads the tokens 0..t only.
    """

    def sequence(self, x: tf.Tensor, context: tf.Tensor | None) -> tf.Tensor:
        """Raw parameters [B, T, 2D] read at every position of x [B, T, D], in one pass."""

    def first(self, context: tf.Tensor | None, batch: tf.Tensor, dtype: Any) -> tf.Tensor:
        """Raw parameters [B, 2D] of token 0, which has no earlier token."""

    def initial_cache(self, batch: tf.Tensor, dtype: Any) -> Any:
        """An empty cache for :meth:`step`."""

    def step(
        self, x: tf.Tensor, index: tf.Tensor, cache: Any, context: tf.Tensor | None
    ) -> tuple[tf.Tensor, Any]:
        """Raw parameters [B, 2D] read at position ``index`` given its token x [B, D]."""


class TokenAutoregressive(FlowBijector):
    """z_t = (x_t − μ_t) · exp(−α_t), with (μ_t, α_t) read from the tokens before t.

    Over a sequence of T tokens of D features, in the block's processing
    order (the given order, or the reversed one with ``reverse=True``):

    - (μ_0, α_0) = the conditioner's ``first`` (learned, no input token);
      (μ_t, α_t) for t ≥ 1 = the conditioner's output at position t − 1,
      which reads x_0..x_{t−1} (the sequence shifted right by one);
      α = a/(1 + |a|/7) of the raw log-scale a, a soft clamp into (−7, 7);
    - forward (data → latent): z_t = (x_t − μ_t) · exp(−α_t), every token
      in one pass of the conditioner;
    - inverse: x_t = z_t · exp(α_t) + μ_t, token by token (T steps): with
      ``cached=True`` each step feeds one token to the conditioner's
      key/value cache; with ``cached=False`` each step reruns the whole
      prefix (the reference). Both loops are ``tf.while_loop`` s;
    - log-det (forward): −Σ_t Σ_d α_{t,d}.

    The Jacobian is block-lower-triangular in processing order with
    diagonal blocks diag(exp(−α_t)).

    With ``guidance`` w ≠ 0 (classifier-free guidance) the parameters are
    (1 + w)·p(context) − w·p(null) for p = μ and p = α, where the null
    context is all zeros (a class-conditional model's dropped label): the
    guided map is still an autoregressive bijection with this log-det.

    Args:
      conditioner: a :class:`TokenConditioner`.
      token_shape: (T, D).
      reverse: process the tokens last to first.
      context: [B, K] context (class one-hots) or None.
      guidance: w, the guidance weight (0: none); a float, or a scalar tensor, which is
        always applied (the batch runs twice even where it is 0).
      cached: sample with the key/value cache (True) or the prefix recomputation.

    References:
      Zhai, Zhang, Gu, Bautista, Berthelot, Susskind, Goh. Normalizing Flows
        are Capable Generative Models (TarFlow). 2024.
      Kingma et al. Improved Variational Inference with Inverse
        Autoregressive Flow. NeurIPS 2016.
    """

    supported_event_ndims = (2,)

    def __init__(
        self,
        conditioner: TokenConditioner,
        token_shape: tuple[int, int],
        reverse: bool = False,
        context: tf.Tensor | None = None,
        guidance: float | tf.Tensor = 0.0,
        cached: bool = True,
        validate_args: bool = False,
        name: str = "token_autoregressive",
    ) -> None:
        parameters = dict(locals())
        shape = tuple(int(d) for d in token_shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(
                f"{name}: token_shape must be (tokens, features) of positive sizes, "
                f"got {tuple(token_shape)!r}."
            )
        # A tensor weight (a SavedModel input) is always applied: its caller picks the
        # unguided bijector with a tf.cond where it is 0, as the float form does here.
        guided = tf.is_tensor(guidance) or float(guidance) != 0.0
        if not tf.is_tensor(guidance):
            guidance = float(guidance)
        if guided and context is None:
            raise ValueError(
                f"{name}: guidance needs a context (a class-conditional model and "
                f"its labels), got guidance={guidance} and no context."
            )
        self._net = conditioner
        self._shape = shape
        self._reverse = bool(reverse)
        self._guidance = guidance
        self._guided = guided
        self._cached = bool(cached)
        if context is not None and guided:
            # One batch of 2B: the conditional half, then the null (all-zero) context.
            context = tf.concat([context, tf.zeros_like(context)], 0)
        self._context = context
        super().__init__(2, parameters=parameters, name=name, validate_args=validate_args)

    def _get_parameterization(self):
        # TFP's cache treats bijectors with equal parameters as one; the conditioner is
        # the same Keras layer whatever its weights, so equal parameters would answer
        # with results of earlier weights. Each instance is its own cache key.
        return id(self)

    def _validate(self, x, inverse):
        super()._validate(x, inverse)
        if x.shape.rank is not None and not x.shape[-2:].is_compatible_with(self._shape):
            raise ValueError(
                f"{self.name}: expected tokens of shape [..., {self._shape[0]}, "
                f"{self._shape[1]}], got shape {x.shape}."
            )

    # -- parameters ------------------------------------------------------

    def _twice(self, x: tf.Tensor) -> tf.Tensor:
        return tf.concat([x, x], 0) if self._guided else x

    def _params(self, raw: tf.Tensor, dtype) -> tuple[tf.Tensor, tf.Tensor]:
        """(μ, α) from raw parameters [..., 2D], guidance applied."""
        raw = tf.cast(raw, dtype)
        if self._guided:
            cond, null = tf.split(raw, 2, axis=0)
            w = tf.cast(self._guidance, dtype)
            shift_c, scale_c = tf.split(cond, 2, axis=-1)
            shift_u, scale_u = tf.split(null, 2, axis=-1)
            alpha_c, alpha_u = bounded_log_scale(scale_c), bounded_log_scale(scale_u)
            return shift_c + w * (shift_c - shift_u), alpha_c + w * (alpha_c - alpha_u)
        shift, scale = tf.split(raw, 2, axis=-1)
        return shift, bounded_log_scale(scale)

    def _all_params(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(μ, α) [B, T, D] of every token of x (processing order), in one pass."""
        xs = self._twice(x)
        batch = tf.shape(xs)[0]
        first = self._net.first(self._context, batch, x.dtype)
        if self._shape[0] > 1:
            seq = tf.cast(self._net.sequence(xs[:, :-1], self._context), x.dtype)
            raw = tf.concat([tf.cast(first, x.dtype)[:, None], seq], axis=1)
        else:
            raw = tf.cast(first, x.dtype)[:, None]
        return self._params(raw, x.dtype)

    # -- directions -------------------------------------------------------

    def _order(self, x: tf.Tensor) -> tf.Tensor:
        return tf.reverse(x, axis=[-2]) if self._reverse else x

    def _flat(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """x as [B, T, D] in processing order, and its batch shape."""
        batch = tf.shape(x)[:-2]
        return self._order(tf.reshape(x, [-1, *self._shape])), batch

    def _unflat(self, x: tf.Tensor, batch: tf.Tensor) -> tf.Tensor:
        return tf.reshape(self._order(x), tf.concat([batch, self._shape], 0))

    def _forward_and_log_det(self, x):
        x, batch = self._flat(x)
        shift, alpha = self._all_params(x)
        z = (x - shift) * tf.exp(-alpha)
        log_det = -tf.reduce_sum(alpha, axis=[-2, -1])
        return self._unflat(z, batch), tf.reshape(log_det, batch)

    def _inverse_and_log_det(self, z):
        z, batch = self._flat(z)
        x, log_det = (self._inverse_cached if self._cached else self._inverse_uncached)(z)
        return self._unflat(x, batch), tf.reshape(log_det, batch)

    def _put(self, buf: tf.Tensor, t: tf.Tensor, token: tf.Tensor) -> tf.Tensor:
        """buf [B, T, D] with token t (still zero) set to ``token`` [B, D]."""
        hot = tf.one_hot(t, self._shape[0], dtype=buf.dtype)
        return buf + hot[None, :, None] * token[:, None, :]

    def _inverse_cached(self, z: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """T steps, each passing one token through the conditioner's key/value cache."""
        length = self._shape[0]
        batch = tf.shape(self._twice(z))[0]
        shift, alpha = self._params(self._net.first(self._context, batch, z.dtype), z.dtype)
        x0 = z[:, 0] * tf.exp(alpha) + shift
        buf = self._put(tf.zeros_like(z), tf.constant(0), x0)
        log_det = tf.reduce_sum(alpha, axis=-1)
        cache = self._net.initial_cache(batch, z.dtype)

        def body(i, x_prev, buf, log_det, cache):
            raw, cache = self._net.step(self._twice(x_prev), i, cache, self._context)
            shift, alpha = self._params(raw, z.dtype)
            x_next = tf.gather(z, i + 1, axis=1) * tf.exp(alpha) + shift
            return i + 1, x_next, self._put(buf, i + 1, x_next), log_det + tf.reduce_sum(alpha, -1), cache

        # The loop's name marks the cached sampler in graphs and SavedModels (tests look for it).
        _, _, buf, log_det, _ = tf.while_loop(
            lambda i, *_: i < length - 1,
            body,
            (tf.constant(0), x0, buf, log_det, cache),
            name="cached_inverse",
        )
        return buf, log_det

    def _inverse_uncached(self, z: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """T steps, each rerunning the conditioner on the whole prefix (the reference)."""

        def body(t, buf, log_det):
            shift, alpha = self._all_params(buf)
            shift, alpha = tf.gather(shift, t, axis=1), tf.gather(alpha, t, axis=1)
            x_t = tf.gather(z, t, axis=1) * tf.exp(alpha) + shift
            return t + 1, self._put(buf, t, x_t), log_det + tf.reduce_sum(alpha, -1)

        log_det = tf.zeros(tf.shape(z)[:1], z.dtype)
        _, buf, log_det = tf.while_loop(
            lambda t, *_: t < self._shape[0],
            body,
            (tf.constant(0), tf.zeros_like(z), log_det),
            name="uncached_inverse",
        )
        return buf, log_det
