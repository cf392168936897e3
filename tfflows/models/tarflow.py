"""TarFlow (Zhai et al. 2024): a transformer autoregressive flow over image patches."""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator, Sequence
from typing import Any

import keras
import tensorflow as tf

from tfflows.bijectors.base import check_positive_ints
from tfflows.bijectors.multiscale import FlowChain
from tfflows.bijectors.patchify import FlattenTokens, Patchify
from tfflows.bijectors.preprocess import ScalePixels
from tfflows.data.spec import unless_empty
from tfflows.deprecation import old_argument_names
from tfflows.layers.base import FlowLayer
from tfflows.layers.tarflow import TarFlowBlockLayer
from tfflows.layers.transformer import check_heads
from tfflows.models.base import FlowModel
from tfflows.models.registry import ModelEntry, register_model
from tfflows.typing import Context, Seed, TensorLike

__all__ = ["TarFlow", "NOISES"]

NOISES = ("uniform", "gaussian")


@keras.saving.register_keras_serializable(package="tfflows")
@old_argument_names({"num_blocks": "num_steps", "num_layers": "depth"})
class TarFlow(FlowModel):
    """TarFlow: patches as tokens, then blocks of causal-transformer autoregressive maps.

    Data → latent, for pixel levels x ∈ [0, 2ⁿ):

    1. scale to [−½, ½): x / 2ⁿ − ½ (log-det −D·n·ln 2, as Glow, so
       ``log_prob`` is in the units of the data and bits/dim are exact);
    2. patchify: [H, W, C] → T = (H/p)(W/p) tokens of p²C entries (log-det 0);
    3. ``num_steps`` × :class:`~tfflows.layers.TarFlowBlockLayer`:
       z_t = (x_t − μ_t(x_<t)) · exp(−α_t(x_<t)), log-det −Σα, every token in
       one pass; the blocks alternate the token order (odd blocks reversed);
    4. the tokens flattened into one latent of D = H·W·C entries, standard normal.

    Sampling inverts each block token by token (T sequential steps) with a
    key/value cache, inside ``tf.while_loop``, so it runs in ``tf.function``,
    XLA and the exported SavedModel; ``sample(..., cached=False)`` reruns the
    whole prefix at every step instead (the reference).

    Training noise (``noise``):

    - ``"uniform"`` (default): the data are used as given. Fed uniformly
      dequantized levels (k + u, u ~ U[0, 1), as tfflows' pipelines do),
      the loss is the exact discrete bits/dim bound.
    - ``"gaussian"``: ``fit`` adds N(0, σ²) noise to every float batch,
      σ = ``noise_std`` on the data scaled to [−1, 1] (the paper's 0.05),
      i.e. σ·2ⁿ/2 in pixel levels. The reported loss and bits/dim are then
      those of the noisy data: not an exact discrete bits/dim. Samples are
      of the noisy data too; ``sample(..., denoise=True)`` (or
      :meth:`denoise`) takes one score step x + σ²∇ₓ log p(x) back.

    Class-conditional models (``num_classes``) add a class embedding in
    every block. ``fit`` drops each label with probability
    ``label_dropout`` (the all-zero one-hot, the null class), so the model
    also learns the unconditional density; ``sample(..., guidance=w)`` then
    combines the two as (1 + w)·p(class) − w·p(null) for the shift and the
    log-scale of every token.

    Args:
      event_shape: (H, W, C); H and W divisible by ``patch_size``.
      patch_size: p, the side of a patch.
      num_steps: flow blocks (the paper: 8).
      depth: transformer blocks per flow block (the paper: 8).
      width: transformer width (the paper: 768 to 1024).
      heads: attention heads; must divide ``width``.
      mlp_ratio: MLP hidden size as a multiple of ``width``.
      num_bits: bits per pixel of the data.
      num_classes / context_dim: make the model conditional (``label_dropout`` and
        ``guidance`` use the null context, all zeros).
      noise: ``"uniform"`` or ``"gaussian"`` (see above).
      noise_std: σ of the Gaussian noise on the [−1, 1] scale.
      label_dropout: probability that ``fit`` replaces a label by the null class.
      num_blocks, num_layers: deprecated old names of ``num_steps`` and ``depth``.

    References:
      Zhai, Zhang, Gu, Bautista, Berthelot, Susskind, Goh. Normalizing Flows
        are Capable Generative Models. 2024. arXiv:2412.06329.
      Ho, Salimans. Classifier-Free Diffusion Guidance. 2022.
    """

    def __init__(
        self,
        event_shape: Sequence[int] = (28, 28, 1),
        patch_size: int = 4,
        num_steps: int = 4,
        depth: int = 2,
        width: int = 64,
        heads: int = 4,
        mlp_ratio: int = 4,
        num_bits: int = 8,
        num_classes: int | None = None,
        context_dim: int | None = None,
        noise: str = "uniform",
        noise_std: float = 0.05,
        label_dropout: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(event_shape, num_classes=num_classes, context_dim=context_dim, **kwargs)
        name = type(self).__name__
        if len(self.event_shape) != 3:
            raise ValueError(
                f"{name}: event_shape must be (height, width, channels), got {tuple(event_shape)!r}."
            )
        check_positive_ints(
            name, patch_size=patch_size, num_steps=num_steps, depth=depth, mlp_ratio=mlp_ratio
        )
        check_heads(name, width, heads)
        h, w, c = self.event_shape
        if h % patch_size or w % patch_size:
            raise ValueError(
                f"{name}: height and width must be divisible by patch_size = {patch_size}, got {h}x{w}."
            )
        if noise not in NOISES:
            raise ValueError(f"{name}: noise must be one of {NOISES}, got {noise!r}.")
        if (
            isinstance(noise_std, bool)
            or not isinstance(noise_std, numbers.Real)
            or not 0 < noise_std < math.inf
        ):
            raise ValueError(f"{name}: noise_std must be a finite number > 0, got {noise_std!r}.")
        if (
            isinstance(label_dropout, bool)
            or not isinstance(label_dropout, numbers.Real)
            or not 0 <= label_dropout < 1
        ):
            raise ValueError(f"{name}: label_dropout must be in [0, 1), got {label_dropout!r}.")
        self.patch_size: int = patch_size
        self.num_steps: int = num_steps
        self.depth: int = depth
        self.width: int = width
        self.heads: int = heads
        self.mlp_ratio: int = mlp_ratio
        self.num_bits: int = num_bits
        self.noise: str = noise
        self.noise_std: float = float(noise_std)
        self.label_dropout: float = float(label_dropout)
        self.token_shape: tuple[int, int] = (
            (h // patch_size) * (w // patch_size),
            patch_size * patch_size * c,
        )
        self._inverse: dict[str, Any] = {"guidance": 0.0, "cached": True, "denoise": False}
        self._finish_init()

    def _make_steps(self) -> list:
        steps: list = [ScalePixels(self.num_bits, offset=-0.5), Patchify(self.event_shape, self.patch_size)]
        steps += [
            TarFlowBlockLayer(
                self.depth, self.width, self.heads, self.mlp_ratio, reverse=bool(i % 2), name=f"block_{i}"
            )
            for i in range(self.num_steps)
        ]
        steps.append(FlattenTokens(self.token_shape))
        return steps

    @property
    def level_noise_std(self) -> float:
        """σ of the training noise in pixel levels: noise_std · 2ⁿ / 2."""
        return self.noise_std * 2.0**self.num_bits / 2.0

    # -- the flow ---------------------------------------------------------

    def flow(
        self, context: Context = None, guidance: float = 0.0, cached: bool = True, batch: int | None = None
    ) -> FlowChain:
        """The data → latent bijector from the current weights.

        Args:
          context: class labels (or one-hots; an all-zero row is the null class).
          guidance: classifier-free guidance weight w of every block.
          cached: whether the inverse uses the key/value cache.
          batch: the number of examples, when known: the contexts must match it.
        """
        ctx = self.spec.context(context, batch)
        built = []
        for step in self._plan.steps:
            if isinstance(step, TarFlowBlockLayer):
                built.append(step.bijector(ctx, guidance=guidance, cached=cached))
            elif isinstance(step, FlowLayer):
                built.append(step.bijector(ctx))
            else:
                built.append(step)
        return FlowChain(built)

    @contextlib.contextmanager
    def _inverse_options(self, guidance: float, cached: bool, denoise: bool = False) -> Iterator[None]:
        name = type(self).__name__
        if (
            isinstance(guidance, bool)
            or not isinstance(guidance, numbers.Real)
            or not math.isfinite(guidance)
        ):
            raise ValueError(f"{name}: guidance must be a finite number, got {guidance!r}.")
        if guidance != 0 and not self.is_conditional:
            raise ValueError(
                f"{name}: guidance is for class-conditional models (num_classes), "
                f"got guidance={guidance} for an unconditional model."
            )
        if denoise and self.noise != "gaussian":
            raise ValueError(
                f"{name}: denoise is for models trained with noise='gaussian' (it "
                f"undoes that noise), got noise={self.noise!r}."
            )
        saved = self._inverse
        self._inverse = {"guidance": float(guidance), "cached": bool(cached), "denoise": bool(denoise)}
        try:
            yield
        finally:
            self._inverse = saved

    def _decode(self, z: tf.Tensor, context=None) -> tf.Tensor:
        options = self._inverse
        flow = self.flow(context, guidance=options["guidance"], cached=options["cached"])

        def compute():
            x = flow.inverse(z)
            return self._score_step(x, context) if options["denoise"] else x

        return unless_empty(z, compute, self.event_shape, self.flow_dtype)

    def decode(
        self, z: TensorLike, context: Context = None, guidance: float = 0.0, cached: bool = True
    ) -> tf.Tensor:
        """x = f⁻¹(z) for flat latents z [batch, D]; see :meth:`sample` for the options."""
        with self._inverse_options(guidance, cached):
            return super().decode(z, context)

    def sample(
        self,
        num_samples: int,
        temperature: float = 1.0,
        seed: Seed = None,
        context: Context = None,
        clip_latent: float | None = None,
        clip_output: bool = False,
        *,
        guidance: float = 0.0,
        denoise: bool = False,
        cached: bool = True,
    ) -> tf.Tensor:
        """Draws samples (see :meth:`FlowModel.sample`), with TarFlow's options.

        Args:
          guidance: classifier-free guidance weight w (conditional models):
            every token's shift and log-scale are (1 + w)·p(class) − w·p(null).
          denoise: one score step x + σ²∇ₓ log p(x) after the inverse
            (models trained with ``noise="gaussian"``); before any clipping.
          cached: key/value-cached sequential inverse (True) or the uncached
            reference that reruns the prefix at every token.
          clip_latent, clip_output: as :meth:`FlowModel.sample`.
        """
        with self._inverse_options(guidance, cached, denoise):
            return super().sample(num_samples, temperature, seed, context, clip_latent, clip_output)

    # -- serving (tfflows.export) -------------------------------------------

    @property
    def sample_signature_options(self) -> dict[str, dict[str, Any]]:
        """The exported ``sample`` signature's inputs beyond the scalars and labels.

        ``guidance`` (float32, class-conditional models) and ``denoise``
        (bool, models trained with ``noise="gaussian"``), each with the
        neutral value that gives the plain sample (0.0, False) as
        ``default`` and a ``description`` for the model card. Read by
        :func:`tfflows.export.export_saved_model`, which passes them to
        :meth:`decode_with_options`.
        """
        options: dict[str, dict[str, Any]] = {}
        if self.is_conditional:
            options["guidance"] = {
                "dtype": "float32",
                "default": 0.0,
                "description": "finite classifier-free guidance weight w: each token's shift and "
                "log-scale are (1 + w) p(label) - w p(null class); 0: no guidance",
            }
        if self.noise == "gaussian":
            options["denoise"] = {
                "dtype": "bool",
                "default": False,
                "description": "true: one score step x + s^2 grad log p(x) after sampling, "
                f"s = {self.level_noise_std:g} pixel levels (the training "
                "noise); false: the noisy sample",
            }
        return options

    def decode_with_options(
        self,
        z: TensorLike,
        context: Context = None,
        guidance: tf.Tensor | None = None,
        denoise: tf.Tensor | None = None,
        **options: tf.Tensor,
    ) -> tf.Tensor:
        """:meth:`decode` (cached) with the sampling options as tensors, for exported graphs.

        Where :meth:`sample` takes Python values, this takes scalar tensors
        and branches with ``tf.cond``: ``guidance`` w ≠ 0 runs the guided
        inverse, w = 0 the plain one; ``denoise`` true adds the score step.
        Either may be None (not offered). The results equal
        ``sample``/``decode`` with the same options.

        Raises:
          TypeError: an option other than ``guidance`` and ``denoise``.
        """
        if options:
            raise TypeError(
                f"{type(self).__name__}.decode_with_options: unexpected options "
                f"{sorted(options)}; TarFlow takes guidance and denoise."
            )
        z = self.spec.check_z(z)

        def inverse(w):
            return self.flow(context, guidance=w).inverse(z)

        def compute():
            if guidance is None:
                x = inverse(0.0)
            else:
                w = tf.convert_to_tensor(guidance)
                x = tf.cond(tf.not_equal(w, 0.0), lambda: inverse(w), lambda: inverse(0.0))
            if denoise is not None:
                x = tf.cond(
                    tf.convert_to_tensor(denoise),
                    lambda: self._score_step(x, context),
                    lambda: tf.identity(x),
                )
            return x

        return unless_empty(z, compute, self.event_shape, self.flow_dtype)

    # -- denoising ----------------------------------------------------------

    def _score_step(self, x: tf.Tensor, context) -> tf.Tensor:
        flow = self.flow(context)
        with tf.GradientTape() as tape:
            tape.watch(x)
            z, log_det = flow.forward_and_log_det(x)
            log_prob = self.base_log_prob(z) + log_det
        # Examples are independent: the gradient of the sum is each one's score.
        score = tape.gradient(log_prob, x)
        return x + self.level_noise_std**2 * score

    def denoise(self, x: TensorLike, context: Context = None) -> tf.Tensor:
        """x + σ²∇ₓ log p(x): one score step (Tweedie) undoing the Gaussian training noise.

        σ = :attr:`level_noise_std` in pixel levels. For models trained with
        ``noise="gaussian"``; ``x`` are (noisy) pixel levels, not range-checked.
        """
        if self.noise != "gaussian":
            raise ValueError(
                f"{type(self).__name__}: denoise is for models trained with "
                f"noise='gaussian', got noise={self.noise!r}."
            )
        x = self.spec.check_x(x)
        return unless_empty(x, lambda: self._score_step(x, context), self.event_shape, self.flow_dtype)

    # -- training -------------------------------------------------------------

    def augment(self, x: Any, context: Any, seed: tf.Tensor) -> tuple[tf.Tensor, Any]:
        """(x, context) as a training step sees them: levels plus TarFlow's noise, labels dropped.

        Integer pixels become levels by fresh U[0, 1) noise first (as every
        model trains), so ``noise="gaussian"`` adds N(0, σ²) to them too
        (σ = :attr:`level_noise_std`); such levels may leave [0, 2^num_bits),
        so their range is not checked. With ``label_dropout`` each label is
        replaced by the null class (an all-zero one-hot) with that
        probability. Both draws are stateless, keyed by ``seed``.
        """
        x = self.spec.check_x(x, levels=self.noise != "gaussian", seed=seed)
        if self.noise == "gaussian":
            noise_seed = tf.random.experimental.stateless_fold_in(seed, 1)
            x = x + tf.random.stateless_normal(
                tf.shape(x), seed=noise_seed, stddev=self.level_noise_std, dtype=x.dtype
            )
        if context is not None and self.num_classes is not None and self.label_dropout > 0:
            one_hot = self.spec.context(context)
            assert one_hot is not None  # a context was given
            keep_seed = tf.random.experimental.stateless_fold_in(seed, 2)
            draw = tf.random.stateless_uniform(tf.shape(one_hot)[:1], seed=keep_seed)
            keep = draw >= self.label_dropout
            context = one_hot * tf.cast(keep, one_hot.dtype)[:, None]
        return x, context

    def train_log_prob(self, x: Any, context: Any, seed: tf.Tensor) -> tf.Tensor:
        """The training log-likelihood: of :meth:`augment`'s batch (the loss seam of FlowModel)."""
        x, context = self.augment(x, context, seed)
        return self.flow_log_prob(x, context)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "patch_size": self.patch_size,
            "num_steps": self.num_steps,
            "depth": self.depth,
            "width": self.width,
            "heads": self.heads,
            "mlp_ratio": self.mlp_ratio,
            "num_bits": self.num_bits,
            "noise": self.noise,
            "noise_std": self.noise_std,
            "label_dropout": self.label_dropout,
        }


def _build(o: Any) -> TarFlow:
    options = {k: o.extra[k] for k in ("noise", "noise_std", "label_dropout") if o.extra.get(k) is not None}
    return TarFlow(
        o.event_shape,
        patch_size=o.extra.get("patch_size", 4),
        num_steps=o.num_steps or 4,
        depth=o.depth or 2,
        width=o.width,
        heads=o.extra.get("heads", 4),
        num_bits=o.image_num_bits,
        num_classes=o.num_classes,
        **options,
        **o.policy,
    )


register_model(
    ModelEntry(
        name="tarflow",
        data_kind="image",
        model_class=TarFlow,
        build=_build,
        summary="transformer autoregressive flow over patches (Zhai et al. 2024)",
        tiny=lambda **cond: TarFlow(
            (4, 4, 1), patch_size=2, num_steps=2, depth=1, width=8, heads=2, mlp_ratio=2, num_bits=5, **cond
        ),
    )
)
