"""SavedModel export for TF Serving: named signatures that need neither tfflows nor TFP.

``export_saved_model(model, path)`` writes, through Keras's
``keras.export.ExportArchive``, one ``tf.function`` per endpoint and the
variables their graphs read (``model.export(path)`` is the one-endpoint
Keras form: ``serve(x)`` = log_prob of float input). The traced graphs
contain only TensorFlow ops, so ``tf.saved_model.load``, ``saved_model_cli``
and TF Serving run them without importing tfflows, Keras or TFP.

Image models (event shape [H, W, C], ``num_bits`` n):

- ``log_prob`` (= ``serving_default``): ``images`` uint8 [B, H, W, C] →
  ``log_prob``, ``bits_per_dim`` [B]. Pixels are reduced to n bits,
  k = floor(x / 2^(8−n)), and scored at the bin centre k + ½: the output is
  the density of the model at k + ½ in n-bit pixel-level units, the
  deterministic midpoint estimate of log P(k) = log ∫ p over the unit bin.
- ``score``: ``images`` uint8 → ``score``, ``bits_per_dim``,
  ``complexity_bits_per_dim`` [B]: the complexity-corrected OOD score
  (Serrà et al., 2020) = bits_per_dim − the PNG length (compression 9) of
  the n-bit image in bits per dimension; higher is more out-of-distribution
  (see :mod:`tfflows.ood`).
- ``log_prob_float``: ``images`` float32 pixel levels in [0, 2ⁿ), already
  dequantized → the same outputs, the exact density at those values.
- ``sample``: ``num_samples`` int32, ``temperature`` float32, ``seed`` int64
  scalars → ``images`` uint8 (scaled to 0..255), ``images_float`` (levels)
  and ``finite`` bool [B]: false for a sample whose inverse overflowed to inf
  or NaN (uint8 cannot hold NaN, so its ``images`` are not the model's).
  A model may add sampling inputs of its own (``sample_signature_options``
  and ``decode_with_options``): a class-conditional TarFlow takes
  ``guidance`` float32 (0: none) and one trained with Gaussian noise takes
  ``denoise`` bool (False: none). Signatures have no optional inputs, so
  these are required; the model card gives each one's ``default``, the
  value that reproduces the plain sample.
- ``encode``: ``images`` uint8 → ``latents`` float32 [B, D];
  ``decode``: ``latents`` → ``images``, ``images_float``, ``finite``.

Vector models (event shape [D]) take and return float32 ``x`` [B, D] (with
``finite`` beside it from ``sample`` and ``decode``) and have no uint8 path. Conditional models take ``labels`` int32 [B] (models
with ``num_classes``) or ``context`` float32 [B, K] (``context_dim``) on
every signature. Models with ``num_bits`` above 8 take and give uint16.

Bad requests fail at serve time with ``InvalidArgumentError`` naming the
argument and the limit: values out of range, labels out of range or not one
per example, ``num_samples`` outside 0..``max_samples``, non-finite or
negative temperatures, non-finite latents, and shapes other than the
signature's (checked by ``tf.ensure_shape``: servers do not enforce a
signature's shapes). A wrong dtype is refused by the signature itself. A
model with an inf or NaN weight is not exported at all.

A batch of 0 examples (or ``num_samples`` 0) is valid: every output then
has a batch dimension of 0.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import keras
import tensorflow as tf

from tfflows.data.pipeline import bin_centres, integer_pixel_bits, saved_model_pixel_dtype
from tfflows.guard import check_finite_weights, finite_rows
from tfflows.io import atomic_dir, atomic_write_json
from tfflows.layers.convolution import conv_implementation

if TYPE_CHECKING:
    from tfflows.models.base import FlowModel

__all__ = ["MAX_SAMPLES", "export_saved_model", "describe_signatures", "is_saved_model_folder"]

MAX_SAMPLES = 4096
"""Default cap on ``num_samples`` per ``sample`` request."""

CARD_FILE = os.path.join("assets.extra", "model_card.json")


@dataclass
class _Tensor:
    """One named input or output of a signature."""

    name: str
    dtype: tf.DType
    shape: tuple
    description: str
    default: Any = None  # the value that leaves the result as without this input

    def spec(self) -> tf.TensorSpec:
        return tf.TensorSpec(self.shape, self.dtype, name=self.name)

    def card(self) -> dict[str, Any]:
        card = {"dtype": self.dtype.name, "shape": [-1 if d is None else d for d in self.shape],
                "description": self.description}
        if self.default is not None:
            card["default"] = self.default
        return card


@dataclass
class _Endpoint:
    """A signature: its inputs and outputs, what it does, and its body."""

    name: str
    description: str
    inputs: list[_Tensor]
    outputs: list[_Tensor]
    body: Callable[..., dict[str, tf.Tensor]]

    def function(self) -> tf.types.experimental.GenericFunction:
        names = [t.name for t in self.inputs]

        def serve(*args):
            # Servers and loaded signatures do not enforce the specs' shapes (a placeholder's
            # shape is a promise, not a check): EnsureShape fails the request at run time with
            # "Shape of tensor images [1,8,8,3] is not compatible with expected shape [?,8,8,1]".
            args = [tf.ensure_shape(a, t.shape) for a, t in zip(args, self.inputs)]
            return self.body(**dict(zip(names, args)))

        return tf.function(serve, input_signature=[t.spec() for t in self.inputs],
                           autograph=False)

    def card(self) -> dict[str, Any]:
        return {"description": self.description,
                "inputs": {t.name: t.card() for t in self.inputs},
                "outputs": {t.name: t.card() for t in self.outputs}}


def _num_bits(model: FlowModel) -> int:
    """The model's declared ``num_bits`` (8 for an image model that declares none)."""
    return 8 if model.num_bits is None else int(model.num_bits)


class _Endpoints:
    """Builds the serving endpoints of one model (plain Python: nothing here is saved)."""

    def __init__(self, model: FlowModel, max_samples: int) -> None:
        self.model = model
        self.max_samples = max_samples
        # A model's own sampling inputs (TarFlow: guidance, denoise), served through its
        # decode_with_options; other models offer none.
        self.sample_options = dict(model.sample_signature_options)
        self.is_image = model.data_kind == "image"
        self.num_dims = int(model.num_dims)
        if self.is_image:
            self.num_bits = _num_bits(model)
            # The models' own rule for integer pixels (tfflows.data.integer_pixel_bits).
            self.int_dtype = saved_model_pixel_dtype(self.num_bits)
            self.int_bits = integer_pixel_bits(self.int_dtype, self.num_bits)

    # -- inputs and outputs ----------------------------------------------

    def _data(self, dtype: tf.DType | None = None) -> _Tensor:
        if not self.is_image:
            return _Tensor("x", tf.float32, (None, self.num_dims), "examples, one per row")
        shape = (None, *self.model.event_shape)
        n, ib = self.num_bits, self.int_bits
        if dtype is None or dtype.is_integer:
            how = ("" if n == ib else
                   f", reduced to {n} bits as floor(x / {2 ** (ib - n)}),")
            return _Tensor("images", self.int_dtype, shape,
                           f"{ib}-bit pixels{how} scored at the bin centre (level + 0.5)")
        return _Tensor("images", tf.float32, shape,
                       f"dequantized pixel levels in [0, {2 ** n}) ({n}-bit data)")

    def _context_inputs(self) -> list[_Tensor]:
        model = self.model
        if model.num_classes is not None:
            return [_Tensor("labels", tf.int32, (None,),
                            f"class ids in 0..{model.num_classes - 1}, one per example")]
        if model.context_dim is not None:
            return [_Tensor("context", tf.float32, (None, model.context_dim),
                            "finite context vectors, one per example")]
        return []

    def _score_outputs(self) -> list[_Tensor]:
        out = [_Tensor("log_prob", tf.float32, (None,),
                       "log density in the units of the data (nats)")]
        if self.is_image:
            out.append(_Tensor("bits_per_dim", tf.float32, (None,),
                               "-log_prob / (D ln 2), D = H*W*C"))
        return out

    def _data_outputs(self) -> list[_Tensor]:
        finite = _Tensor("finite", tf.bool, (None,),
                         "true where every value of the example is finite; false where the "
                         "inverse flow overflowed to inf or NaN" + (
                             " (its integer images then hold 0 for NaN and clipped values "
                             "for inf, which are not the model's)" if self.is_image else ""))
        if not self.is_image:
            return [_Tensor("x", tf.float32, (None, self.num_dims), "examples, one per row"), finite]
        shape = (None, *self.model.event_shape)
        ib, n = self.int_bits, self.num_bits
        return [_Tensor("images", self.int_dtype, shape,
                        f"pixels scaled to 0..{2 ** ib - 1}: round(floor(level) * "
                        f"{2 ** ib - 1} / {2 ** n - 1}); see finite"),
                _Tensor("images_float", tf.float32, shape, f"pixel levels in [0, {2 ** n})"),
                finite]

    def _latents(self) -> _Tensor:
        return _Tensor("latents", tf.float32, (None, self.num_dims),
                       "flat latents z = f(x) of every level, standard normal under the model")

    # -- checks --------------------------------------------------------------

    def _check_context(self, kwargs: dict, batch: tf.Tensor, where: str) -> tuple[list, Any]:
        spec = self.model.spec
        context = kwargs["labels"] if spec.num_classes is not None else kwargs.get("context")
        return spec.graph_context_checks(context, batch, where), context

    def _check_levels(self, x: tf.Tensor, where: str) -> list:
        return self.model.spec.graph_level_checks(x, where)

    def _check_finite(self, x: tf.Tensor, what: str) -> list:
        return [tf.debugging.assert_equal(tf.reduce_all(tf.math.is_finite(x)), True,
                                          message=f"{what} must be finite")]

    # -- conversions -----------------------------------------------------

    def _bin_centres(self, images: tf.Tensor) -> tf.Tensor:
        return bin_centres(images, self.num_bits, self.int_bits)

    def _to_ints(self, x: tf.Tensor) -> tf.Tensor:
        top = 2 ** self.num_bits - 1
        levels = tf.clip_by_value(tf.floor(x), 0.0, float(top))
        levels = tf.where(tf.math.is_nan(levels), tf.zeros_like(levels), levels)
        scale = (2 ** self.int_bits - 1) / top
        return tf.cast(tf.round(levels * scale), self.int_dtype)

    def _data_dict(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        # The signatures speak float32 whatever the model's precision (a float64 model too).
        x = tf.cast(x, tf.float32)
        # uint8 has no NaN: the flag keeps an overflowed sample from passing for an image.
        finite = finite_rows(x)
        if not self.is_image:
            return {"x": x, "finite": finite}
        return {"images": self._to_ints(x), "images_float": x, "finite": finite}

    def _scores(self, x, context) -> dict[str, tf.Tensor]:
        log_prob = tf.cast(self.model.log_prob(x, context), tf.float32)
        out = {"log_prob": log_prob}
        if self.is_image:
            out["bits_per_dim"] = -log_prob / (self.num_dims * math.log(2.0))
        return out

    # -- bodies -------------------------------------------------------------

    def _data_in(self, kw: dict, where: str) -> tuple[tf.Tensor, Any]:
        """The data input as the model takes it (bin centres for images), after its checks."""
        x = kw["images"] if self.is_image else kw["x"]
        checks, context = self._check_context(kw, tf.shape(x)[0], where)
        if not self.is_image:
            checks += self._check_finite(x, f"{where}: x")
        with tf.control_dependencies(checks):
            return (self._bin_centres(x) if self.is_image else tf.identity(x)), context

    def log_prob(self, **kw):
        return self._scores(*self._data_in(kw, "log_prob"))

    def score(self, **kw):
        from tfflows.ood.scores import complexity_bits_per_dim, complexity_corrected

        x, context = self._data_in(kw, "score")
        bits = self._scores(x, context)["bits_per_dim"]
        complexity = complexity_bits_per_dim(kw["images"], self.num_bits)
        return {"score": complexity_corrected(bits, complexity), "bits_per_dim": bits,
                "complexity_bits_per_dim": complexity}

    def log_prob_float(self, **kw):
        x = kw["images"]
        checks, context = self._check_context(kw, tf.shape(x)[0], "log_prob_float")
        with tf.control_dependencies(checks + self._check_levels(x, "log_prob_float")):
            return self._scores(tf.identity(x), context)

    def encode(self, **kw):
        return {"latents": tf.cast(self.model.encode(*self._data_in(kw, "encode")), tf.float32)}

    def decode(self, **kw):
        z = kw["latents"]
        checks, context = self._check_context(kw, tf.shape(z)[0], "decode")
        with tf.control_dependencies(checks + self._check_finite(z, "decode: latents")):
            return self._data_dict(self.model.decode(tf.identity(z), context))

    def sample(self, **kw):
        n, temperature, seed = kw["num_samples"], kw["temperature"], kw["seed"]
        limit = f"sample: num_samples must be in 0..{self.max_samples}"
        checks = [
            tf.debugging.assert_greater_equal(n, 0, message=limit),
            tf.debugging.assert_less_equal(n, self.max_samples, message=limit),
            tf.debugging.assert_equal(tf.math.is_finite(temperature), True,
                                      message="sample: temperature must be finite"),
            tf.debugging.assert_greater_equal(temperature, 0.0,
                                              message="sample: temperature must be >= 0"),
        ]
        context = None
        if self.model.is_conditional:
            key = "labels" if self.model.num_classes is not None else "context"
            given = tf.shape(kw[key])[0]
            one_or_n = tf.logical_or(tf.equal(given, 1), tf.equal(given, n))
            checks.append(tf.debugging.assert_equal(
                one_or_n, True, message=f"sample: {key} must have 1 row (for all samples) "
                "or num_samples rows (one per sample)"))
            more, context = self._check_context(kw, given, "sample")
            checks += more
        options = {name: kw[name] for name in self.sample_options}
        for name, value in options.items():
            if value.dtype.is_floating:
                checks.append(tf.debugging.assert_equal(
                    tf.math.is_finite(value), True, message=f"sample: {name} must be finite"))
        with tf.control_dependencies(checks):
            n = tf.identity(n)
            if context is not None:
                rows = tf.concat([[n], tf.shape(context)[1:]], 0)
                context = tf.broadcast_to(context, rows)
            key = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
            eps = tf.random.stateless_normal(tf.stack([n, self.num_dims]), seed=key)
            eps = tf.reshape(eps, [-1, self.num_dims])
            if options:
                x = self.model.decode_with_options(eps * temperature, context, **options)
            else:
                x = self.model.decode(eps * temperature, context)
            return self._data_dict(x)

    # -- the table ---------------------------------------------------------

    def endpoints(self) -> list[_Endpoint]:
        ctx = self._context_inputs()
        data, latents = self._data(), self._latents()
        out = [_Endpoint("log_prob", (
            "log density of integer pixels scored at the bin centre (level + 0.5)" if self.is_image
            else "log density of the examples"), [data, *ctx], self._score_outputs(), self.log_prob)]
        if self.is_image:
            out.append(_Endpoint(
                "score", "complexity-corrected OOD score (Serra et al. 2020): bits/dim minus the "
                "PNG length in bits/dim; higher is more out-of-distribution",
                [data, *ctx], [
                    _Tensor("score", tf.float32, (None,), "bits_per_dim - complexity_bits_per_dim"),
                    _Tensor("bits_per_dim", tf.float32, (None,), "-log_prob / (D ln 2), D = H*W*C"),
                    _Tensor("complexity_bits_per_dim", tf.float32, (None,),
                            "PNG length (compression 9) of the reduced image, in bits per dimension"),
                ], self.score))
            out.append(_Endpoint(
                "log_prob_float", "exact log density of dequantized float pixel levels",
                [self._data(tf.float32), *ctx], self._score_outputs(), self.log_prob_float))
        scalars = [
            _Tensor("num_samples", tf.int32, (), f"how many samples, 0..{self.max_samples}"),
            _Tensor("temperature", tf.float32, (), "finite scale >= 0 of the base noise (1: the model)"),
            _Tensor("seed", tf.int64, (), "the same seed gives the same samples"),
        ]
        ctx_sample = [_Tensor(t.name, t.dtype, t.shape, t.description.replace(
            "one per example", "one for all samples or one per sample")) for t in ctx]
        options = [_Tensor(name, tf.as_dtype(o["dtype"]), (), o["description"], o["default"])
                   for name, o in self.sample_options.items()]
        out += [
            _Endpoint("sample", "draws samples, deterministic for a given seed" + (
                "; every input is required, and an option at its default gives the plain sample"
                if options else ""),
                      scalars + ctx_sample + options, self._data_outputs(), self.sample),
            _Endpoint("encode", "the flat latent z = f(x)" + (
                " of the bin centres" if self.is_image else ""), [data, *ctx], [latents], self.encode),
            _Endpoint("decode", "x = f^-1(z) for flat latents", [latents, *ctx],
                      self._data_outputs(), self.decode),
        ]
        return out


def _card(model: FlowModel, endpoints: list[_Endpoint], max_samples: int) -> dict[str, Any]:
    import tfflows

    signatures = {e.name: e.card() for e in endpoints}
    signatures = {"serving_default": {**signatures["log_prob"], "same_as": "log_prob"}, **signatures}
    card = {
        "format": "tfflows SavedModel signatures v1",
        "model": type(model).__name__,
        "tfflows_version": tfflows.__version__,
        "tensorflow_version": tf.__version__,
        "event_shape": list(model.event_shape),
        "num_dims": int(model.num_dims),
        "num_classes": model.num_classes,
        "context_dim": model.context_dim,
        "max_samples": max_samples,
        "config": model.get_config(),
        "signatures": signatures,
    }
    if model.data_kind == "image":
        n = _num_bits(model)
        card["num_bits"] = n
        card["dequantization"] = (
            f"integer pixels x are reduced to k = floor(x / 2^("
            f"{integer_pixel_bits(saved_model_pixel_dtype(n), n)} - {n})) and "
            "scored at k + 0.5: log_prob is the density at the bin centre in pixel-level units "
            "(a deterministic estimate of the log-probability of the integer image); "
            "log_prob_float scores float levels as given.")
    return card


def describe_signatures(model: FlowModel, max_samples: int = MAX_SAMPLES) -> dict[str, Any]:
    """The model card written beside an export: every signature's inputs and outputs.

    Args:
      model: a :class:`~tfflows.models.FlowModel`.
      max_samples: the cap on ``num_samples``.

    Returns:
      A JSON-safe dict; ``["signatures"][name]["inputs"|"outputs"][tensor]``
      gives ``dtype``, ``shape`` (−1 for the batch) and ``description``.
    """
    return _card(model, _Endpoints(model, max_samples).endpoints(), max_samples)


def is_saved_model_folder(path: str) -> bool:
    """True where ``path`` holds what :func:`export_saved_model` writes: the graph and the model card."""
    return (os.path.isfile(os.path.join(path, "saved_model.pb"))
            and os.path.isfile(os.path.join(path, CARD_FILE)))


def _check_path(path: str, overwrite: bool) -> bool:
    """Whether ``path`` has something to replace; raises where it must not be replaced."""
    if not os.path.lexists(path):
        return False
    if not os.path.isdir(path) or os.path.islink(path):
        raise ValueError(f"export_saved_model: path {path!r} exists and is not a folder.")
    if not os.listdir(path):
        return True  # an empty folder: nothing lost by replacing it
    if not overwrite:
        raise ValueError(
            f"export_saved_model: {path!r} is not empty; TF Serving versions are immutable, "
            "so export to a new version folder or pass overwrite=True.")
    if not is_saved_model_folder(path):
        raise ValueError(
            f"export_saved_model: {path!r} is not empty and holds no SavedModel written by tfflows "
            f"(expected saved_model.pb and {CARD_FILE}); refusing to overwrite it.")
    return True


def export_saved_model(model: FlowModel, path: str | os.PathLike, *, max_samples: int = MAX_SAMPLES,
                       overwrite: bool = False) -> str:
    """Writes ``model`` as a SavedModel with the signatures of this module's docstring.

    For TF Serving, ``path`` is ``<base>/<model_name>/<version>``. Besides
    the SavedModel, ``assets.extra/model_card.json`` describes every
    signature (see :func:`describe_signatures`).

    Args:
      model: a :class:`~tfflows.models.FlowModel` (trained: an uninitialised
        ActNorm is exported as it is, with a warning).
      path: the version folder to write; must be missing or empty unless
        ``overwrite``.
      max_samples: the largest ``num_samples`` a ``sample`` request may ask for.
      overwrite: replace an existing SavedModel at ``path`` (one written by
        tfflows: with ``saved_model.pb`` and ``assets.extra/model_card.json``).

    The new version is written completely into a hidden temporary folder
    beside ``path`` and then moved into place; the old version is removed
    only after that, so a failed or killed export leaves it whole.

    Returns:
      ``path`` as a string.

    Raises:
      NonFiniteWeightsError: a weight holds inf or NaN (a ``ValueError``).
      ValueError: not a flow model, a bad ``max_samples`` or an occupied ``path``.
    """
    from tfflows.models.base import FlowModel  # noqa: F811  (at run time, not only for types)

    if not isinstance(model, FlowModel):
        raise ValueError(f"export_saved_model: expected a tfflows FlowModel, got {type(model).__name__}.")
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise ValueError(f"export_saved_model: max_samples must be a positive integer, got {max_samples!r}.")
    if model.data_kind == "image" and not 1 <= _num_bits(model) <= 16:
        raise ValueError(f"export_saved_model: num_bits must be in 1..16, got {model.num_bits!r}.")
    check_finite_weights(model, "export")
    if not model.is_initialized:
        warnings.warn(f"export_saved_model: {type(model).__name__} has ActNorm layers that were "
                      "never initialised (an untrained model?); exporting it as it is.",
                      RuntimeWarning, stacklevel=2)
    path = os.fspath(path)
    replace = _check_path(path, overwrite)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    endpoints = _Endpoints(model, max_samples).endpoints()
    # Keras's ExportArchive holds the endpoints and, at write time, exactly the TF variables
    # their graphs capture. (Tracking the model itself would add the Keras wrappers as a
    # second, unnamed copy of every weight that TF1-style loaders (TF Serving,
    # saved_model_cli run) restore in place of the captured ones, which then read as
    # uninitialised: so the archive does not track the model.) TF Serving's
    # "serving_default" is the first endpoint, log_prob.
    archive = keras.export.ExportArchive()
    # Stock convolutions in the graph: the CPU matmul forms suit training here,
    # not necessarily the machine that serves.
    with conv_implementation("conv"):
        for endpoint in endpoints:
            function = endpoint.function()
            function.get_concrete_function()  # traced here, inside conv_implementation
            archive.add_endpoint(endpoint.name, function)
    card = _card(model, endpoints, max_samples)
    with atomic_dir(path, overwrite=replace) as tmp:
        archive.write_out(tmp, verbose=False)
        os.makedirs(os.path.join(tmp, "assets.extra"), exist_ok=True)
        atomic_write_json(os.path.join(tmp, CARD_FILE), card)
    return path
