"""The serving endpoints of one model: a declarative table of signatures, their checks and card.

One list (:meth:`Endpoints.endpoints`) drives the signatures, their input
checks and the model card of :func:`tfflows.export.export_saved_model`.

The flow itself is traced once per computation, not once per signature: the
signatures call shared ``tf.function`` s (:class:`SharedFlow`: the density, the
latents, the inverse), so a SavedModel holds each flow graph once and each
signature adds only its own checks and conversions. ``log_prob``, ``score``
and ``log_prob_float`` share the density; ``sample`` and ``decode`` the inverse
(a model with sampling options of its own, TarFlow, samples through a second
inverse that takes them).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import tensorflow as tf

from tfflows.data.pixels import bin_centres, integer_pixel_bits, saved_model_pixel_dtype
from tfflows.guard import finite_rows

if TYPE_CHECKING:
    from tfflows.models.base import FlowModel

__all__ = ["CARD_FILE", "Endpoint", "Endpoints", "MAX_SAMPLES", "SharedFlow", "Tensor", "declared_num_bits"]

MAX_SAMPLES = 4096
"""Default cap on ``num_samples`` per ``sample`` request."""

CARD_FILE = os.path.join("assets.extra", "model_card.json")
"""Where in a SavedModel folder :func:`~tfflows.export.export_saved_model` writes the model card."""


@dataclass
class Tensor:
    """One named input or output of a signature."""

    name: str
    dtype: tf.DType
    shape: tuple
    description: str
    default: Any = None  # the value that leaves the result as without this input

    def spec(self) -> tf.TensorSpec:
        return tf.TensorSpec(self.shape, self.dtype, name=self.name)

    def card(self) -> dict[str, Any]:
        card = {
            "dtype": self.dtype.name,
            "shape": [-1 if d is None else d for d in self.shape],
            "description": self.description,
        }
        if self.default is not None:
            card["default"] = self.default
        return card


@dataclass
class Endpoint:
    """A signature: its inputs and outputs, what it does, and its body."""

    name: str
    description: str
    inputs: list[Tensor]
    outputs: list[Tensor]
    body: Callable[..., dict[str, tf.Tensor]]

    def function(self) -> tf.types.experimental.GenericFunction:
        names = [t.name for t in self.inputs]

        def serve(*args: tf.Tensor) -> dict[str, tf.Tensor]:
            # Servers and loaded signatures do not enforce the specs' shapes (a placeholder's
            # shape is a promise, not a check): EnsureShape fails the request at run time with
            # "Shape of tensor images [1,8,8,3] is not compatible with expected shape [?,8,8,1]".
            checked = [tf.ensure_shape(a, t.shape) for a, t in zip(args, self.inputs)]
            return self.body(**dict(zip(names, checked)))

        return tf.function(serve, input_signature=[t.spec() for t in self.inputs], autograph=False)

    def card(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "inputs": {t.name: t.card() for t in self.inputs},
            "outputs": {t.name: t.card() for t in self.outputs},
        }


class SharedFlow:
    """The model's flow computations as ``tf.function`` s that every signature calls.

    A ``tf.function`` called inside another is traced once per input
    signature and saved once, as a function the callers' graphs call; so each
    computation here is one function in the SavedModel however many
    signatures use it. Each takes float data (or latents) and the context as
    the signatures pass them (``None`` for an unconditional model).
    """

    def __init__(self, model: FlowModel) -> None:
        self.log_prob = tf.function(model.log_prob, autograph=False, reduce_retracing=False)
        self.encode = tf.function(model.encode, autograph=False, reduce_retracing=False)
        self.decode = tf.function(model.decode, autograph=False, reduce_retracing=False)
        self.decode_with_options = tf.function(
            model.decode_with_options, autograph=False, reduce_retracing=False
        )


def declared_num_bits(model: FlowModel) -> int:
    """The model's declared ``num_bits`` (8 for an image model that declares none)."""
    return 8 if model.num_bits is None else int(model.num_bits)


class Endpoints:
    """Builds the serving endpoints of one model (plain Python: nothing here is saved)."""

    def __init__(self, model: FlowModel, max_samples: int) -> None:
        self.model = model
        self.max_samples = max_samples
        # A model's own sampling inputs (TarFlow: guidance, denoise), served through its
        # decode_with_options; other models offer none.
        self.sample_options = dict(model.sample_signature_options)
        self.flow = SharedFlow(model)
        self.is_image = model.data_kind == "image"
        self.num_dims = int(model.num_dims)
        if self.is_image:
            self.num_bits = declared_num_bits(model)
            # The models' own rule for integer pixels (tfflows.data.integer_pixel_bits).
            self.int_dtype = saved_model_pixel_dtype(self.num_bits)
            self.int_bits = integer_pixel_bits(self.int_dtype, self.num_bits)

    # -- inputs and outputs ----------------------------------------------

    def _data(self, dtype: tf.DType | None = None) -> Tensor:
        if not self.is_image:
            return Tensor("x", tf.float32, (None, self.num_dims), "examples, one per row")
        shape = (None, *self.model.event_shape)
        n, ib = self.num_bits, self.int_bits
        if dtype is None or dtype.is_integer:
            how = "" if n == ib else f", reduced to {n} bits as floor(x / {2 ** (ib - n)}),"
            return Tensor(
                "images",
                self.int_dtype,
                shape,
                f"{ib}-bit pixels{how} scored at the bin centre (level + 0.5)",
            )
        return Tensor("images", tf.float32, shape, f"dequantized pixel levels in [0, {2**n}) ({n}-bit data)")

    def _context_inputs(self) -> list[Tensor]:
        model = self.model
        if model.num_classes is not None:
            return [
                Tensor(
                    "labels", tf.int32, (None,), f"class ids in 0..{model.num_classes - 1}, one per example"
                )
            ]
        if model.context_dim is not None:
            return [
                Tensor(
                    "context",
                    tf.float32,
                    (None, model.context_dim),
                    "finite context vectors, one per example",
                )
            ]
        return []

    def _score_outputs(self) -> list[Tensor]:
        out = [Tensor("log_prob", tf.float32, (None,), "log density in the units of the data (nats)")]
        if self.is_image:
            out.append(Tensor("bits_per_dim", tf.float32, (None,), "-log_prob / (D ln 2), D = H*W*C"))
        out.append(
            Tensor(
                "finite",
                tf.bool,
                (None,),
                "true where log_prob is finite; false where the flow overflowed on the "
                "example (inputs far outside the data), whose scores are then not the model's",
            )
        )
        return out

    def _data_outputs(self) -> list[Tensor]:
        finite = Tensor(
            "finite",
            tf.bool,
            (None,),
            "true where every value of the example is finite; false where the "
            "inverse flow overflowed to inf or NaN"
            + (
                " (its integer images then hold 0 for NaN and clipped values "
                "for inf, which are not the model's)"
                if self.is_image
                else ""
            ),
        )
        if not self.is_image:
            return [Tensor("x", tf.float32, (None, self.num_dims), "examples, one per row"), finite]
        shape = (None, *self.model.event_shape)
        ib, n = self.int_bits, self.num_bits
        return [
            Tensor(
                "images",
                self.int_dtype,
                shape,
                f"pixels scaled to 0..{2**ib - 1}: round(floor(level) * "
                f"{2**ib - 1} / {2**n - 1}); see finite",
            ),
            Tensor("images_float", tf.float32, shape, f"pixel levels in [0, {2**n})"),
            finite,
        ]

    def _latents(self) -> Tensor:
        return Tensor(
            "latents",
            tf.float32,
            (None, self.num_dims),
            "flat latents z = f(x) of every level, standard normal under the model",
        )

    # -- checks --------------------------------------------------------------

    def _check_context(self, kwargs: dict, batch: tf.Tensor, where: str) -> tuple[list, Any]:
        spec = self.model.spec
        context = kwargs["labels"] if spec.num_classes is not None else kwargs.get("context")
        return spec.graph_context_checks(context, batch, where), context

    def _check_levels(self, x: tf.Tensor, where: str) -> list:
        return self.model.spec.graph_level_checks(x, where)

    def _check_finite(self, x: tf.Tensor, what: str) -> list:
        return [
            tf.debugging.assert_equal(
                tf.reduce_all(tf.math.is_finite(x)), True, message=f"{what} must be finite"
            )
        ]

    # -- conversions -----------------------------------------------------

    def _bin_centres(self, images: tf.Tensor) -> tf.Tensor:
        return bin_centres(images, self.num_bits, self.int_bits)

    def _to_ints(self, x: tf.Tensor) -> tf.Tensor:
        top = 2**self.num_bits - 1
        levels = tf.clip_by_value(tf.floor(x), 0.0, float(top))
        levels = tf.where(tf.math.is_nan(levels), tf.zeros_like(levels), levels)
        scale = (2**self.int_bits - 1) / top
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
        log_prob = tf.cast(self.flow.log_prob(x, context), tf.float32)
        out = {"log_prob": log_prob}
        if self.is_image:
            out["bits_per_dim"] = -log_prob / (self.num_dims * math.log(2.0))
        out["finite"] = tf.math.is_finite(log_prob)
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

    def log_prob(self, **kw: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._scores(*self._data_in(kw, "log_prob"))

    def score(self, **kw: tf.Tensor) -> dict[str, tf.Tensor]:
        from tfflows.ood.registry import image_scores
        from tfflows.ood.scores import complexity_bits_per_dim, complexity_corrected

        x, context = self._data_in(kw, "score")
        bits = self._scores(x, context)["bits_per_dim"]
        complexity = complexity_bits_per_dim(kw["images"], self.num_bits)
        out = {
            "score": complexity_corrected(bits, complexity),
            "bits_per_dim": bits,
            "complexity_bits_per_dim": complexity,
            "finite": tf.math.is_finite(bits),
        }
        for extra in image_scores()[1:]:  # the first, complexity_corrected, is "score"
            out[extra.name] = tf.cast(extra.compute(kw["images"], bits, self.num_bits), tf.float32)
        return out

    def log_prob_float(self, **kw: tf.Tensor) -> dict[str, tf.Tensor]:
        x = kw["images"]
        checks, context = self._check_context(kw, tf.shape(x)[0], "log_prob_float")
        with tf.control_dependencies(checks + self._check_levels(x, "log_prob_float")):
            return self._scores(tf.identity(x), context)

    def encode(self, **kw: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"latents": tf.cast(self.flow.encode(*self._data_in(kw, "encode")), tf.float32)}

    def decode(self, **kw: tf.Tensor) -> dict[str, tf.Tensor]:
        z = kw["latents"]
        checks, context = self._check_context(kw, tf.shape(z)[0], "decode")
        with tf.control_dependencies(checks + self._check_finite(z, "decode: latents")):
            return self._data_dict(self.flow.decode(tf.identity(z), context))

    def sample(self, **kw: tf.Tensor) -> dict[str, tf.Tensor]:
        n, temperature, seed = kw["num_samples"], kw["temperature"], kw["seed"]
        limit = f"sample: num_samples must be in 0..{self.max_samples}"
        checks = [
            tf.debugging.assert_greater_equal(n, 0, message=limit),
            tf.debugging.assert_less_equal(n, self.max_samples, message=limit),
            tf.debugging.assert_equal(
                tf.math.is_finite(temperature), True, message="sample: temperature must be finite"
            ),
            tf.debugging.assert_greater_equal(temperature, 0.0, message="sample: temperature must be >= 0"),
        ]
        context = None
        if self.model.is_conditional:
            key = "labels" if self.model.num_classes is not None else "context"
            given = tf.shape(kw[key])[0]
            one_or_n = tf.logical_or(tf.equal(given, 1), tf.equal(given, n))
            checks.append(
                tf.debugging.assert_equal(
                    one_or_n,
                    True,
                    message=f"sample: {key} must have 1 row (for all samples) "
                    "or num_samples rows (one per sample)",
                )
            )
            more, context = self._check_context(kw, given, "sample")
            checks += more
        options = {name: kw[name] for name in self.sample_options}
        for name, value in options.items():
            if value.dtype.is_floating:
                checks.append(
                    tf.debugging.assert_equal(
                        tf.math.is_finite(value), True, message=f"sample: {name} must be finite"
                    )
                )
        with tf.control_dependencies(checks):
            n = tf.identity(n)
            if context is not None:
                rows = tf.concat([[n], tf.shape(context)[1:]], 0)
                context = tf.broadcast_to(context, rows)
            key = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
            eps = tf.random.stateless_normal(tf.stack([n, self.num_dims]), seed=key)
            eps = tf.reshape(eps, [-1, self.num_dims])
            if options:
                x = self.flow.decode_with_options(eps * temperature, context, **options)
            else:
                x = self.flow.decode(eps * temperature, context)
            return self._data_dict(x)

    # -- the table ---------------------------------------------------------

    def endpoints(self) -> list[Endpoint]:
        from tfflows.ood.registry import image_scores

        ctx = self._context_inputs()
        data, latents = self._data(), self._latents()
        out = [
            Endpoint(
                "log_prob",
                (
                    "log density of integer pixels scored at the bin centre (level + 0.5)"
                    if self.is_image
                    else "log density of the examples"
                ),
                [data, *ctx],
                self._score_outputs(),
                self.log_prob,
            )
        ]
        if self.is_image:
            out.append(
                Endpoint(
                    "score",
                    "complexity-corrected OOD score (Serra et al. 2020): bits/dim minus the "
                    "PNG length in bits/dim; higher is more out-of-distribution",
                    [data, *ctx],
                    [
                        Tensor("score", tf.float32, (None,), "bits_per_dim - complexity_bits_per_dim"),
                        Tensor("bits_per_dim", tf.float32, (None,), "-log_prob / (D ln 2), D = H*W*C"),
                        Tensor(
                            "complexity_bits_per_dim",
                            tf.float32,
                            (None,),
                            "PNG length (compression 9) of the reduced image, in bits per dimension",
                        ),
                        Tensor("finite", tf.bool, (None,), "true where bits_per_dim is finite"),
                        *[
                            Tensor(extra.name, tf.float32, (None,), extra.description)
                            for extra in image_scores()[1:]
                        ],
                    ],
                    self.score,
                )
            )
            out.append(
                Endpoint(
                    "log_prob_float",
                    "exact log density of dequantized float pixel levels",
                    [self._data(tf.float32), *ctx],
                    self._score_outputs(),
                    self.log_prob_float,
                )
            )
        scalars = [
            Tensor("num_samples", tf.int32, (), f"how many samples, 0..{self.max_samples}"),
            Tensor("temperature", tf.float32, (), "finite scale >= 0 of the base noise (1: the model)"),
            Tensor("seed", tf.int64, (), "the same seed gives the same samples"),
        ]
        ctx_sample = [
            Tensor(
                t.name,
                t.dtype,
                t.shape,
                t.description.replace("one per example", "one for all samples or one per sample"),
            )
            for t in ctx
        ]
        options = [
            Tensor(name, tf.as_dtype(o["dtype"]), (), o["description"], o["default"])
            for name, o in self.sample_options.items()
        ]
        out += [
            Endpoint(
                "sample",
                "draws samples, deterministic for a given seed"
                + (
                    "; every input is required, and an option at its default gives the plain sample"
                    if options
                    else ""
                ),
                scalars + ctx_sample + options,
                self._data_outputs(),
                self.sample,
            ),
            Endpoint(
                "encode",
                "the flat latent z = f(x)" + (" of the bin centres" if self.is_image else ""),
                [data, *ctx],
                [latents],
                self.encode,
            ),
            Endpoint(
                "decode", "x = f^-1(z) for flat latents", [latents, *ctx], self._data_outputs(), self.decode
            ),
        ]
        return out
