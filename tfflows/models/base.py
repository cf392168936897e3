"""FlowModel: the Keras model behind every tfflows flow — the plan, its density, latents and samples.

The model is one job: it holds the flow (a :class:`~tfflows.models.plan.Plan`
of steps) and answers ``log_prob``, ``encode``, ``decode`` and ``sample``.
What it needs from elsewhere comes through public seams:

- ``model.spec`` (:class:`tfflows.data.DataSpec`): every rule about its inputs;
- :class:`~tfflows.training.fit.FlowTrainer`: ``compile``/``fit``/``evaluate``
  and the guarded training step; a model changes its loss only through
  :meth:`FlowModel.train_log_prob`;
- :class:`~tfflows.models.views.KerasViews`: ``summary``, ``plot``, ``as_functional``;
- :class:`~tfflows.models.persistence.SavedFlow`: atomic ``save`` and ``export``;
- :mod:`tfflows.distribution`: the live TFP distribution and bijector.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfflows.bijectors.multiscale import FlowChain
from tfflows.data.spec import DataSpec, unless_empty
from tfflows.distribution import FlowDistribution, LiveBijector
from tfflows.models.arguments import check_model_arguments, check_seed, constructor_config, initial_batch
from tfflows.models.persistence import SavedFlow
from tfflows.models.plan import Plan, build_bijector, build_steps, flow_layers, initialize_steps
from tfflows.models.plan import latent_shapes as plan_latent_shapes
from tfflows.models.sampling import check_sample_args, finish_samples, latent_noise
from tfflows.models.views import KerasViews
from tfflows.reversible import build_bijector as build_run_bijector
from tfflows.reversible import check_backprop
from tfflows.training.fit import FlowTrainer
from tfflows.training.step import NonFiniteGuard, StepMean
from tfflows.typing import Context, Seed, TensorLike

tfd = tfp.distributions

__all__ = ["FlowModel", "NonFiniteGuard"]

_LOG_2PI = math.log(2.0 * math.pi)


class FlowModel(FlowTrainer, KerasViews, SavedFlow, keras.Model):
    """A normalizing flow as a Keras model and a TFP distribution.

    Subclasses describe their steps (data → latent) in ``_make_steps`` and
    call ``_finish_init()``. The model offers ``log_prob(x)`` (= ``model(x)``),
    ``bits_per_dim(x)``, ``encode(x)`` / ``decode(z)`` between data and the
    flat latent (``split_latents`` cuts it per level), ``sample(n,
    temperature, seed)``, the live TFP ``.distribution`` and ``.bijector``,
    Keras training (``compile(optimizer=...)``, ``fit``: the loss is the mean
    NLL in nats, with ``bits_per_dim`` or ``nats_per_dim`` beside it),
    ``summary``, ``plot``, ``save`` and ``export``.

    Conditional models take ``num_classes`` (integer labels) or
    ``context_dim`` (float vectors); ``fit`` reads them from ``(x, labels)``
    batches. The flow runs in the dtype policy's variable dtype
    (:attr:`flow_dtype`); under ``"mixed_bfloat16"`` / ``"mixed_float16"``
    only the conditioner networks compute in low precision, and
    ``mixed_float16`` wraps the optimizer in a ``LossScaleOptimizer``.

    Args:
      event_shape: shape of one example, (H, W, C) or (D,).
      num_classes: number of classes for a class-conditional model.
      context_dim: size of a float context vector for a conditional model.
      dtype: a dtype policy (name or ``keras.DTypePolicy``); the global policy when None.
      backprop: what ``log_prob``'s gradient keeps (see :mod:`tfflows.reversible`):
        ``"store"`` every activation, ``"recompute"`` each step's input, or
        ``"reversible"`` nothing per step (memory then does not grow with depth).
      validate_args: check values, pixel levels and contexts inside graphs too
        (``tf.debugging`` asserts), as TFP's ``validate_args``; eager calls
        always check them. Off by default for speed.
    """

    num_bits: int | None = None
    """Bits per pixel of the data an image model scores as levels in [0, 2^num_bits); None otherwise."""

    @property
    def data_kind(self) -> str:
        """What one example is: ``"image"`` [H, W, C], ``"vector"`` [D] or ``"sequence"`` [T, D].

        Image models take pixels even when they work on tokens inside
        (TarFlow, Jet); a subclass whose data are sequences says so here.
        """
        return "image" if len(self.event_shape) == 3 else "vector"

    bounded_levels = False
    """True for a flow defined only for pixel levels in [0, 2^num_bits) (RealNVP's logit)."""

    def __init__(
        self,
        event_shape: Sequence[int],
        num_classes: int | None = None,
        context_dim: int | None = None,
        backprop: str = "store",
        validate_args: bool = False,
        **kwargs: Any,
    ) -> None:
        # The model's inputs keep their precision: a mixed policy must not round pixels to bfloat16.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.backprop = check_backprop(type(self).__name__, backprop)
        self.validate_args = validate_args
        event_shape = check_model_arguments(
            type(self).__name__,
            self.flow_dtype,
            self.dtype_policy.name,
            event_shape,
            num_classes,
            context_dim,
            validate_args,
        )
        self.event_shape = event_shape
        self.num_classes = None if num_classes is None else int(num_classes)
        self.context_dim = None if context_dim is None else int(context_dim)
        self.num_dims = int(np.prod(event_shape))
        self.loss_tracker = StepMean(name="loss", dtype=self.flow_dtype)
        # Named when the subclass has said whether it models pixel levels (_finish_init).
        self.bpd_tracker: StepMean | None = None
        self.nonfinite_steps = self.add_weight(
            name="nonfinite_steps",
            shape=(),
            dtype="int32",
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",
        )
        self.stopped_on_nonfinite = False
        self._spec: DataSpec | None = None

    # -- construction -----------------------------------------------------

    def _make_steps(self) -> list:
        raise NotImplementedError

    def _finish_init(self) -> None:
        """Subclasses call this at the end of ``__init__``: creates every weight."""
        check_seed(type(self).__name__, getattr(self, "seed", 0))  # the steps' permutations use it
        self.bpd_tracker = StepMean(name=self.per_dim_metric, dtype=self.flow_dtype)
        self._plan = Plan(self._make_steps())
        check_backprop(type(self).__name__, self.backprop, self._plan.steps)
        self.flow_layers = flow_layers(self._plan.steps)
        for layer in self.flow_layers:
            # Built below, so the conditioners they create take this policy too.
            layer.dtype_policy = self.dtype_policy
        x = tf.zeros((1, *self.event_shape), self.flow_dtype)
        context = None if not self.is_conditional else tf.zeros((1, self.context_size), self.flow_dtype)
        self._build_layers(self._plan.steps, x, context)
        self.built = True

    def _build_layers(self, steps: list, x: tf.Tensor, context: tf.Tensor | None) -> None:
        build_steps(steps, x, context)

    def build(self, input_shape: Any = None) -> None:
        # Every weight is created in __init__; Keras may still call build.
        self.built = True

    @property
    def plan(self) -> Plan:
        """The flow's steps, data → latent (:class:`tfflows.models.plan.Plan`)."""
        return self._plan

    @property
    def spec(self) -> DataSpec:
        """The data contract (:class:`tfflows.data.DataSpec`): shapes, pixels, contexts, batches."""
        if self._spec is None:
            self._spec = DataSpec(
                owner=type(self).__name__,
                event_shape=tuple(self.event_shape),
                data_kind=self.data_kind,
                num_bits=self.num_bits,
                num_classes=self.num_classes,
                context_dim=self.context_dim,
                dtype=self.flow_dtype,
                bounded_levels=self.bounded_levels,
                validate_args=self.validate_args,
            )
        return self._spec

    @property
    def flow_dtype(self) -> str:
        """The dtype of the data path, log-dets, log_prob and loss: the policy's variable dtype."""
        return self.dtype_policy.variable_dtype

    @property
    def is_conditional(self) -> bool:
        """Whether the model takes a context (``num_classes`` or ``context_dim``)."""
        return self.num_classes is not None or self.context_dim is not None

    @property
    def context_size(self) -> int | None:
        """Width of the context the flow sees: ``num_classes`` (one-hot) or ``context_dim``."""
        return self.num_classes if self.num_classes is not None else self.context_dim

    @property
    def models_pixel_levels(self) -> bool:
        """True for image models of ``num_bits``-bit pixel levels (bits/dim is their unit)."""
        return self.spec.models_pixel_levels

    @property
    def per_dim_metric(self) -> str:
        """``"bits_per_dim"`` for pixel levels, ``"nats_per_dim"`` for continuous data."""
        return self.spec.per_dim_metric

    # -- the flow as TFP objects -----------------------------------------

    def flow(self, context: Context = None, *, batch: int | None = None) -> FlowChain:
        """The data → latent bijector built from the current weights (for ``batch`` examples, if given)."""
        return build_bijector(self._plan.steps, self.spec.context(context, batch))

    def bijector_for(self, context: Context = None) -> LiveBijector:
        """The latent → data bijector, live: every call reads the current weights.

        A batch of contexts gives it their batch shape (see :meth:`distribution_for`).
        """
        return LiveBijector(self, context)

    @property
    def bijector(self) -> LiveBijector:
        """The latent → data bijector (live); conditional models use :meth:`bijector_for`."""
        return self.bijector_for(None)

    @property
    def base_distribution(self) -> tfp.distributions.Distribution:
        """Standard normal on the flat latent of size ``num_dims``."""
        zero, one = tf.constant(0.0, self.flow_dtype), tf.constant(1.0, self.flow_dtype)
        return tfd.Sample(tfd.Normal(zero, one), sample_shape=[self.num_dims])

    def distribution_for(self, context: Context = None) -> FlowDistribution:
        """The model as a live TFP ``TransformedDistribution`` (:class:`tfflows.FlowDistribution`).

        Every call reads the current weights, and ``trainable_variables`` are
        the model's. For a conditional model the contexts set the batch
        shape: labels ``[B]`` (or vectors ``[B, C]``) give batch shape
        ``[B]``, so ``sample()`` draws one example per context and
        ``sample(n)`` has shape ``[n, B, *event_shape]``; one label (or one
        vector ``[C]``) gives batch shape ``[]``.
        """
        return FlowDistribution(self, context)

    @property
    def distribution(self) -> FlowDistribution:
        """The model as a live TFP distribution over data; conditional models use distribution_for."""
        return self.distribution_for(None)

    # -- scoring, encoding, sampling -------------------------------------

    def base_log_prob(self, z: tf.Tensor) -> tf.Tensor:
        """log N(z; 0, I) of flat latents ``[batch, num_dims]``, shape [batch]."""
        return -0.5 * tf.reduce_sum(tf.square(z), axis=-1) - 0.5 * self.num_dims * _LOG_2PI

    def flow_log_prob(self, x: tf.Tensor, context: Context = None) -> tf.Tensor:
        """log p(x) = log N(f(x)) + log|det ∂f/∂x| of data the spec has checked, shape [batch].

        ``x`` is already in :attr:`flow_dtype` (``spec.check_x``); nothing
        is checked here, so callers with their own rules (the TFP
        distribution, the training step) share the one change of variables.
        """
        ctx = self.spec.context(context, batch=x.shape[0])
        if self.backprop == "store":
            flow = build_bijector(self._plan.steps, ctx)
        else:
            flow = build_run_bijector(self._plan.steps, ctx, self.backprop)

        def compute() -> tf.Tensor:
            z, log_det = flow.forward_and_log_det(x)
            return self.base_log_prob(z) + log_det

        return unless_empty(x, compute, (), self.flow_dtype)

    def log_prob(self, x: TensorLike, context: Context = None) -> tf.Tensor:
        """log p(x) in the units of the data, shape [batch] (a batch of 0 gives shape [0]).

        Image models with ``num_bits`` take dequantized pixel levels in [0, 2^num_bits). Eagerly,
        inf or NaN values and levels out of that range raise ``ValueError``; inside a graph
        (``tf.function``, ``fit``, XLA) they are not checked: inf or NaN give NaN, and levels out
        of range the model's density there (NaN for RealNVP, whose logit needs values inside the
        range). The exported SavedModel checks both.

        They also take integer pixels (uint8, uint16, int32, ...), scored as the SavedModel's
        ``log_prob`` scores them: reduced to ``num_bits`` as k = floor(x / 2^(b − num_bits)), b the
        dtype's bit depth (see :func:`tfflows.data.integer_pixel_bits`: 8 for uint8, 16 for
        uint16), at the bin centre k + ½. Eagerly, pixels outside 0..2^b − 1 raise ``ValueError``.
        """
        x = self.spec.check_x(x, levels=True)
        return self.spec.check_result(self.flow_log_prob(x, context), "log-density", x)

    def train_log_prob(self, x: TensorLike, context: Context, seed: tf.Tensor) -> tf.Tensor:
        """The per-example log-likelihood a training step maximises: the seam for a model's own loss.

        The default: integer pixels dequantized with fresh U[0, 1) noise from
        the stateless ``seed`` (new every step; see
        :func:`tfflows.training.step.step_seed`), float data as they come,
        then :meth:`log_prob`'s change of variables. A model whose training
        differs (TarFlow's noise and label dropout, a variational
        dequantization) overrides this one method; the guarded step, the
        loss under ``tf.distribute`` and the metrics stay the same.
        """
        return self.flow_log_prob(self.spec.check_x(x, levels=True, seed=seed), context)

    def bits_per_dim(self, x: TensorLike, context: Context = None) -> tf.Tensor:
        """−log₂ p(x) / D, shape [batch]; exact for dequantized pixel levels."""
        return -self.log_prob(x, context) / (self.num_dims * math.log(2.0))

    def call(
        self, x: TensorLike, context: Context = None, training: Any = None, seed: Any = None
    ) -> tf.Tensor:
        if training and seed is not None:  # the training step's call: Keras turns dropout on inside
            return self.train_log_prob(x, context, seed)
        return self.log_prob(x, context)

    def encode(self, x: TensorLike, context: Context = None) -> tf.Tensor:
        """The flat latent z = f(x), shape [batch, num_dims], every level included.

        Eagerly, inf or NaN in ``x`` raise ``ValueError`` (in a graph they give
        NaN latents). Pixel levels are not range-checked here, so the
        model's own samples, which may leave [0, 2^num_bits), encode back.
        """
        x = self.spec.check_x(x, levels=self.spec.bounded_levels)
        flow = self.flow(context, batch=x.shape[0])
        z = unless_empty(x, lambda: flow.forward(x), (self.num_dims,), self.flow_dtype)
        return self.spec.check_result(z, "latent", x)

    def decode(self, z: TensorLike, context: Context = None) -> tf.Tensor:
        """x = f⁻¹(z) for flat latents z of shape [batch, num_dims].

        Eagerly, inf or NaN latents raise ``ValueError`` (in a graph they give NaN).
        """
        return self._decode(self.spec.check_z(z), context)

    def _decode(self, z: tf.Tensor, context: Any = None) -> tf.Tensor:
        flow = self.flow(context, batch=z.shape[0])
        return unless_empty(z, lambda: flow.inverse(z), self.event_shape, self.flow_dtype)

    def sample(
        self,
        num_samples: int,
        temperature: float = 1.0,
        seed: Seed = None,
        context: Any = None,
        clip_latent: float | None = None,
        clip_output: bool = False,
    ) -> tf.Tensor:
        """Draws ``num_samples`` examples (0 gives an empty batch); ``temperature`` scales the base.

        x = f⁻¹(z) with z = clip(temperature · ε, −c, c), ε ~ N(0, I) and
        c = ``clip_latent`` (no clipping when None). With a ``seed`` (an int,
        or TFP's stateless seed of two integers) the draw is deterministic.
        For a class-conditional model ``context`` is one label for all
        samples or one per sample.

        ``clip_latent`` is for models whose inverse overflows on the tails of
        the base (samples with inf or NaN, reported with a warning and as
        ``nonfinite_sample_fraction`` by :class:`tfflows.callbacks.SampleCheck`):
        clipping every latent entry to [−c, c] keeps the decoder where it was
        trained, e.g. ``clip_latent=2.0``, at the price of samples that no
        longer follow the model's distribution exactly.

        ``clip_output`` (image models) clamps every pixel into the data's range
        [0, 2ⁿ): inf to the nearer end and NaN to 0, so the result is always a
        drawable image; the warning about non-finite samples still says how
        many were repaired. Clipping the latent keeps more of the image the
        model meant; clipping the output is the guarantee.
        """
        num_samples, temperature, clip_latent = check_sample_args(
            self.spec, num_samples, temperature, clip_latent, clip_output
        )
        z = latent_noise(self.spec, num_samples, seed) * temperature
        if clip_latent is not None:
            z = tf.clip_by_value(z, -clip_latent, clip_latent)
        # One label (or one context vector) stands for every sample.
        context = self.spec.contexts_for_samples(context, num_samples)
        # Not decode: an overflowing temperature gets finish_samples' warning, not a ValueError.
        x = self._decode(self.spec.check_z(z, values=False), context)
        return finish_samples(self.spec, x, temperature, clip_output)

    @property
    def sample_signature_options(self) -> dict[str, dict[str, Any]]:
        """The exported ``sample`` signature's inputs beyond the shared ones (none; see TarFlow)."""
        return {}

    def decode_with_options(self, z: TensorLike, context: Context = None, **options: tf.Tensor) -> tf.Tensor:
        """:meth:`decode` with the model's own sampling options as tensors (exported graphs)."""
        return self.decode(z, context)

    def split_latents(self, z: TensorLike) -> list[tf.Tensor]:
        """Cuts a flat latent into its levels, each in its own [batch, H, W, C] shape."""
        z = self.spec.check_z(z)
        out, offset = [], 0
        for shape in self.latent_shapes:
            size = int(np.prod(shape))
            out.append(tf.reshape(z[:, offset : offset + size], (-1, *shape)))
            offset += size
        return out

    @property
    def latent_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of the latent pieces in the order they sit in the flat latent."""
        return plan_latent_shapes(self.plan.steps, self.event_shape)

    # -- data-dependent initialisation (ActNorm, Standardize) -------------

    @property
    def is_initialized(self) -> bool:
        """True when every data-initialised step (ActNorm, Standardize) has been set from data."""
        return all(layer.is_initialized for layer in self.flow_layers if layer.needs_data_init)

    def initialize(self, data: Any, num_batches: int = 1, force: bool = False) -> int:
        """Initialises every ActNorm and Standardize step from data: up to ``num_batches`` batches.

        ``data`` is a tensor or array of examples, or a ``tf.data.Dataset``
        of batches (``x``, ``(x, context)`` or dicts as ``fit`` takes them;
        integer pixels count at their bin centres). Does nothing when already
        initialised (saved models stay as they were) unless ``force=True``.
        Standardize takes its statistics from all the examples given: pass
        the whole training array for exact ones. Returns the number of
        steps initialised.
        """
        x, context = initial_batch(self.spec, data, num_batches)  # checked even when nothing needs it
        if self.is_initialized and not force:
            return 0
        return initialize_steps(self.plan.steps, x, context, force)

    def get_config(self) -> dict[str, Any]:
        """Keras's config plus what every flow takes: ``event_shape``, the conditioning, ``backprop``.

        Subclasses add their own arguments only.
        """
        return {
            **super().get_config(),
            "event_shape": list(self.event_shape),
            "num_classes": self.num_classes,
            "context_dim": self.context_dim,
            "backprop": self.backprop,
            "validate_args": self.validate_args,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> FlowModel:
        """A model from :meth:`get_config`; configs saved before an argument's rename load too."""
        return super().from_config(constructor_config(cls, config), custom_objects)
