"""The model as live TensorFlow Probability objects, seeds, and Monte Carlo helpers.

``FlowModel.distribution`` / ``distribution_for(context)`` return a
:class:`FlowDistribution`, and ``FlowModel.bijector`` / ``bijector_for(context)``
a :class:`LiveBijector`. Neither is a snapshot: every call (``log_prob``,
``sample``, ``forward``, ...) builds the flow from the model's weights as they
are at that moment. So an object held across ``fit`` reports the trained
density, every weight is read inside the caller's ``tf.GradientTape`` (and
``tfp.vi.fit_surrogate_posterior`` trains them all), and
``trainable_variables`` lists the model's weights.

Batch semantics (TFP's): an unconditional model has batch shape ``[]``. A
conditional one has the batch shape of its contexts: class labels of shape
``[B]`` (or one-hot ``[B, num_classes]``) or context vectors ``[B, C]`` give
``[B]``; one label (a scalar) or one vector (``[C]``) gives ``[]``. Then
``sample(n)`` has shape ``[n, B, *event]`` (``sample()``: one example per
context, ``[B, *event]``) and ``log_prob(x)`` takes ``x`` of shape
``[..., B, *event]``, broadcasting as TFP does, and returns ``[..., B]``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfflows.bijectors.base import FlowBijector
from tfflows.checks import check_sample_shape
from tfflows.data.arrays import as_tensor
from tfflows.live import LiveFlow, flow_dtype
from tfflows.typing import Context, Seed, TensorLike

if TYPE_CHECKING:
    from tfflows.models.base import FlowModel

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["FlowDistribution", "LiveBijector", "flow_dtype", "stateless_seed"]

_LOG_2PI = math.log(2.0 * math.pi)


def stateless_seed(seed: Seed, name: str = "sample") -> tf.Tensor | None:
    """``seed`` as a stateless ``[2]`` integer seed; ``None`` stays ``None``.

    An int ``s`` becomes ``[s, 0]``, so the same int gives the same draw on
    every call (TFP treats a plain int as a stateful seed; here it is not).
    A pair — a tuple, list, array or tensor of two integers, TFP's stateless
    seed — is used as it is.

    Raises:
      ValueError: ``seed`` is none of these (a bool, a float, a string, a
        shape other than ``[2]``, a non-integer dtype).
    """
    if seed is None:
        return None
    what = "seed must be None, an int, or a stateless seed of two integers (shape [2])"
    if isinstance(seed, (bool, np.bool_)):
        raise ValueError(f"{name}: {what}, got {seed!r}.")
    if isinstance(seed, numbers.Integral):
        seed = int(seed)
        if not -(2**63) <= seed < 2**63:
            raise ValueError(f"{name}: {what}; an int seed must fit in 64 bits, got {seed}.")
        dtype = tf.int32 if -(2**31) <= seed < 2**31 else tf.int64
        return tf.constant([seed, 0], dtype=dtype)
    if tf.is_tensor(seed):
        tensor: tf.Tensor = seed  # tf.is_tensor narrows nothing for the type checker
        if (
            not tensor.dtype.is_integer
            or tensor.dtype.is_unsigned
            or tensor.shape.rank != 1
            or tensor.shape[0] != 2
        ):
            raise ValueError(f"{name}: {what}, got a {tensor.dtype.name} tensor of shape {tensor.shape}.")
        return tensor
    if isinstance(seed, (str, bytes)):
        raise ValueError(f"{name}: {what}, got {seed!r}.")
    try:
        array = np.asarray(seed)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {what}, got {seed!r}.") from None
    if array.shape != (2,) or array.dtype.kind not in "iu":
        raise ValueError(f"{name}: {what}, got {seed!r} (shape {array.shape}, dtype {array.dtype}).")
    if array.min() < -(2**63) or array.max() >= 2**63:
        raise ValueError(f"{name}: {what}; its entries must fit in 64 bits, got {seed!r}.")
    return tf.constant(array.astype(np.int64))


def _reduce_log_det(log_det: tf.Tensor, event_ndims, min_event_ndims: int, name: str) -> tf.Tensor:
    """Sums the log-det over the event axes beyond the bijector's own (TFP's ``event_ndims``)."""
    if event_ndims is None:
        return log_det
    if (
        isinstance(event_ndims, bool)
        or not isinstance(event_ndims, numbers.Integral)
        or event_ndims < min_event_ndims
    ):
        raise ValueError(f"{name}: event_ndims must be an integer >= {min_event_ndims}, got {event_ndims!r}.")
    extra = int(event_ndims) - min_event_ndims
    if log_det.shape.rank is not None and extra > log_det.shape.rank:
        raise ValueError(
            f"{name}: event_ndims must be at most {min_event_ndims + log_det.shape.rank} for an input "
            f"with {log_det.shape.rank} batch axes, got {event_ndims}."
        )
    return tf.reduce_sum(log_det, axis=list(range(-extra, 0))) if extra else log_det


class LiveBijector(FlowBijector):
    """x = f⁻¹(z): a model's latent → data bijector, rebuilt from its weights at every call.

    - forward: x = f⁻¹(z) for flat latents z of shape ``[..., num_dims]``;
    - inverse: z = f(x) for data of shape ``[..., *event_shape]``;
    - log-det: log|det ∂x/∂z| = −log|det ∂f/∂x| at x.

    Each call builds the model's flow (``model.flow``) from the current
    weights, and TFP's cache of forward and inverse results is bypassed: a
    bijector held while the weights change never answers with old values.
    ``trainable_variables`` and ``variables`` are the model's. With a batch
    of contexts the batch shape is theirs (see :mod:`tfflows.distribution`).

    Args:
      model: a :class:`tfflows.FlowModel`.
      context: class labels or context vectors of a conditional model.
    """

    def __init__(self, model: FlowModel, context: Context = None, name: str | None = None) -> None:
        parameters = dict(locals())
        self._live = LiveFlow(model, context)
        self._model = model
        super().__init__(
            1,
            inverse_event_ndims=len(model.event_shape),
            parameters=parameters,
            name=name or f"{type(model).__name__}_bijector",
        )

    @property
    def model(self) -> FlowModel:
        """The :class:`tfflows.FlowModel` whose current weights every call reads."""
        return self._model

    @property
    def live(self) -> LiveFlow:
        """The model and its (flattened, checked) contexts that every call runs the flow with."""
        return self._live

    @property
    def trainable_variables(self) -> tuple[tf.Variable, ...]:
        return self._live.variables(trainable=True)

    @property
    def variables(self) -> tuple[tf.Variable, ...]:
        return self._live.variables(trainable=False)

    def _forward_and_log_det(self, z):
        m = self._model
        return tuple(
            self._live.run(
                z,
                (m.num_dims,),
                [m.event_shape, ()],
                lambda z, c: self._live.flow(c).inverse_and_log_det(z),
                "latents",
            )
        )

    def _inverse_and_log_det(self, x):
        m = self._model
        return tuple(
            self._live.run(
                x,
                m.event_shape,
                [(m.num_dims,), ()],
                lambda x, c: self._live.flow(c).forward_and_log_det(x),
                "x",
            )
        )

    # TFP's public methods, each a fresh pass (never TFP's per-tensor cache).
    def forward(self, x: TensorLike, name: str = "forward", **kwargs: Any) -> tf.Tensor:
        return self.forward_and_log_det(x)[0]

    def inverse(self, y: TensorLike, name: str = "inverse", **kwargs: Any) -> tf.Tensor:
        return self.inverse_and_log_det(y)[0]

    def forward_log_det_jacobian(
        self,
        x: TensorLike,
        event_ndims: int | None = None,
        name: str = "forward_log_det_jacobian",
        **kwargs: Any,
    ) -> tf.Tensor:
        return _reduce_log_det(
            self.forward_and_log_det(x)[1], event_ndims, self.forward_min_event_ndims, self.name
        )

    def inverse_log_det_jacobian(
        self,
        y: TensorLike,
        event_ndims: int | None = None,
        name: str = "inverse_log_det_jacobian",
        **kwargs: Any,
    ) -> tf.Tensor:
        return _reduce_log_det(
            self.inverse_and_log_det(y)[1], event_ndims, self.inverse_min_event_ndims, self.name
        )

    def _forward_event_shape(self, input_shape):
        return tf.TensorShape(self._model.event_shape)

    def _forward_event_shape_tensor(self, input_shape):
        return tf.constant(self._model.event_shape, tf.int32)

    def _inverse_event_shape(self, output_shape):
        return tf.TensorShape([self._model.num_dims])

    def _inverse_event_shape_tensor(self, output_shape):
        return tf.constant([self._model.num_dims], tf.int32)

    def _batch_shape(self, x_event_ndims):
        return self._live.batch_static

    def _batch_shape_tensor(self, x_event_ndims):
        return self._live.batch_tensor


def _not_implemented(name: str, what: str, alternative: str):
    def method(self, *args, **kwargs):
        raise NotImplementedError(
            f"{self.name}: {what} of a normalizing flow has no closed form, so {name}() is not "
            f"implemented. {alternative}"
        )

    method.__name__ = f"_{name}"
    return method


_SAMPLE_MOMENTS = (
    "Estimate it from samples: x = dist.sample(n, seed=...), then "
    "tf.reduce_mean(x, 0) and tf.math.reduce_variance(x, 0)."
)


class FlowDistribution(tfp.distributions.TransformedDistribution):
    """p(x) = N(f(x); 0, I) · |det ∂f/∂x|: a model as a live TFP ``TransformedDistribution``.

    As TFP composes it: ``.distribution`` is the base (a standard normal on
    the flat latent of size ``num_dims``) and ``.bijector`` the model's
    latent → data flow (:class:`LiveBijector`), so
    ``isinstance(d, tfd.TransformedDistribution)`` holds and TFP code that
    takes a transformed distribution apart finds what it expects.

    log_prob(x) is ``model.log_prob`` (one pass of the flow f, data → latent);
    samples are x = f⁻¹(ε), ε ~ N(0, I), fully reparameterized, and
    ``experimental_sample_and_log_prob`` scores them in the same pass
    (log p(x) = log N(ε) − log|det ∂x/∂ε|), as variational inference wants.
    Every call reads the model's current weights; ``trainable_variables``
    are the model's, so ``tfp.vi.fit_surrogate_posterior`` trains them all,
    with or without ``trainable_variables=``. Data of another float dtype
    (float64 for a float32 model) is cast to the model's dtype. Eagerly,
    inf or NaN data raise ``ValueError``; pixel levels outside
    [0, 2^num_bits) are scored by the flow (as ``encode`` takes them)
    unless ``validate_args=True``, which applies ``model.log_prob``'s checks.

    ``cdf``, ``survival_function``, ``quantile``, ``entropy``, ``mean``,
    ``mode``, ``stddev``, ``variance`` and ``covariance`` raise
    ``NotImplementedError`` naming an estimate to use instead
    (:func:`tfflows.monte_carlo_entropy`, :func:`tfflows.monte_carlo_kl`, sample moments).

    Args:
      model: a :class:`tfflows.FlowModel`.
      context: class labels or context vectors of a conditional model; their
        batch shape is the distribution's (module docstring).
      validate_args, allow_nan_stats, name: as for any TFP distribution.
    """

    def __init__(
        self,
        model: FlowModel,
        context: Context = None,
        validate_args: bool = False,
        allow_nan_stats: bool = True,
        name: str | None = None,
    ) -> None:
        parameters = dict(locals())
        bijector = LiveBijector(model, context)
        self._live = bijector.live
        self._model = model
        self._context_given = context
        dtype = self._live.dtype
        base = tfd.Sample(
            tfd.Normal(tf.constant(0.0, dtype), tf.constant(1.0, dtype), allow_nan_stats=allow_nan_stats),
            sample_shape=[model.num_dims],
            name="base",
        )
        super().__init__(
            distribution=base,
            bijector=bijector,
            validate_args=validate_args,
            parameters=parameters,
            name=name or type(model).__name__,
        )

    @classmethod
    def _parameter_properties(cls, dtype: Any, num_classes: Any = None) -> dict:
        # The model's weights are not parameters with batch dimensions; contexts set the batch.
        return {}

    # -- what it is made of ------------------------------------------------

    @property
    def model(self) -> FlowModel:
        """The :class:`tfflows.FlowModel` whose current weights every call reads."""
        return self._model

    @property
    def context(self) -> Context:
        """The contexts given (None for an unconditional model)."""
        return self._context_given

    @property
    def trainable_variables(self) -> tuple[tf.Variable, ...]:
        """The model's trainable weights (the ``tf.Variable`` behind each Keras weight)."""
        return self._live.variables(trainable=True)

    @property
    def variables(self) -> tuple[tf.Variable, ...]:
        """Every weight of the model, trainable or not."""
        return self._live.variables(trainable=False)

    # -- shapes --------------------------------------------------------------

    def _event_shape(self) -> tf.TensorShape:
        return tf.TensorShape(self._model.event_shape)

    def _event_shape_tensor(self) -> tf.Tensor:
        return tf.constant(self._model.event_shape, tf.int32)

    def _batch_shape(self) -> tf.TensorShape:
        return self._live.batch_static

    def _batch_shape_tensor(self) -> tf.Tensor:
        return self._live.batch_tensor

    # -- density and samples -------------------------------------------------

    def _as_data(self, value: Any) -> tf.Tensor:
        spec = self._model.spec
        value = as_tensor(value, self.name, "x", f"an array of numbers of shape [..., {spec.event_shape}]")
        if value.dtype.is_integer and spec.models_pixel_levels:
            # Integer pixels (uint8 from TFDS or decode_png) are scored as the model and the
            # SavedModel score them: reduced to num_bits, at the centres of their bins.
            return tf.cast(spec.integer_levels(value, "x"), self.dtype)
        if not value.dtype.is_floating:
            hint = (
                " Integer pixels are read by image models with num_bits." if spec.data_kind == "image" else ""
            )
            raise ValueError(f"{self.name}: expected float32 or float64 data, got {value.dtype.name}.{hint}")
        return tf.cast(value, self.dtype)

    def log_prob(self, value: Any, name: str = "log_prob", **kwargs: Any) -> tf.Tensor:
        """log p(x), shape ``[..., *batch_shape]``; float data of any precision is cast to ``dtype``."""
        return super().log_prob(self._as_data(value), name=name, **kwargs)

    def prob(self, value: Any, name: str = "prob", **kwargs: Any) -> tf.Tensor:
        """p(x) = exp(log p(x))."""
        return super().prob(self._as_data(value), name=name, **kwargs)

    def _prob(self, x: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        return tf.exp(self._log_prob(x))

    def _log_prob(self, x: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        model = self._model
        score: Callable[[tf.Tensor, Any], tf.Tensor]
        if self.validate_args:
            score = model.log_prob  # its checks, pixel levels out of range included
        else:

            def score(x: tf.Tensor, context: Any) -> tf.Tensor:
                # As encode: shape, dtype and (eagerly) finite values are checked, but not the
                # pixel range, so the distribution scores its own samples wherever they fall.
                return model.flow_log_prob(model.spec.check_x(x), context)

        return self._live.run(x, model.event_shape, [()], lambda x, c: [score(x, c)], "x")[0]

    def sample(
        self, sample_shape: Any = (), seed: Seed = None, name: str = "sample", **kwargs: Any
    ) -> tf.Tensor:
        """Samples of shape ``[*sample_shape, *batch_shape, *event_shape]`` (TFP's ``sample``)."""
        check_sample_shape(self.name, sample_shape)
        return super().sample(sample_shape, seed=seed, name=name, **kwargs)

    def _latent_noise(self, sample_shape: Any, seed: Any) -> tf.Tensor:
        seed = stateless_seed(seed, self.name)
        if seed is None:
            seed = tfp.random.sanitize_seed(None)
        shape = tf.concat(
            [
                tf.reshape(tf.cast(sample_shape, tf.int32), [-1]),
                self._live.batch_tensor,
                [self._model.num_dims],
            ],
            0,
        )
        return tf.random.stateless_normal(shape, seed=seed, dtype=self.dtype)

    def _call_sample_n(self, sample_shape: Any, seed: Any, **kwargs: Any) -> tf.Tensor:
        return self.bijector.forward(self._latent_noise(sample_shape, seed))

    def _sample_n(self, n: Any, seed: Any = None, **kwargs: Any) -> tf.Tensor:
        return self.bijector.forward(self._latent_noise([n], seed))

    def _sample_and_log_prob(
        self, sample_shape: Any, seed: Any, **kwargs: Any
    ) -> tuple[tf.Tensor, tf.Tensor]:
        eps = self._latent_noise(sample_shape, seed)
        x, log_det = self.bijector.forward_and_log_det(eps)
        base = -0.5 * tf.reduce_sum(tf.square(eps), axis=-1) - 0.5 * self._model.num_dims * _LOG_2PI
        return x, base - log_det

    # -- no closed form ------------------------------------------------------

    _cdf = _not_implemented(
        "cdf",
        "the CDF",
        "Estimate P(X <= x) as the fraction of samples "
        "dist.sample(n, seed=...) that are <= x in every coordinate.",
    )
    _log_cdf = _not_implemented("log_cdf", "the CDF", "Estimate it from samples (see cdf).")
    _survival_function = _not_implemented(
        "survival_function",
        "the survival function",
        "Estimate P(X > x) as the fraction of samples "
        "dist.sample(n, seed=...) that are > x in every coordinate.",
    )
    _log_survival_function = _not_implemented(
        "log_survival_function", "the survival function", "Estimate it from samples (see survival_function)."
    )

    # TFP falls back from the survival function to the CDF, whose message would name the wrong method.
    def survival_function(
        self, value: TensorLike, name: str = "survival_function", **kwargs: Any
    ) -> tf.Tensor:
        """Not implemented (no closed form): raises NotImplementedError naming an estimate."""
        return self._survival_function(value)

    def log_survival_function(
        self, value: TensorLike, name: str = "log_survival_function", **kwargs: Any
    ) -> tf.Tensor:
        """Not implemented (no closed form): raises NotImplementedError naming an estimate."""
        return self._log_survival_function(value)

    _quantile = _not_implemented(
        "quantile", "the quantile function", "Use sample quantiles of dist.sample(n, seed=...)."
    )
    _entropy = _not_implemented(
        "entropy",
        "the entropy",
        "Estimate it with tfflows.monte_carlo_entropy(dist, num_samples, seed) "
        "(and a KL with tfflows.monte_carlo_kl(p, q, num_samples, seed)).",
    )
    _mean = _not_implemented("mean", "the mean", _SAMPLE_MOMENTS)
    _stddev = _not_implemented("stddev", "the standard deviation", _SAMPLE_MOMENTS)
    _variance = _not_implemented("variance", "the variance", _SAMPLE_MOMENTS)
    _covariance = _not_implemented(
        "covariance",
        "the covariance",
        "Estimate it from samples x = dist.sample(n, seed=...) with tfp.stats.covariance(x).",
    )
    _mode = _not_implemented(
        "mode",
        "the mode",
        "Search for it by gradient ascent on dist.log_prob "
        "from a few samples; model.decode(zeros) is not the mode in general.",
    )


def _kl_not_implemented(a, b, name=None):
    raise NotImplementedError(
        f"KL({a.name} || {b.name}) between a normalizing flow and another distribution has no "
        "closed form; estimate it with tfflows.monte_carlo_kl(p, q, num_samples, seed)."
    )


tfd.RegisterKL(FlowDistribution, tfd.Distribution)(_kl_not_implemented)
tfd.RegisterKL(tfd.Distribution, FlowDistribution)(_kl_not_implemented)
# (FlowDistribution, FlowDistribution) would otherwise be ambiguous between the two above.
tfd.RegisterKL(FlowDistribution, FlowDistribution)(_kl_not_implemented)
