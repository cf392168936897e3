"""FlowModel: the Keras model behind RealNVP, Glow and the vector flows."""

from __future__ import annotations

import inspect
import math
import numbers
import os
import warnings
import weakref
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from keras.src.trainers import compile_utils

from tfflows.bijectors.multiscale import FlowChain
from tfflows.data.pipeline import image_key, integer_pixel_bits, label_key, pixel_levels
from tfflows.distribution import FlowDistribution, LiveBijector, stateless_seed
from tfflows.guard import all_finite, check_finite_weights, finite_rows, tensor_values, update_stays_finite
from tfflows.io import atomic_dir, atomic_path
from tfflows.layers.convolution import xla_compiling
from tfflows.models.plan import Plan, build_bijector, build_steps, flow_layers, initialize_steps
from tfflows.models.plan import latent_shapes as plan_latent_shapes
from tfflows.reversible import build_bijector as build_run_bijector
from tfflows.reversible import check_backprop
from tfflows.training import clip_gradients

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["FlowModel", "NonFiniteGuard"]

_LOG_2PI = math.log(2.0 * math.pi)


class _StepMean(keras.metrics.Mean):
    """Mean over the applied training steps; NaN, not 0.0, while none was applied.

    A lower value is better (``_direction`` ``"down"``, as Keras marks its losses).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._direction = "down"

    def result(self):
        return tf.where(self.count > 0, super().result(), float("nan"))


class _Minimised(compile_utils.MetricsList):
    """Our trackers where Keras's ``MonitorCallback`` looks for a metric's direction.

    With ``mode="auto"``, EarlyStopping, ModelCheckpoint and ReduceLROnPlateau
    know only ``loss`` by name; for other names they read ``_direction`` of
    the metrics inside the model's metric containers (``CompileMetrics`` or
    ``MetricsList``), never of a bare metric in ``model.metrics``.
    """

    def result(self):
        return {m.name: m.result() for m in self.metrics}


class NonFiniteGuard(keras.callbacks.Callback):
    """Stops ``fit`` with a clear message when a step met a non-finite value.

    A step is skipped when its loss or a gradient is inf or NaN, or when its
    update would leave a weight or optimizer variable inf or NaN (the update
    is undone before the next step reads it): the weights stay finite, and
    this callback ends training at the end of that batch.

    Under a ``LossScaleOptimizer`` (``mixed_float16``) scaled gradients that
    overflow are not such a step: the optimizer halves its loss scale and
    skips the update, and training goes on. They stop training only at a
    loss scale of 1 or less, where the unscaled gradient itself is not finite.
    """

    def on_train_batch_end(self, batch, logs=None):
        count = int(keras.ops.convert_to_numpy(self.model.nonfinite_steps))
        if count > 0:
            self.model.stop_training = True
            self.model.stopped_on_nonfinite = True
            warnings.warn(
                f"tfflows: stopped training at batch {batch}: the loss, a gradient or the "
                "update was not finite, so that step's update was skipped and the weights "
                "were kept finite. Lower the learning rate, add warmup or gradient clipping "
                "(tfflows.make_optimizer), or check the data for values outside "
                "[0, 2**num_bits).",
                RuntimeWarning,
                stacklevel=2,
            )


class FlowModel(keras.Model):
    """A normalizing flow as a Keras model and a TFP distribution.

    Subclasses describe their steps (data → latent) in ``_make_steps``. The
    model then offers:

    - ``log_prob(x)``, ``bits_per_dim(x)`` and ``model(x)`` (= ``log_prob``);
    - ``encode(x)`` / ``decode(z)`` between data and the flat latent (every
      level of a multi-scale model; ``split_latents`` cuts it per level);
    - ``sample(n, temperature=1.0, seed=None)``;
    - ``.bijector`` (latent → data) and ``.distribution``, live TFP objects
      (:class:`tfflows.FlowDistribution`) that read the current weights;
    - training with ``compile(optimizer=...)`` and ``fit(data)``: the loss is
      the mean negative log-likelihood in nats, reported beside it per
      dimension as ``bits_per_dim`` for image models of pixel levels and as
      ``nats_per_dim`` for continuous (vector) data (both minimised by
      Keras's monitors without ``mode``); ``sample_weight`` weights each
      example's NLL; ActNorm and Standardize are initialised from the first
      batch when needed;
    - ``summary()``, ``as_functional()`` (for ``keras.utils.plot_model``),
      ``plot(path)`` and ``export(path)`` (Keras's ExportArchive, serving
      ``log_prob``).

    Conditional models take ``num_classes`` (integer labels) or
    ``context_dim`` (float context vectors); every conditioner and prior
    sees the context, and ``fit`` reads it from ``(x, labels)`` batches.

    Declared attributes that export, the CLI and the callbacks read instead
    of guessing from shapes: :attr:`data_kind` and :attr:`num_bits`.
    Dtype policies (``dtype=`` or Keras's global policy): the flow itself
    (data → latent, every log-det, the 1×1 convolutions' determinants and
    inverses, ActNorm, the priors, the base log-density and the loss) runs in
    the policy's variable dtype, :attr:`flow_dtype`: float64 for
    ``dtype="float64"``, float32 for ``"float32"`` and for the mixed policies.
    Under ``"mixed_bfloat16"`` or ``"mixed_float16"`` only the conditioner
    networks compute in bfloat16 / float16. Every step the model builds
    takes the model's policy. Under ``"mixed_float16"`` ``compile`` wraps the
    optimizer in ``keras.optimizers.LossScaleOptimizer``.

    Args:
      event_shape: shape of one example, (H, W, C) or (D,).
      num_classes: number of classes for a class-conditional model.
      context_dim: size of a float context vector for a conditional model.
      dtype: a dtype policy (name or ``keras.DTypePolicy``); the global policy when None.
      backprop: what ``log_prob``'s gradient keeps (see :mod:`tfflows.reversible`):
        ``"store"`` every activation (ordinary backprop), ``"recompute"`` each
        step's input, rerunning the step, or ``"reversible"`` nothing per step,
        inverting each step's output; memory then does not grow with depth.
    """

    DATA_KINDS = ("image", "vector", "sequence")

    num_bits: int | None = None
    """Bits per pixel of the data an image model scores as levels in [0, 2^num_bits); None otherwise."""

    @property
    def data_kind(self) -> str:
        """What one example is: ``"image"`` [H, W, C], ``"vector"`` [D] or ``"sequence"`` [T, D].

        Image models take pixels even when they work on tokens inside
        (TarFlow, Jet); a subclass whose data are sequences says so here.
        """
        return "image" if len(self.event_shape) == 3 else "vector"

    def __init__(self, event_shape: Sequence[int], num_classes: int | None = None,
                 context_dim: int | None = None, backprop: str = "store", **kwargs: Any) -> None:
        # The model's inputs keep their precision: a mixed policy must not round pixels to bfloat16.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.backprop = check_backprop(type(self).__name__, backprop)
        if self.flow_dtype not in ("float32", "float64"):
            raise ValueError(
                f"{type(self).__name__}: expected a dtype policy whose variable dtype is float32 or "
                f"float64 (e.g. 'float32', 'float64', 'mixed_bfloat16', 'mixed_float16'), got "
                f"{self.dtype_policy.name!r} with variable dtype {self.flow_dtype}: a flow's "
                "inverse and log-det need at least float32; use a mixed policy for low precision.")
        event_shape = tuple(int(d) for d in event_shape)
        if len(event_shape) not in (1, 3) or min(event_shape) < 1:
            raise ValueError(
                f"{type(self).__name__}: event_shape must be (height, width, channels) or "
                f"(features,) of positive sizes, got {event_shape!r}.")
        if num_classes is not None and context_dim is not None:
            raise ValueError(f"{type(self).__name__}: give num_classes or context_dim, not both.")
        for key, value in (("num_classes", num_classes), ("context_dim", context_dim)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{type(self).__name__}: {key} must be a positive integer, got {value!r}.")
        self.event_shape = event_shape
        self.num_classes = num_classes
        self.context_dim = context_dim
        self.num_dims = int(np.prod(event_shape))
        self.loss_tracker = _StepMean(name="loss", dtype=self.flow_dtype)
        # Named when the subclass has said whether it models pixel levels (_finish_init).
        self.bpd_tracker = None
        self.nonfinite_steps = self.add_weight(
            name="nonfinite_steps", shape=(), dtype="int32", initializer="zeros", trainable=False,
            aggregation="only_first_replica")
        self.stopped_on_nonfinite = False

    # -- construction -----------------------------------------------------

    def _make_steps(self) -> list:
        raise NotImplementedError

    def _finish_init(self) -> None:
        """Subclasses call this at the end of ``__init__``: creates every weight."""
        self.bpd_tracker = _StepMean(name=self.per_dim_metric, dtype=self.flow_dtype)
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

    def _build_layers(self, steps, x, context):
        build_steps(steps, x, context)

    def build(self, input_shape=None):
        # Every weight is created in __init__; Keras may still call build.
        self.built = True

    @property
    def flow_dtype(self) -> str:
        """The dtype of the data path, log-dets, log_prob and loss: the policy's variable dtype."""
        return self.dtype_policy.variable_dtype

    @property
    def is_conditional(self) -> bool:
        """True when the model takes a context: class labels (``num_classes``) or vectors (``context_dim``)."""
        return self.num_classes is not None or self.context_dim is not None

    @property
    def context_size(self) -> int | None:
        """The number of classes, else the context vector's length; None for an unconditional model."""
        return self.num_classes if self.num_classes is not None else self.context_dim

    # -- context and input checks ----------------------------------------

    def _context(self, context) -> tf.Tensor | None:
        name = type(self).__name__
        if not self.is_conditional:
            if context is not None:
                raise ValueError(f"{name}: this model is not conditional, but a context was given.")
            return None
        if context is None:
            what = "class labels" if self.num_classes else f"context vectors of size {self.context_dim}"
            raise ValueError(f"{name}: this model is conditional; pass context= ({what}).")
        context = tf.convert_to_tensor(context)
        if self.num_classes is not None:
            if context.dtype.is_floating and context.shape.rank == 2 and context.shape[-1] == self.num_classes:
                return tf.cast(context, self.flow_dtype)  # already one-hot
            if context.dtype.is_floating:
                raise ValueError(
                    f"{name}: expected integer class labels in 0..{self.num_classes - 1} "
                    f"(or one-hot [batch, {self.num_classes}]), got {context.dtype.name} "
                    f"of shape {context.shape}.")
            if context.shape.rank not in (None, 1):
                raise ValueError(f"{name}: expected labels of shape [batch], got shape {context.shape}.")
            labels = tf.cast(context, tf.int32)
            # tf.one_hot maps an out-of-range label to a zero vector without a word.
            if not tf.executing_eagerly():
                # In a graph the values come at run time: an InvalidArgumentError then.
                # (XLA compiles asserts away; jit-compiled steps skip this check.)
                in_range = tf.reduce_all((labels >= 0) & (labels < self.num_classes))
                check = tf.debugging.Assert(
                    in_range, [f"{name}: expected class labels in 0..{self.num_classes - 1}, got",
                               labels], summarize=16)
                with tf.control_dependencies([check]):
                    labels = tf.identity(labels)
            elif tf.size(labels) > 0:
                low, high = int(tf.reduce_min(labels)), int(tf.reduce_max(labels))
                if low < 0 or high >= self.num_classes:
                    raise ValueError(
                        f"{name}: expected class labels in 0..{self.num_classes - 1}, got labels "
                        f"from {low} to {high}.")
            return tf.one_hot(labels, self.num_classes, dtype=self.flow_dtype)
        if context.shape.rank != 2 or context.shape[-1] != self.context_dim:
            raise ValueError(
                f"{name}: expected context of shape [batch, {self.context_dim}], got {context.shape}.")
        return tf.cast(context, self.flow_dtype)

    def _check_x(self, x, what: str = "x", levels: bool = False, values: bool = True,
                 seed: tf.Tensor | None = None) -> tf.Tensor:
        """``x`` in :attr:`flow_dtype` after its dtype and shape checks; in eager mode its values too.

        Eagerly, inf or NaN values raise, and with ``levels`` so do pixel
        levels outside [0, 2^num_bits) of an image model. Inside a graph
        (``tf.function``, ``fit``) the values are not checked, so a training
        step pays nothing: inf or NaN give a NaN result, which ``fit``'s
        non-finite guard skips.

        Integer pixels given to an image model with ``num_bits`` become
        levels by :func:`tfflows.data.pixel_levels`, the exported SavedModel's
        rule: bin centres, or uniform noise from the stateless ``seed``.
        Eagerly, pixels outside their dtype's bit depth raise.
        """
        x = tf.convert_to_tensor(x)
        name = type(self).__name__
        pixels = x.dtype.is_integer and self.models_pixel_levels
        if not x.dtype.is_floating and not pixels:
            hint = (" Integer pixels are read by image models with num_bits."
                    if len(self.event_shape) == 3 else "")
            raise ValueError(f"{name}: {what} must be float32 or float64, got {x.dtype.name}.{hint}")
        k = len(self.event_shape)
        if x.shape.rank is not None and (
                x.shape.rank < k + 1 or not x.shape[-k:].is_compatible_with(self.event_shape)):
            hint = (" (one example without a batch axis? batch the data, e.g. dataset.batch(64))"
                    if x.shape.rank == k and x.shape.is_compatible_with(self.event_shape) else "")
            raise ValueError(
                f"{name}: expected {what} of shape [batch, {', '.join(map(str, self.event_shape))}], "
                f"got shape {x.shape}{hint}.")
        if pixels:
            return tf.cast(self._integer_levels(x, what, values, seed), self.flow_dtype)
        if values and tf.executing_eagerly():
            self._check_values(x, what, levels)
        return tf.cast(x, self.flow_dtype)

    def _integer_levels(self, x: tf.Tensor, what: str, check: bool = True, seed=None) -> tf.Tensor:
        """Integer pixels as float32 levels (:func:`tfflows.data.pixel_levels`): bin centres, or
        noisy with a ``seed``; with ``check``, pixels outside their dtype's bits raise eagerly."""
        bits = self._pixel_bits(x.dtype, what)
        if check and tf.executing_eagerly():
            self._check_pixels(x, what, bits)
        return pixel_levels(x, int(self.num_bits), noise=seed is not None, seed=seed)

    def _pixel_bits(self, dtype: tf.DType, what: str) -> int:
        """The bit depth of integer pixels of ``dtype`` (:func:`tfflows.data.integer_pixel_bits`)."""
        try:
            return integer_pixel_bits(dtype, int(self.num_bits))
        except ValueError as err:
            raise ValueError(f"{type(self).__name__}: {what}: {err}") from None

    def _check_pixels(self, x: tf.Tensor, what: str, bits: int) -> None:
        """Eager only: raises on integer pixels outside [0, 2^bits)."""
        if tf.size(x) == 0 or x.dtype in (tf.uint8, tf.uint16):
            return
        low, high = int(tf.reduce_min(x)), int(tf.reduce_max(x))
        if low < 0 or high >= 2 ** bits:
            raise ValueError(
                f"{type(self).__name__}: expected {what} as {bits}-bit pixels in 0..{2 ** bits - 1} "
                f"({x.dtype.name} pixels are read as the SavedModel's {bits}-bit input), got values "
                f"from {low} to {high}.")

    def _check_values(self, x: tf.Tensor, what: str, levels: bool = False) -> None:
        """Eager only: raises on inf or NaN, and on pixel levels out of range when ``levels``."""
        name = type(self).__name__
        if tf.size(x) == 0:
            return
        bad = int(tf.size(x)) - int(tf.reduce_sum(tf.cast(tf.math.is_finite(x), tf.int32)))
        if bad:
            raise ValueError(f"{name}: expected finite {what}, got {bad} inf or NaN values.")
        num_bits = getattr(self, "num_bits", None)
        if levels and len(self.event_shape) == 3 and num_bits is not None:
            low, high = float(tf.reduce_min(x)), float(tf.reduce_max(x))
            top = 2 ** int(num_bits)
            if low < 0 or high >= top:
                hint = (" (8-bit pixels given to a model of fewer bits? reduce them with "
                        "tfflows.data.make_dataset(..., num_bits=...))" if high >= top and high < 256
                        else "")
                raise ValueError(
                    f"{name}: expected {what} as pixel levels in [0, {top}) for num_bits={num_bits}, "
                    f"got values from {low:g} to {high:g}{hint}.")

    def _check_z(self, z, values: bool = True) -> tf.Tensor:
        z = tf.convert_to_tensor(z)
        if not z.dtype.is_floating or z.shape.rank is None or z.shape.rank < 2 or z.shape[-1] != self.num_dims:
            raise ValueError(
                f"{type(self).__name__}: expected latents of shape [batch, {self.num_dims}] "
                f"and a float dtype, got {z.dtype.name} of shape {z.shape}.")
        if values and tf.executing_eagerly():
            self._check_values(z, "latents")
        return tf.cast(z, self.flow_dtype)

    def _unless_empty(self, x: tf.Tensor, compute, empty_shape: Sequence[int]) -> tf.Tensor:
        """``compute()``, or an empty result of ``[0, *empty_shape]`` for a batch of 0.

        Eagerly every layer handles an empty batch itself (tfflows' ``Conv2D``
        works around TensorFlow's empty-batch convolution). In a graph whose
        batch size is not known to be positive when tracing, the layers may
        not see that it is empty (a concatenated context loses the static
        size, and Grappler removes any shape fix it proves an identity), so
        the flow runs inside a ``tf.cond`` on the batch size: a replica given
        no examples under ``tf.distribute`` gets an empty result and zero
        gradients. The cond costs one branch per call, not per layer.
        """
        if tf.executing_eagerly() or (x.shape.rank is not None and (x.shape[0] or 0) > 0):
            return compute()
        return tf.cond(tf.shape(x)[0] > 0, compute,
                       lambda: tf.zeros((0, *empty_shape), self.flow_dtype))

    # -- the flow as TFP objects -----------------------------------------

    def flow(self, context=None) -> FlowChain:
        """The data → latent bijector built from the current weights."""
        return build_bijector(self._plan.steps, self._context(context))

    def bijector_for(self, context=None) -> LiveBijector:
        """The latent → data bijector, live: every call reads the current weights.

        A batch of contexts gives it their batch shape (see :meth:`distribution_for`).
        """
        return LiveBijector(self, context)

    @property
    def bijector(self) -> LiveBijector:
        """The latent → data bijector (live); conditional models use :meth:`bijector_for`."""
        return self.bijector_for(None)

    @property
    def base_distribution(self) -> tfd.Distribution:
        """Standard normal on the flat latent of size ``num_dims``."""
        zero, one = tf.constant(0.0, self.flow_dtype), tf.constant(1.0, self.flow_dtype)
        return tfd.Sample(tfd.Normal(zero, one), sample_shape=[self.num_dims])

    def distribution_for(self, context=None) -> FlowDistribution:
        """The model as a live TFP distribution (:class:`tfflows.FlowDistribution`).

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

    def _base_log_prob(self, z):
        return -0.5 * tf.reduce_sum(tf.square(z), axis=-1) - 0.5 * self.num_dims * _LOG_2PI

    def log_prob(self, x, context=None) -> tf.Tensor:
        """log p(x) in the units of the data, shape [batch] (a batch of 0 gives shape [0]).

        Image models with ``num_bits`` take dequantized pixel levels in
        [0, 2^num_bits). Eagerly, inf or NaN values and levels out of that
        range raise ``ValueError``; inside a graph (``tf.function``, ``fit``,
        XLA) they are not checked: inf or NaN give NaN, and levels out of
        range the model's density there (NaN for RealNVP, whose logit needs
        values inside the range). The exported SavedModel checks both.

        They also take integer pixels (uint8, uint16, int32, ...), scored as
        the SavedModel's ``log_prob`` scores them: reduced to ``num_bits`` as
        k = floor(x / 2^(b − num_bits)), b the dtype's bit depth (see
        :func:`tfflows.data.integer_pixel_bits`: 8 for uint8, 16 for
        uint16), at the bin centre k + ½. Eagerly, pixels outside 0..2^b − 1
        raise ``ValueError``.
        """
        x = self._check_x(x, levels=True)
        if self.backprop == "store":
            flow = self.flow(context)
        else:
            flow = build_run_bijector(self._plan.steps, self._context(context), self.backprop)

        def compute():
            z, log_det = flow.forward_and_log_det(x)
            return self._base_log_prob(z) + log_det

        return self._unless_empty(x, compute, ())

    def bits_per_dim(self, x, context=None) -> tf.Tensor:
        """−log₂ p(x) / D, shape [batch]; exact for dequantized pixel levels."""
        return -self.log_prob(x, context) / (self.num_dims * math.log(2.0))

    def call(self, x, context=None, training=None):
        return self.log_prob(x, context)

    def encode(self, x, context=None) -> tf.Tensor:
        """The flat latent z = f(x), shape [batch, num_dims], every level included.

        Eagerly, inf or NaN in ``x`` raise ``ValueError`` (in a graph they give
        NaN latents). Pixel levels are not range-checked here, so the
        model's own samples, which may leave [0, 2^num_bits), encode back.
        """
        x = self._check_x(x)
        flow = self.flow(context)
        return self._unless_empty(x, lambda: flow.forward(x), (self.num_dims,))

    def decode(self, z, context=None) -> tf.Tensor:
        """x = f⁻¹(z) for flat latents z of shape [batch, num_dims].

        Eagerly, inf or NaN latents raise ``ValueError`` (in a graph they give NaN).
        """
        return self._decode(self._check_z(z), context)

    def _decode(self, z: tf.Tensor, context=None) -> tf.Tensor:
        flow = self.flow(context)
        return self._unless_empty(z, lambda: flow.inverse(z), self.event_shape)

    def sample(self, num_samples: int, temperature: float = 1.0, seed: Any = None,
               context=None, clip_latent: float | None = None, clip_output: bool = False) -> tf.Tensor:
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
        name = type(self).__name__
        if clip_output and (len(self.event_shape) != 3 or getattr(self, "num_bits", None) is None):
            raise ValueError(f"{name}: clip_output is for image models with num_bits (a data range to "
                             f"clamp to), got a model with event shape {self.event_shape}.")
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 0:
            raise ValueError(f"{name}: num_samples must be an integer >= 0, got {num_samples!r}.")
        if (isinstance(temperature, bool) or not isinstance(temperature, numbers.Real)
                or not math.isfinite(temperature) or temperature < 0):
            raise ValueError(f"{name}: temperature must be a finite number >= 0, got {temperature!r}.")
        if clip_latent is not None and (
                isinstance(clip_latent, bool) or not isinstance(clip_latent, numbers.Real)
                or not math.isfinite(clip_latent) or clip_latent <= 0):
            raise ValueError(f"{name}: clip_latent must be a finite number > 0 or None, "
                             f"got {clip_latent!r}.")
        seed = stateless_seed(seed, name)
        shape = (int(num_samples), self.num_dims)
        if seed is None:
            eps = tf.random.normal(shape, dtype=self.flow_dtype)
        else:
            eps = tf.random.stateless_normal(shape, seed=seed, dtype=self.flow_dtype)
        if context is not None and self.is_conditional:
            context = tf.convert_to_tensor(context)
            # One label (or one context vector) stands for every sample.
            if self.num_classes is not None and context.shape.rank == 0:
                context = tf.fill([shape[0]], tf.cast(context, tf.int32))
            elif self.context_dim is not None and context.shape.rank == 1:
                context = tf.tile(context[None], [shape[0], 1])
            if context.shape.rank and context.shape[0] not in (None, shape[0]):
                raise ValueError(f"{name}: expected {shape[0]} contexts (one per sample) or one, "
                                 f"got {context.shape[0]}.")
        z = eps * float(temperature)
        if clip_latent is not None:
            z = tf.clip_by_value(z, -float(clip_latent), float(clip_latent))
        # Not decode: an overflowing temperature gets the warning below, not a ValueError.
        x = self._decode(self._check_z(z, values=False), context)
        if tf.executing_eagerly():
            bad = int(shape[0] - tf.reduce_sum(tf.cast(finite_rows(x), tf.int32)))
            if bad:
                repaired = (" clip_output clamped them into the data range (NaN to 0)." if clip_output
                            else " sample(..., clip_output=True) clamps them into the data range.")
                warnings.warn(
                    f"{name}: {bad} of {shape[0]} samples at temperature {temperature} have inf or "
                    "NaN values (the inverse flow overflowed); a lower temperature or a longer "
                    "trained model avoids this." + repaired, RuntimeWarning, stacklevel=2)
        if clip_output:
            top = float(np.nextafter(np.float32(2.0 ** self.num_bits), np.float32(0.0)))
            x = tf.clip_by_value(tf.where(tf.math.is_nan(x), tf.zeros_like(x), x), 0.0, top)
        return x

    def split_latents(self, z) -> list[tf.Tensor]:
        """Cuts a flat latent into its levels, each in its own [batch, H, W, C] shape."""
        z = self._check_z(z)
        out, offset = [], 0
        for shape in self.latent_shapes:
            size = int(np.prod(shape))
            out.append(tf.reshape(z[:, offset:offset + size], (-1, *shape)))
            offset += size
        return out

    @property
    def latent_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of the latent pieces in the order they sit in the flat latent."""
        return plan_latent_shapes(self._plan.steps, self.event_shape)

    # -- data-dependent initialisation (ActNorm, Standardize) -------------

    @property
    def is_initialized(self) -> bool:
        """True when every data-initialised step (ActNorm, Standardize) has been set from data."""
        return all(layer.is_initialized for layer in self.flow_layers if layer.needs_data_init)

    def initialize(self, data, num_batches: int = 1, force: bool = False) -> int:
        """Data-dependent initialisation of every ActNorm and Standardize step from up to ``num_batches`` batches.

        ``data`` is a tensor or array of examples, or a ``tf.data.Dataset``
        of batches (``x``, ``(x, context)`` or dicts as ``fit`` takes them;
        integer pixels count at their bin centres). Does nothing when already
        initialised (saved models stay as they were) unless ``force=True``.
        Standardize takes its statistics from all the examples given: pass
        the whole training array for exact ones. Returns the number of
        steps initialised.
        """
        if self.is_initialized and not force:
            return 0
        if isinstance(data, tf.data.Dataset):
            xs, cs = [], []
            for batch in data.take(num_batches):
                x, c = self._unpack(batch)
                xs.append(x)
                cs.append(c)
            if not xs:
                raise ValueError(f"{type(self).__name__}: initialize got an empty dataset.")
            x = tf.concat(xs, 0)
            context = None if cs[0] is None else tf.concat(cs, 0)
        else:
            x, context = self._unpack(data)
        x = self._check_x(x, values=False)
        if not bool(tf.reduce_all(tf.math.is_finite(x))):
            # Statistics of such a batch would make every ActNorm weight NaN.
            raise ValueError(f"{type(self).__name__}: initialize got data with inf or NaN values; "
                             "ActNorm needs finite data to set its scale and bias.")
        return initialize_steps(self._plan.steps, x, self._context(context), force)

    # -- training ---------------------------------------------------------

    def _unpack(self, data):
        """(x, context) of a batch: ``x``, ``(x,)``, ``(x, labels[, weights])`` or a dict.

        A dict holds its examples under ``"image"`` (TFDS), ``"images"`` or
        ``"x"`` and its labels under ``"label"``, ``"labels"`` or
        ``"context"``. Labels are a conditional model's context; a plain
        model ignores them (but refuses an explicit ``"context"``).
        ``(dict, y[, weights])`` (how Keras passes ``fit(dict, sample_weight=w)``)
        reads the dict; ``y`` is the context only when the dict has no labels.
        """
        if isinstance(data, dict):
            key, lkey = image_key(data, type(self).__name__), label_key(data)
            keep = lkey is not None and (self.is_conditional or lkey == "context")
            return data[key], (data[lkey] if keep else None)
        if isinstance(data, (tuple, list)) and data and isinstance(data[0], dict):
            x, context = self._unpack(data[0])
            if context is None and self.is_conditional and len(data) > 1:
                context = data[1]
            return x, context
        if isinstance(data, (tuple, list)):
            if len(data) == 1:
                return data[0], None
            if len(data) in (2, 3):
                return data[0], (data[1] if self.is_conditional else None)
        return data, None

    @property
    def metrics(self):
        # Built per call, not kept as an attribute: an attribute would be walked into saves.
        # Named as its one metric, so metrics_names stays ["loss", per_dim_metric].
        return [self.loss_tracker, _Minimised([self.bpd_tracker], name=self.per_dim_metric)]

    @property
    def models_pixel_levels(self) -> bool:
        """True for image models of ``num_bits``-bit pixel levels (bits/dim is their unit)."""
        return len(self.event_shape) == 3 and getattr(self, "num_bits", None) is not None

    @property
    def per_dim_metric(self) -> str:
        """``"bits_per_dim"`` for pixel levels, ``"nats_per_dim"`` for continuous data."""
        return "bits_per_dim" if self.models_pixel_levels else "nats_per_dim"

    def _sample_weight(self, data, log_prob: tf.Tensor) -> tf.Tensor | None:
        """The batch's example weights as float32 [batch], or None when it has none.

        Keras passes ``fit(..., sample_weight=w)`` (and a dataset's
        ``(x, y, w)`` batches) as the third element of the batch. Weights must
        be finite and >= 0, one per example; eagerly a bad one raises
        ``ValueError``, in a graph an ``InvalidArgumentError`` (not under XLA,
        which compiles the check away).
        """
        if not isinstance(data, (tuple, list)) or len(data) != 3 or data[2] is None:
            return None
        name = type(self).__name__
        weight = tf.convert_to_tensor(data[2])
        if weight.shape.rank == 2 and weight.shape[-1] == 1:
            weight = weight[:, 0]
        if weight.shape.rank != 1 or not (weight.dtype.is_floating or weight.dtype.is_integer):
            raise ValueError(f"{name}: expected sample_weight of shape [batch] (one number per "
                             f"example), got {weight.dtype.name} of shape {weight.shape}.")
        weight = tf.cast(weight, tf.float32)
        what = f"{name}: expected sample_weight values that are finite and >= 0"
        if tf.executing_eagerly():
            bad = int(tf.reduce_sum(tf.cast(~(tf.math.is_finite(weight) & (weight >= 0)), tf.int32)))
            if bad:
                raise ValueError(f"{what}, got {bad} negative, inf or NaN values.")
            if weight.shape[0] != log_prob.shape[0]:
                raise ValueError(f"{name}: expected one sample_weight per example "
                                 f"({log_prob.shape[0]}), got {weight.shape[0]}.")
            return weight
        valid = tf.reduce_all(tf.math.is_finite(weight) & (weight >= 0))
        same = tf.equal(tf.size(weight), tf.size(log_prob))
        checks = [tf.debugging.Assert(valid, [what]),
                  tf.debugging.Assert(same, [f"{name}: expected one sample_weight per example"])]
        with tf.control_dependencies(checks):
            return tf.identity(weight)

    def _nll(self, data):
        """(loss, per-dim loss, loss to differentiate, total weight): the mean NLL of the global batch.

        With example weights wᵢ (``fit``'s ``sample_weight``) the loss is
        Σ wᵢ·nllᵢ / Σ wᵢ; without them every wᵢ is 1 and the total weight is
        the example count. A batch of total weight 0 has loss 0 (not NaN)
        and no gradient; ``train_step`` skips it.

        Under ``tf.distribute`` with several replicas each replica's share of
        the gradient is its weighted NLL sum over the global total weight, so
        the summed gradients are those of the global-batch mean even when the
        last batch splits unevenly (a replica may get no example at all:
        it adds nothing). The reported loss is that global mean on every replica.
        """
        x, context = self._unpack(data)
        log_prob = self.log_prob(x, context)
        weight = self._sample_weight(data, log_prob)
        if weight is None:
            local = tf.stack([-tf.reduce_sum(log_prob), tf.cast(tf.size(log_prob), log_prob.dtype)])
        else:
            weight = tf.cast(weight, log_prob.dtype)
            local = tf.stack([-tf.reduce_sum(weight * log_prob), tf.reduce_sum(weight)])
        ctx = tf.distribute.get_replica_context()
        if weight is None and (ctx is None or ctx.num_replicas_in_sync == 1):
            loss = -tf.reduce_mean(log_prob)
            scaled, count = loss, local[1]
        else:
            total = local
            if ctx is not None and ctx.num_replicas_in_sync > 1:
                total = tf.stop_gradient(ctx.all_reduce(tf.distribute.ReduceOp.SUM, local))
            count = total[1]
            loss = tf.math.divide_no_nan(total[0], count)
            scaled = tf.math.divide_no_nan(local[0], count)
        per_dim = loss / (self.num_dims * (math.log(2.0) if self.models_pixel_levels else 1.0))
        return loss, per_dim, scaled, count

    def _dequantized(self, data):
        """The training batch with integer pixels made levels by fresh U[0, 1) noise.

        The noise is stateless, keyed by the optimizer's step count, the
        count of skipped (non-finite) steps and the replica, so it is new
        every step, skipped steps included, and on every replica, and runs
        the same under ``tf.function``, XLA and ``tf.distribute``. Float
        batches come back unchanged.
        """
        x, context = self._unpack(data)
        if not (self.models_pixel_levels and tf.convert_to_tensor(x).dtype.is_integer):
            return data
        ctx = tf.distribute.get_replica_context()
        replica = 0 if ctx is None else ctx.replica_id_in_sync_group
        skipped = tf.cast(tf.convert_to_tensor(self.nonfinite_steps), tf.int64)
        seed = tf.stack([tf.cast(tf.convert_to_tensor(self.optimizer.iterations), tf.int64),
                         tf.cast(replica, tf.int64) + skipped * (1 << 16)])
        rest = tuple(data[2:]) if isinstance(data, (tuple, list)) else ()
        return (self._check_x(x, values=False, seed=seed), context, *rest)

    def train_step(self, data):
        """One guarded training step: dequantize, NLL (weighted by any sample weights), gradients and an update that is undone if it leaves an inf or NaN."""
        data = self._dequantized(data)
        optimizer = self.optimizer
        with tf.GradientTape() as tape, xla_compiling(self.jit_compile):
            loss, bpd, scaled, weight_sum = self._nll(data)
            # The loss scale of a LossScaleOptimizer (mixed_float16); the loss itself otherwise.
            scaled = optimizer.scale_loss(scaled)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        finite_loss, finite_grads = all_finite([loss]), all_finite(grads)
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            # ReduceOp has only SUM and MEAN: count the replicas that saw a non-finite value.
            flags = tf.cast(tf.stack([finite_loss, finite_grads]), tf.float32)
            bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - flags)
            finite_loss, finite_grads = bad[0] < 0.5, bad[1] < 0.5

        # A batch whose examples all weigh 0 says nothing: skipped, and not counted as non-finite.
        weighted = weight_sum > 0
        loss_scale = self._loss_scale()
        if loss_scale is None:
            go = finite_loss & finite_grads
            # Keras computes the clip norm from squares that overflow float32 for gradients
            # past ~1.8e19 and then scales the update by NaN: clip here with a safe norm first.
            grads = clip_gradients(grads, optimizer)
        else:
            # Scaled gradients that overflow are routine: the optimizer then halves its scale
            # and skips the update, so it must see them. They are a non-finite step only at a
            # scale <= 1, where scaling cannot have caused the overflow.
            go = finite_loss & (finite_grads | (loss_scale > 1.0))
            grads = self._clip_scaled(grads, loss_scale)
        # A loss-scale overflow skips the update but counts as a step: its loss is finite.
        kept = self._apply_if_finite(grads, variables, go & weighted)
        self.nonfinite_steps.assign_add(tf.cast(weighted & ~kept, tf.int32))
        weight = tf.cast(kept, loss.dtype)
        self.loss_tracker.update_state(tf.where(kept, loss, tf.zeros_like(loss)), sample_weight=weight)
        self.bpd_tracker.update_state(tf.where(kept, bpd, tf.zeros_like(bpd)), sample_weight=weight)
        return {"loss": self.loss_tracker.result(), self.per_dim_metric: self.bpd_tracker.result()}

    def _loss_scale(self) -> tf.Tensor | None:
        """The current scale of a ``LossScaleOptimizer``, None for any other optimizer."""
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            return tf.convert_to_tensor(self.optimizer.dynamic_scale)
        return None

    def _clip_scaled(self, grads: list, loss_scale: tf.Tensor) -> list:
        """Clips gradients scaled by ``loss_scale`` as the inner optimizer asks, on their true size.

        The scale is a power of two, so unscaling and scaling again are exact.
        """
        inner = self.optimizer.inner_optimizer
        if not (getattr(inner, "clipnorm", None) or getattr(inner, "global_clipnorm", None)):
            return list(grads)
        unscaled = [None if g is None else g / tf.cast(loss_scale, g.dtype) for g in grads]
        clipped = clip_gradients(unscaled, inner)
        return [None if g is None else g * tf.cast(loss_scale, g.dtype) for g in clipped]

    def _training_state(self) -> list:
        """Every variable an update writes: the trainable weights and the optimizer's."""
        return [*self.trainable_variables, *self.optimizer.variables]

    def _apply_checked(self, grads, variables) -> tf.Tensor:
        """Applies ``grads``; puts everything back if the update left an inf or NaN.

        Finite gradients can still give a non-finite update (a huge learning
        rate, Adam's squared gradients overflowing): the training state is
        read before the update and restored after it unless every floating
        weight and optimizer variable is finite. That copy of the state
        (three times the parameters for Adam) is skipped when bounds prove
        the update finite (:func:`tfflows.guard.update_stays_finite`), as
        they do for Adam and SGD at sane sizes; the update is still checked
        and counted as non-finite if the proof was wrong. Outside a
        tf.distribute strategy only: under one, the copying path is taken.
        Returns whether it was kept.
        """
        safe = (None if tf.distribute.has_strategy()
                else update_stays_finite(self.optimizer, grads, variables))
        if safe is None:
            return self._apply_with_copies(grads, variables)

        def without_copies():
            self.optimizer.apply(grads, variables)
            return all_finite(tensor_values(self._training_state()))

        return tf.cond(safe, without_copies, lambda: self._apply_with_copies(grads, variables))

    def _apply_with_copies(self, grads, variables) -> tf.Tensor:
        """Applies ``grads`` after copying the training state; restores it if anything is non-finite."""
        state = tensor_values(self._training_state())
        saved = [tf.identity(v) for v in state]
        with tf.control_dependencies(saved):
            self.optimizer.apply(grads, variables)
        ok = all_finite(state)

        def restore(strategy, state, saved, ok):
            def put_back(var, old, ok):
                def undo():
                    var.assign(old)
                    return tf.constant(False)
                return tf.cond(ok, lambda: tf.constant(True), undo)

            for var, old in zip(state, saved):
                strategy.extended.update(var, put_back, args=(old, ok), group=False)

        # Mirrored variables are written in the cross-replica context, as the optimizer does.
        tf.__internal__.distribute.interim.maybe_merge_call(
            restore, tf.distribute.get_strategy(), state, saved, ok)
        return ok

    def _apply_if_finite(self, grads, variables, finite) -> tf.Tensor:
        """Applies ``grads`` when ``finite`` (the same on every replica), else skips the step.

        Returns whether the update was applied and kept (see :meth:`_apply_checked`).
        """

        def apply(grads=grads):
            return self._apply_checked(grads, variables)

        def skip():
            return tf.constant(False)

        ctx = tf.distribute.get_replica_context()
        if (ctx is None or not tf.distribute.has_strategy()
                or tf.__internal__.distribute.strategy_supports_no_merge_call()):
            return tf.cond(finite, apply, skip)

        # The optimizer all-reduces the gradients with a merge_call, which may not sit in
        # a cond inside a replica context: take the branch in the cross-replica context,
        # as keras.optimizers.LossScaleOptimizer does.
        def cross_replica(strategy, grads, finite):
            def apply_everywhere():
                kept = strategy.extended.call_for_each_replica(apply, args=(grads,))
                # Replicas hold the same state after a synchronised update: one answer for all.
                return strategy.experimental_local_results(kept)[0]

            return tf.cond(strategy.experimental_local_results(finite)[0], apply_everywhere, skip)

        return ctx.merge_call(cross_replica, args=(grads, finite))

    def test_step(self, data):
        """The weighted mean NLL and bits (or nats) per dimension of one batch, scored at the bin centres."""
        with xla_compiling(self.jit_compile):
            loss, bpd, _, count = self._nll(data)
        # Weighted by each batch's total weight (its example count without sample_weight):
        # the result is the weighted mean over the data, a short last batch included.
        self.loss_tracker.update_state(loss, sample_weight=count)
        self.bpd_tracker.update_state(bpd, sample_weight=count)
        return {"loss": self.loss_tracker.result(), self.per_dim_metric: self.bpd_tracker.result()}

    def predict_step(self, data):
        """``log_prob`` of one batch: ``x`` or ``(x, context)``."""
        # predict((x, context)) arrives as ((x, context),): Keras wraps its one input.
        if isinstance(data, (tuple, list)) and len(data) == 1:
            data = data[0]
        x, context = self._unpack(data)
        with xla_compiling(self.jit_compile):
            return self.log_prob(x, context)

    def compile(self, *args, **kwargs) -> None:
        """Keras ``compile``; the optimizer is built at once, as every weight already exists.

        So its state (step count, moments) is in every save from the start,
        and ``load_weights`` into a freshly compiled model restores it
        instead of skipping it with a warning and restarting the schedule.

        A flow's loss is its mean negative log-likelihood, and its metrics
        are that loss and its per-dimension form: ``loss``, ``loss_weights``,
        ``metrics`` and ``weighted_metrics`` (which compare predictions with
        targets ``y``) would be silently ignored, so they raise.

        Raises:
          ValueError: ``loss``, ``loss_weights``, ``metrics`` or
            ``weighted_metrics`` was given.
        """
        bound = inspect.signature(keras.Model.compile).bind(self, *args, **kwargs).arguments
        given = [key for key in ("loss", "loss_weights", "metrics", "weighted_metrics")
                 if bound.get(key) not in (None, [], (), {})]
        if given:
            raise ValueError(
                f"{type(self).__name__}.compile: a flow's loss is its negative log-likelihood "
                f"(reported as 'loss' and '{self.per_dim_metric}'), so it takes no "
                f"{', '.join(given)}; got {', '.join(f'{k}={bound[k]!r}' for k in given)}. "
                "Call compile(optimizer=...) alone; weight examples with fit(..., "
                "sample_weight=...).")
        super().compile(*args, **kwargs)
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)

    # -- Keras views: summary, plot_model, export --------------------------

    def as_functional(self) -> keras.Model:
        """The flow as a functional ``keras.Model`` sharing this model's layers and weights.

        Keras draws and summarises a subclassed model without knowing how its
        layers connect: ``keras.utils.plot_model(model)`` gives one box.
        ``keras.utils.plot_model(model.as_functional(), path)`` draws every
        step; ``as_functional()(x)`` is ``log_prob(x)`` (see
        :mod:`tfflows.models.graph`). Built once and kept (out of saves).
        """
        from tfflows.models.graph import Untracked, functional_view

        holder = getattr(self, "_functional_view", None)
        if holder is None:
            holder = Untracked(functional_view(self))
            self._functional_view = holder
        return holder.value

    def summary(self, *args: Any, **kwargs: Any) -> None:
        """Keras ``summary``: each flow layer with its output shape (and log-det's) and parameters.

        The total also counts the model's own ``nonfinite_steps`` counter.
        """
        self.as_functional()  # gives every layer the shapes Keras prints
        return super().summary(*args, **kwargs)

    def plot(self, to_file: str | os.PathLike, show_shapes: bool = True,
             show_layer_names: bool = True, **kwargs: Any) -> str:
        """Draws the flow with ``keras.utils.plot_model`` into ``to_file`` (written atomically).

        Needs ``pydot`` and Graphviz's ``dot``. Returns ``to_file`` as a string.
        """
        to_file = os.fspath(to_file)
        with atomic_path(to_file) as tmp:
            keras.utils.plot_model(self.as_functional(), to_file=tmp, show_shapes=show_shapes,
                                   show_layer_names=show_layer_names, **kwargs)
        return to_file

    def serving_signature(self) -> list:
        """``[x]`` or ``[x, context]`` as ``keras.InputSpec``: what ``export`` serves by default."""
        specs = [keras.InputSpec(shape=(None, *self.event_shape), dtype="float32", name="x")]
        if self.num_classes is not None:
            specs.append(keras.InputSpec(shape=(None,), dtype="int32", name="context"))
        elif self.context_dim is not None:
            specs.append(keras.InputSpec(shape=(None, self.context_dim), dtype="float32",
                                         name="context"))
        return specs

    def export(self, filepath, format: str = "tf_saved_model", verbose: bool | None = None,
               input_signature=None, **kwargs: Any) -> None:
        """Keras ``export`` (an ``ExportArchive``): ``serve(x[, context])`` returns ``log_prob``.

        ``tf.saved_model.load(filepath).serve(x)`` gives ``log_prob(x)`` for
        float32 ``x`` [batch, *event_shape] (pixel levels for image models);
        a conditional model's ``serve`` takes ``context`` too (int32 labels or
        float32 vectors). The folder is written beside ``filepath`` and moved
        into place; an existing SavedModel there is replaced. For TF Serving
        with uint8 images, sampling and a model card, use
        :func:`tfflows.export_saved_model`.

        Raises:
          NonFiniteWeightsError: a weight holds inf or NaN (a ``ValueError``).
          ValueError: a format other than ``"tf_saved_model"``, or ``filepath``
            is a file or a non-empty folder without a SavedModel.
        """
        name = type(self).__name__
        if format != "tf_saved_model":
            raise ValueError(f"{name}.export: expected format='tf_saved_model' (the log_prob "
                             f"SavedModel), got format={format!r}.")
        check_finite_weights(self, "export")
        path = os.fspath(filepath)
        replace = os.path.lexists(path)
        if replace and (not os.path.isdir(path) or os.path.islink(path) or (
                os.listdir(path) and not os.path.isfile(os.path.join(path, "saved_model.pb")))):
            raise ValueError(f"{name}.export: {path!r} exists and is not a SavedModel folder; "
                             "refusing to replace it.")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        signature = self.serving_signature() if input_signature is None else input_signature
        from tfflows.layers.convolution import conv_implementation

        # Stock convolutions in the graph, as export_saved_model writes them.
        with atomic_dir(path, overwrite=replace) as tmp, conv_implementation("conv"):
            # Keras would print the temporary folder's name: the message below names the real one.
            super().export(tmp, format=format, verbose=False, input_signature=signature, **kwargs)
        if verbose or verbose is None:
            args = ", ".join(spec.name for spec in self.serving_signature())
            print(f"Saved artifact at '{path}': serve({args}) -> log_prob.")

    def save(self, filepath, overwrite: bool = True, **kwargs) -> None:
        """Keras ``save``, refusing non-finite weights and writing atomically.

        The file is written under a temporary name in the same folder and
        renamed into place, so an interrupted save leaves the old file whole.

        Raises:
          NonFiniteWeightsError: a weight holds inf or NaN (a ``ValueError``).
          ValueError: ``filepath`` exists and ``overwrite`` is false.
        """
        self._write(super().save, "save", filepath, overwrite, **kwargs)

    def save_weights(self, filepath, overwrite: bool = True, **kwargs) -> None:
        """Keras ``save_weights``, refusing non-finite weights and writing atomically."""
        self._write(super().save_weights, "save the weights of", filepath, overwrite, **kwargs)

    def _write(self, writer, action: str, filepath, overwrite: bool, **kwargs) -> None:
        check_finite_weights(self, action)
        filepath = os.fspath(filepath)
        if not overwrite and os.path.exists(filepath):
            raise ValueError(f"{type(self).__name__}: cannot {action} the model to {filepath!r}: "
                             "it exists and overwrite=False.")
        with atomic_path(filepath) as tmp:
            writer(tmp, overwrite=True, **kwargs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "backprop": self.backprop}

    def compile_from_config(self, config) -> None:
        # Keras skips compile() on load when a subclass overrides it; ours only adds the build.
        if config:
            self.compile(**keras.saving.deserialize_keras_object(config))

    def _check_sample_weight_arg(self, kwargs: dict, method: str) -> None:
        """Eager check of a ``sample_weight=`` array: finite values >= 0, one per example."""
        weight = kwargs.get("sample_weight")
        if weight is None or isinstance(weight, tf.data.Dataset):
            return
        array = np.asarray(weight)
        name = f"{type(self).__name__}.{method}"
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1 or not (np.issubdtype(array.dtype, np.floating)
                                   or np.issubdtype(array.dtype, np.integer)):
            raise ValueError(f"{name}: expected sample_weight of shape [num_examples] (one number "
                             f"per example), got {array.dtype} of shape {array.shape}.")
        bad = int(np.sum(~(np.isfinite(array) & (array >= 0))))
        if bad:
            raise ValueError(f"{name}: expected sample_weight values that are finite and >= 0, "
                             f"got {bad} negative, inf or NaN values.")

    def _keep_sample_weight(self, x, y, kwargs: dict):
        """``y`` to give Keras so it keeps ``sample_weight`` (and the same for ``validation_data``).

        Keras drops ``sample_weight`` without a word when ``y`` is None; an
        unconditional model ignores ``y``, so it gets a placeholder of zeros,
        as does a conditional model whose labels are in a dict ``x``.
        """
        def placeholder(data):
            if isinstance(data, dict):
                data = data[image_key(data, type(self).__name__)]
            return np.zeros(int(np.shape(data)[0]), np.float32)

        def ignores_y(data):
            # A conditional model reads its context from y, unless a dict brings the labels.
            return not self.is_conditional or (isinstance(data, dict) and label_key(data) is not None)

        validation = kwargs.get("validation_data")
        if (isinstance(validation, (tuple, list)) and len(validation) == 3
                and validation[1] is None and validation[2] is not None and ignores_y(validation[0])):
            kwargs["validation_data"] = (validation[0], placeholder(validation[0]), validation[2])
        if (kwargs.get("sample_weight") is not None and y is None and x is not None
                and not isinstance(x, tf.data.Dataset) and ignores_y(x)):
            return placeholder(x)
        return y

    # -- the first batch of fit -------------------------------------------

    def _unchecked(self, x) -> bool:
        """Whether ``fit(x)`` checks a first batch: arrays always, a Dataset the first time.

        Pulling a batch from a Dataset costs a pass through its pipeline (a
        shuffle buffer fills) and advances its random streams, so a Dataset
        given to ``fit`` again, as in an epoch loop, is not pulled again.
        """
        if not self.models_pixel_levels:
            return False
        if not isinstance(x, tf.data.Dataset):
            return True
        last = getattr(self, "_checked_dataset", None)
        return last is None or last() is not x

    def _first_batch(self, x, y, batch_size):
        """The first batch ``fit`` will see (up to 256 examples of arrays), or None if unknown."""
        if isinstance(x, tf.data.Dataset):
            if self.models_pixel_levels:
                self._checked_dataset = weakref.ref(x)
            for batch in x.take(1):
                return batch
            return None
        if isinstance(x, (np.ndarray, tf.Tensor, dict, tuple, list)):
            n = batch_size or 256
            xs, cs = self._unpack(x if y is None else (x, y))
            return xs[:n], None if cs is None else cs[:n]
        return None

    def _check_first_batch(self, batch) -> None:
        """Raises or warns when the first batch of an image model is not pixel levels.

        Levels out of [0, 2^num_bits) and float images within [0, 1] raise;
        levels without dequantization noise, and integer pixels whose
        maximum uses under an eighth of their range, warn. Inf and NaN
        values are left to the training step's non-finite guard.
        """
        if not self.models_pixel_levels:
            return
        name, n = type(self).__name__, int(self.num_bits)
        what = "the first training batch"
        x = tf.convert_to_tensor(self._unpack(batch)[0])
        if x.dtype.is_integer:
            self._check_x(x, what)
            bits = self._pixel_bits(x.dtype, what)
            high = int(tf.reduce_max(x)) if tf.size(x) else 0
            if 0 < high < 2 ** (bits - 3):
                used = high // 2 ** (bits - n) + 1
                warnings.warn(
                    f"{name}: {what} holds {x.dtype.name} pixels up to {high}: read as {bits}-bit "
                    f"pixels (0..{2 ** bits - 1}) they fill only {used} of the model's {2 ** n} "
                    f"levels. If they are {n}-bit levels already, multiply them by "
                    f"{2 ** (bits - n)}, or pass them as floats with dequantization noise.",
                    UserWarning, stacklevel=3)
            return
        self._check_x(x, what, values=False)
        values = tf.boolean_mask(x, tf.math.is_finite(x))
        if tf.size(values) == 0:
            return
        low, high, top = float(tf.reduce_min(values)), float(tf.reduce_max(values)), 2 ** n
        if low < 0 or high >= top:
            hint = ""
            if low >= -1.0 and high <= 1.0:
                hint = (" (images scaled to [-1, 1]? pass the uint8 pixels, round((x + 1) · 127.5), "
                        "which the model reduces and dequantizes itself)")
            elif high < 256:
                hint = (" (8-bit pixels given to a model of fewer bits? pass them as uint8, "
                        "which the model reduces, or use tfflows.data.make_dataset(..., num_bits=...))")
            raise ValueError(
                f"{name}: expected {what} as pixel levels in [0, {top}) for num_bits={n}, got "
                f"values from {low:g} to {high:g}{hint}.")
        if high <= 1.0 and n >= 2:
            raise ValueError(
                f"{name}: expected pixel levels in [0, {top}) for num_bits={n}, but {what} has "
                f"values in [{low:g}, {high:g}]: images scaled to [0, 1]? Multiply by 255 and "
                "pass uint8 (the model reduces and dequantizes 8-bit pixels itself), or give "
                f"levels in [0, {top}) with dequantization noise.")
        fractions = values - tf.floor(values)
        if float(tf.reduce_max(fractions)) == float(tf.reduce_min(fractions)):
            kind = ("an integer" if float(fractions[0]) == 0.0
                    else f"a level plus {float(fractions[0]):g}")
            warnings.warn(
                f"{name}: {what} holds pixel levels without dequantization noise (every value is "
                f"{kind}): a continuous density fitted to a grid of points grows without bound, so "
                "the loss will keep falling and overestimate the likelihood. Pass the integer "
                "pixels (uint8), which fit dequantizes with fresh noise every step, or add U[0, 1) "
                "noise (tfflows.data.dequantize, make_dataset(dequantize=True)).",
                UserWarning, stacklevel=3)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """Keras ``evaluate``; ``sample_weight`` weights each example's NLL."""
        self._check_sample_weight_arg(kwargs, "evaluate")
        y = self._keep_sample_weight(x, y, kwargs)
        return super().evaluate(x, y, *args, **kwargs)

    def fit(self, x=None, y=None, *args, callbacks=None, **kwargs):
        """Keras ``fit``, checking the first batch, initialising ActNorm from it, with a non-finite guard.

        Image models with ``num_bits`` take float pixel levels in [0, 2^num_bits),
        already dequantized, or integer pixels (uint8, uint16, ...; see
        :func:`tfflows.data.integer_pixel_bits`), which each training step
        reduces to ``num_bits`` and dequantizes with fresh U[0, 1) noise;
        ``evaluate`` and ``predict`` score integer pixels at their bin centres
        (the SavedModel's rule). Batches may be TFDS dicts
        (``{"image": ..., "label": ...}``): the label is a class-conditional
        model's context and is ignored by a plain model.

        The first batch (of every array input, and of a Dataset the first
        time it is given) is checked: levels out of range, and float images
        all within [0, 1] (scaled for display, not levels), raise
        ``ValueError``; float levels without dequantization noise (every
        value an integer, or every value a bin centre) warn, as does a batch
        of integer pixels too dark to use more than an eighth of the levels.

        ``sample_weight`` (or a dataset's third batch element) weights the
        loss: Σ wᵢ·nllᵢ / Σ wᵢ per batch; a batch whose weights are all 0 is
        skipped.
        """
        self._check_sample_weight_arg(kwargs, "fit")
        y = self._keep_sample_weight(x, y, kwargs)
        batch = None
        if not self.is_initialized or self._unchecked(x):
            batch = self._first_batch(x, y, kwargs.get("batch_size"))
            if batch is not None:
                self._check_first_batch(batch)
        if not self.is_initialized:
            if batch is None and isinstance(x, tf.data.Dataset):
                self.initialize(x, num_batches=1)  # raises: the dataset is empty
            if batch is None:
                raise ValueError(
                    f"{type(self).__name__}: fit initialises ActNorm from the first batch, so it "
                    f"needs arrays, tensors or a tf.data.Dataset; got {type(x).__name__}. Call "
                    "model.initialize(batch) first to fit on other inputs.")
            self.initialize(batch)
        self.nonfinite_steps.assign(0)
        self.stopped_on_nonfinite = False
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)
        if isinstance(x, tf.data.Dataset):
            kwargs.setdefault("shuffle", False)  # a Dataset shuffles itself; Keras would warn
        callbacks = list(callbacks or []) + [NonFiniteGuard()]
        return super().fit(x, y, *args, callbacks=callbacks, **kwargs)
