"""DataSpec: what a model's data are — one example's shape, pixels, contexts, batches — and its checks.

Every rule about a model's inputs lives here, once: what one example is
(``event_shape``, ``data_kind``), what a pixel is (``num_bits``, integer
pixels, bin centres, dequantization), what a context is (class labels or
vectors), how a batch is unpacked (tuples, TFDS dicts, sample weights), and
what the first training batch must look like. The model, its TFP
distribution, the exported SavedModel, ``tfflows.ood``,
``tfflows.distributed`` and the CLI all ask a model's :attr:`spec`
(``model.spec``) instead of guessing from its attributes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfflows.data.arrays import as_tensor
from tfflows.data.first_batch import check_first_batch
from tfflows.data.graph_checks import graph_context_checks, graph_level_checks
from tfflows.data.pipeline import image_key, label_key
from tfflows.data.pixels import integer_pixel_bits, pixel_levels
from tfflows.data.weights import check_weight_array, sample_weight

__all__ = ["DATA_KINDS", "DataSpec", "unless_empty"]

DATA_KINDS = ("image", "vector", "sequence")
"""What one example can be: ``"image"`` [H, W, C], ``"vector"`` [D] or ``"sequence"`` [T, D]."""


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """The data contract of one model: shapes, pixel codec, contexts, batches and their checks.

    Built once by the model (``model.spec``) from what it declares. Checks
    of values run eagerly; inside a graph (``tf.function``, ``fit``, XLA)
    only dtypes and shapes are checked, except class labels, which a graph
    checks at run time (``InvalidArgumentError``; XLA compiles that away).

    Attributes:
      owner: the model's class name, the first word of every message.
      event_shape: shape of one example, ``(H, W, C)`` or ``(D,)``.
      data_kind: one of :data:`DATA_KINDS`.
      num_bits: bits per pixel of an image model's levels ``[0, 2^num_bits)``; None otherwise.
      num_classes: number of classes of a class-conditional model.
      context_dim: size of the context vectors of a vector-conditional model.
      dtype: the flow's float dtype (``"float32"`` or ``"float64"``).
      bounded_levels: the flow is defined only for pixel levels inside
        [0, 2^num_bits) (RealNVP's logit): ``encode`` checks the range too.
      validate_args: TFP's convention: in a graph too (``tf.function``,
        ``fit``, ``predict``), values, pixel levels and contexts are checked by
        ``tf.debugging`` asserts (an ``InvalidArgumentError`` at run time; XLA
        compiles asserts away). Off by default: a training step pays nothing.
    """

    owner: str
    event_shape: tuple[int, ...]
    data_kind: str = "vector"
    num_bits: int | None = None
    num_classes: int | None = None
    context_dim: int | None = None
    dtype: str = "float32"
    bounded_levels: bool = False
    validate_args: bool = False

    def __post_init__(self) -> None:
        if self.data_kind not in DATA_KINDS:
            raise ValueError(f"{self.owner}: data_kind must be one of {DATA_KINDS}, got {self.data_kind!r}.")

    # -- what the data are ---------------------------------------------------

    @property
    def num_dims(self) -> int:
        """Number of scalars in one example (the latent's size)."""
        return int(np.prod(self.event_shape))

    @property
    def is_conditional(self) -> bool:
        """Whether the model takes a context (class labels or vectors)."""
        return self.num_classes is not None or self.context_dim is not None

    @property
    def context_size(self) -> int | None:
        """Width of the context the flow sees: ``num_classes`` (one-hot) or ``context_dim``."""
        return self.num_classes if self.num_classes is not None else self.context_dim

    @property
    def models_pixel_levels(self) -> bool:
        """True for image models of ``num_bits``-bit pixel levels (bits/dim is their unit)."""
        return self.data_kind == "image" and self.num_bits is not None

    @property
    def per_dim_metric(self) -> str:
        """``"bits_per_dim"`` for pixel levels, ``"nats_per_dim"`` for continuous data."""
        return "bits_per_dim" if self.models_pixel_levels else "nats_per_dim"

    @property
    def nats_per_unit(self) -> float:
        """Nats in one unit of :attr:`per_dim_metric` per example: D·log 2 for bits, D for nats."""
        return self.num_dims * (math.log(2.0) if self.models_pixel_levels else 1.0)

    def describe_context(self) -> str:
        """What a context of this model is, in words (for messages and model cards)."""
        if self.num_classes is not None:
            return f"class labels in 0..{self.num_classes - 1}"
        if self.context_dim is not None:
            return f"context vectors of size {self.context_dim}"
        return "no context"

    # -- contexts ------------------------------------------------------------

    def context(self, context: Any, batch: int | None = None) -> tf.Tensor | None:
        """The context as the flow sees it: one-hot ``[batch, num_classes]`` or vectors ``[batch, C]``.

        Class labels are integers in ``0..num_classes - 1`` of shape [batch]
        (a float one-hot ``[batch, num_classes]`` is taken as it is); the
        range is checked in int64 before any narrowing, eagerly by value and
        in a graph by a run-time assert. Context vectors are float
        ``[batch, context_dim]``; eagerly inf or NaN raise.

        Raises:
          ValueError: a context for an unconditional model, none for a
            conditional one, or a context of the wrong kind, shape or range.
        """
        name = self.owner
        if not self.is_conditional:
            if context is not None:
                raise ValueError(f"{name}: this model is not conditional, but a context was given.")
            return None
        if context is None:
            what = "class labels" if self.num_classes else f"context vectors of size {self.context_dim}"
            raise ValueError(f"{name}: this model is conditional; pass context= ({what}).")
        context = as_tensor(context, name, "context", self.describe_context())
        if context.dtype == tf.bool or not (context.dtype.is_integer or context.dtype.is_floating):
            what = "integer class labels" if self.num_classes else "a float context"
            raise ValueError(f"{name}: expected {what}, got a {context.dtype.name} context.")
        rows = context.shape[0] if context.shape.rank else None
        if batch is not None and rows is not None and rows != batch:
            raise ValueError(
                f"{name}: expected one context per example, {batch} for a batch of {batch}, got {rows}."
            )
        if self.num_classes is not None:
            return self._labels(context)
        if not context.dtype.is_floating:
            raise ValueError(
                f"{name}: expected float context vectors [batch, {self.context_dim}], got "
                f"{context.dtype.name} of shape {context.shape}."
            )
        if context.shape.rank != 2 or context.shape[-1] != self.context_dim:
            raise ValueError(
                f"{name}: expected context of shape [batch, {self.context_dim}], got {context.shape}."
            )
        context = self._finite_context(context)
        if self.validate_args and not tf.executing_eagerly():
            context = self._asserted(context, "context vectors", levels=False)
        return context

    def _finite_context(self, context: tf.Tensor) -> tf.Tensor:
        """``context`` in the flow's dtype; eagerly, values that are not finite there raise."""
        context = tf.cast(context, self.dtype)
        if tf.executing_eagerly() and not bool(tf.reduce_all(tf.math.is_finite(context))):
            raise ValueError(
                f"{self.owner}: expected a finite context in {self.dtype}, got "
                "inf or NaN values (or values beyond its range)."
            )
        return context

    def _labels(self, context: tf.Tensor) -> tf.Tensor:
        name, k = self.owner, int(self.num_classes or 0)
        if context.dtype.is_floating and context.shape.rank == 2 and context.shape[-1] == k:
            return self._finite_context(context)  # already one-hot
        if context.dtype.is_floating or context.dtype == tf.bool:
            raise ValueError(
                f"{name}: expected integer class labels in 0..{k - 1} (or one-hot [batch, {k}]), "
                f"got {context.dtype.name} of shape {context.shape}."
            )
        if not context.dtype.is_integer:
            raise ValueError(
                f"{name}: expected integer class labels in 0..{k - 1}, got {context.dtype.name}."
            )
        if context.shape.rank not in (None, 1):
            raise ValueError(f"{name}: expected labels of shape [batch], got shape {context.shape}.")
        # The range is checked before any narrowing: int32(2**40) would wrap into range.
        wide = tf.cast(context, tf.int64) if context.dtype != tf.uint64 else context
        if not tf.executing_eagerly():
            # In a graph the values come at run time: an InvalidArgumentError then.
            # (XLA compiles asserts away; jit-compiled steps skip this check.)
            in_range = (
                tf.reduce_all((wide >= 0) & (wide < k))
                if wide.dtype != tf.uint64
                else tf.reduce_all(wide < k)
            )
            check = tf.debugging.Assert(
                in_range, [f"{name}: expected class labels in 0..{k - 1}, got", wide], summarize=16
            )
            with tf.control_dependencies([check]):
                labels = tf.cast(tf.identity(wide), tf.int32)
        else:
            if tf.size(wide) > 0:
                low, high = int(tf.reduce_min(wide)), int(tf.reduce_max(wide))
                if low < 0 or high >= k:
                    raise ValueError(
                        f"{name}: expected class labels in 0..{k - 1}, got labels from {low} to {high}."
                    )
            labels = tf.cast(wide, tf.int32)
        # tf.one_hot maps an out-of-range label to a zero vector without a word: checked above.
        return tf.one_hot(labels, k, dtype=self.dtype)

    def graph_context_checks(
        self, context: tf.Tensor | None, batch: tf.Tensor, where: str
    ) -> list[tf.Operation]:
        """In-graph asserts on a served context: labels in range, vectors finite, one per example.

        The checks a SavedModel signature always runs (and ``validate_args``
        asks for): an ``InvalidArgumentError`` at run time names ``where``.
        """
        return graph_context_checks(self, context, batch, where)

    def graph_level_checks(self, x: tf.Tensor, where: str) -> list[tf.Operation]:
        """In-graph asserts that ``x`` holds finite pixel levels in [0, 2^num_bits) (image models)."""
        return graph_level_checks(self, x, where)

    def contexts_for_samples(self, context: Any, num_samples: int) -> Any:
        """``sample``'s context: one label or vector repeated ``num_samples`` times, or one each.

        Raises:
          ValueError: a batch of contexts whose size is neither 1 nor ``num_samples``.
        """
        if context is None or not self.is_conditional:
            return context
        context = as_tensor(context, self.owner, "context", self.describe_context())
        if self.num_classes is not None and context.shape.rank == 0:
            if not context.dtype.is_integer:
                raise ValueError(
                    f"{self.owner}: expected an integer class label in "
                    f"0..{self.num_classes - 1}, got {context.dtype.name}."
                )
            context = tf.fill([num_samples], context)  # its own dtype: context() checks the range
        elif self.context_dim is not None and context.shape.rank == 1:
            context = tf.tile(context[None], [num_samples, 1])
        if context.shape.rank and context.shape[0] not in (None, num_samples):
            single = "a scalar label" if self.num_classes is not None else f"shape [{self.context_dim}]"
            raise ValueError(
                f"{self.owner}: expected {num_samples} contexts (one per sample) or a "
                f"single one without the batch axis ({single}), got {context.shape[0]}."
            )
        return context

    # -- examples and latents ------------------------------------------------

    def check_x(
        self,
        x: Any,
        what: str = "x",
        levels: bool = False,
        values: bool = True,
        seed: tf.Tensor | None = None,
    ) -> tf.Tensor:
        """``x`` in the flow's dtype after its dtype and shape checks; eagerly its values too.

        Eagerly, inf or NaN values raise, and with ``levels`` so do pixel
        levels outside [0, 2^num_bits) of an image model. Inside a graph the
        values are not checked, so a training step pays nothing: inf or NaN
        give a NaN result, which ``fit``'s non-finite guard skips.

        Integer pixels given to an image model with ``num_bits`` become
        levels by :func:`tfflows.data.pixel_levels`, the exported SavedModel's
        rule: bin centres, or uniform noise from the stateless ``seed``.
        Eagerly, pixels outside their dtype's bit depth raise.

        Raises:
          ValueError: a wrong dtype or shape, or (eagerly) bad values.
        """
        name = self.owner
        x = as_tensor(
            x, name, what, f"an array of numbers of shape [batch, {', '.join(map(str, self.event_shape))}]"
        )
        pixels = x.dtype.is_integer and self.models_pixel_levels
        if not x.dtype.is_floating and not pixels:
            hint = (
                " Integer pixels are read by image models with num_bits." if self.data_kind == "image" else ""
            )
            raise ValueError(f"{name}: {what} must be float32 or float64, got {x.dtype.name}.{hint}")
        k = len(self.event_shape)
        if x.shape.rank is not None and (
            x.shape.rank < k + 1 or not x.shape[-k:].is_compatible_with(self.event_shape)
        ):
            hint = (
                " (one example without a batch axis? batch the data, e.g. dataset.batch(64))"
                if x.shape.rank == k and x.shape.is_compatible_with(self.event_shape)
                else ""
            )
            raise ValueError(
                f"{name}: expected {what} of shape [batch, {', '.join(map(str, self.event_shape))}], "
                f"got shape {x.shape}{hint}."
            )
        if pixels:
            return tf.cast(self.integer_levels(x, what, values, seed), self.dtype)
        if values and tf.executing_eagerly():
            self.check_values(x, what, levels)
        elif values and self.validate_args:
            x = self._asserted(x, what, levels)
        return tf.cast(x, self.dtype)

    def _asserted(self, x: tf.Tensor, what: str, levels: bool) -> tf.Tensor:
        """``x`` behind in-graph asserts: finite values, and pixel levels in range when ``levels``."""
        if levels and self.models_pixel_levels:
            checks = self.graph_level_checks(x, f"{self.owner}: {what}")
        else:
            checks = [
                tf.debugging.assert_equal(
                    tf.reduce_all(tf.math.is_finite(x)), True, message=f"{self.owner}: expected finite {what}"
                )
            ]
        with tf.control_dependencies(checks):
            return tf.identity(x)

    def integer_levels(
        self, x: tf.Tensor, what: str = "x", check: bool = True, seed: tf.Tensor | None = None
    ) -> tf.Tensor:
        """Integer pixels as float32 levels (:func:`tfflows.data.pixel_levels`): bin centres, or
        noisy with a ``seed``; with ``check``, pixels outside their dtype's bits raise eagerly."""
        bits = self.pixel_bits(x.dtype, what)
        if check and tf.executing_eagerly():
            self.check_pixels(x, what, bits)
        return pixel_levels(x, int(self.num_bits or 0), noise=seed is not None, seed=seed)

    def pixel_bits(self, dtype: tf.DType, what: str = "x") -> int:
        """The bit depth of integer pixels of ``dtype`` (:func:`tfflows.data.integer_pixel_bits`)."""
        try:
            return integer_pixel_bits(dtype, int(self.num_bits or 0))
        except ValueError as err:
            raise ValueError(f"{self.owner}: {what}: {err}") from None

    def check_pixels(self, x: tf.Tensor, what: str, bits: int) -> None:
        """Eager only: raises on integer pixels outside [0, 2^bits)."""
        if tf.size(x) == 0 or x.dtype in (tf.uint8, tf.uint16):
            return
        low, high = int(tf.reduce_min(x)), int(tf.reduce_max(x))
        if low < 0 or high >= 2**bits:
            raise ValueError(
                f"{self.owner}: expected {what} as {bits}-bit pixels in 0..{2**bits - 1} "
                f"({x.dtype.name} pixels are read as the SavedModel's {bits}-bit input), got values "
                f"from {low} to {high}."
            )

    def _check_finite(self, x: tf.Tensor, what: str) -> None:
        if tf.size(x) == 0:
            return
        bad = int(tf.size(x)) - int(tf.reduce_sum(tf.cast(tf.math.is_finite(x), tf.int32)))
        if bad:
            raise ValueError(f"{self.owner}: expected finite {what}, got {bad} inf or NaN values.")

    def check_values(self, x: tf.Tensor, what: str = "x", levels: bool = False) -> None:
        """Eager only: raises on inf or NaN, and on pixel levels out of range when ``levels``."""
        if tf.size(x) == 0:
            return
        self._check_finite(x, what)
        if levels and self.models_pixel_levels:
            low, high = float(tf.reduce_min(x)), float(tf.reduce_max(x))
            top = 2 ** int(self.num_bits or 0)
            if low < 0 or high >= top:
                hint = (
                    " (8-bit pixels given to a model of fewer bits? reduce them with "
                    "tfflows.data.make_dataset(..., num_bits=...))"
                    if top <= high < 256
                    else ""
                )
                raise ValueError(
                    f"{self.owner}: expected {what} as pixel levels in [0, {top}) for "
                    f"num_bits={self.num_bits}, got values from {low:g} to {high:g}{hint}."
                )

    def check_result(self, result: tf.Tensor, what: str, x: tf.Tensor) -> tf.Tensor:
        """``result`` of finite ``x``; eagerly, examples whose result overflowed raise.

        A flow's log-density or latent of finite data is finite unless the
        arithmetic overflowed (inputs far outside the data's range): that is
        refused, not answered with NaN or inf.

        Raises:
          ValueError: naming how many examples and the largest input.
        """
        if not tf.executing_eagerly() or tf.size(result) == 0:
            return result
        rows = tf.reshape(result, [tf.shape(result)[0], -1])
        bad = int(tf.reduce_sum(tf.cast(~tf.reduce_all(tf.math.is_finite(rows), axis=1), tf.int32)))
        if bad:
            peak = float(tf.reduce_max(tf.abs(tf.cast(x, tf.float64))))
            raise ValueError(
                f"{self.owner}: {bad} of {int(rows.shape[0])} examples gave a non-finite {what}: the "
                f"flow overflowed on inputs of magnitude up to {peak:.3g}, far outside the data it "
                "models; scale the data as for training (or check it for outliers)."
            )
        return result

    def check_z(self, z: Any, values: bool = True) -> tf.Tensor:
        """Flat latents ``[batch, num_dims]`` in the flow's dtype; eagerly inf or NaN raise."""
        z = as_tensor(z, self.owner, "latents", f"an array of numbers of shape [batch, {self.num_dims}]")
        if not z.dtype.is_floating or (z.shape.rank or 0) < 2 or z.shape[-1] != self.num_dims:
            raise ValueError(
                f"{self.owner}: expected latents of shape [batch, {self.num_dims}] "
                f"and a float dtype, got {z.dtype.name} of shape {z.shape}."
            )
        if values and tf.executing_eagerly():
            self.check_values(z, "latents")
        elif values and self.validate_args:
            z = self._asserted(z, "latents", levels=False)
        return tf.cast(z, self.dtype)

    # -- batches -------------------------------------------------------------

    def unpack(self, data: Any) -> tuple[Any, Any]:
        """(x, context) of a batch: ``x``, ``(x,)``, ``(x, labels[, weights])`` or a dict.

        A dict holds its examples under ``"image"`` (TFDS), ``"images"`` or
        ``"x"`` and its labels under ``"label"``, ``"labels"`` or
        ``"context"``. Labels are a conditional model's context; a plain
        model ignores them (but refuses an explicit ``"context"``).
        ``(dict, y[, weights])`` (how Keras passes ``fit(dict, sample_weight=w)``)
        reads the dict; ``y`` is the context only when the dict has no labels.
        """
        if isinstance(data, dict):
            key, lkey = image_key(data, self.owner), label_key(data)
            keep = lkey is not None and (self.is_conditional or lkey == "context")
            return data[key], (data[lkey] if keep else None)
        if isinstance(data, (tuple, list)) and data and isinstance(data[0], dict):
            x, context = self.unpack(data[0])
            if context is None and self.is_conditional and len(data) > 1:
                context = data[1]
            return x, context
        if isinstance(data, (tuple, list)):
            if len(data) == 1:
                return data[0], None
            if len(data) in (2, 3):
                return data[0], (data[1] if self.is_conditional else None)
        return data, None

    def sample_weight(self, data: Any, batch_size: tf.Tensor | int | None) -> tf.Tensor | None:
        """The batch's example weights as float32 [batch], or None when it has none.

        Keras passes ``fit(..., sample_weight=w)`` (and a dataset's
        ``(x, y, w)`` batches) as the third element of the batch. Weights must
        be finite and >= 0, one per example; eagerly a bad one raises
        ``ValueError``, in a graph an ``InvalidArgumentError`` (not under XLA,
        which compiles the check away).
        """
        return sample_weight(self, data, batch_size)

    def check_weight_array(self, weight: Any, where: str) -> None:
        """Eager check of a ``sample_weight=`` array given to ``fit``/``evaluate``.

        Raises:
          ValueError: not one finite number >= 0 per example.
        """
        check_weight_array(self, weight, where)

    # -- the first training batch -------------------------------------------

    def check_first_batch(self, batch: Any) -> None:
        """Raises or warns when the first training batch of an image model is not pixel levels.

        Levels out of [0, 2^num_bits) and float images within [0, 1] raise;
        levels without dequantization noise, and integer pixels whose
        maximum uses under an eighth of their range, warn. Inf and NaN
        values are left to the training step's non-finite guard.
        """
        check_first_batch(self, batch)


def unless_empty(
    x: tf.Tensor, compute: Callable[[], tf.Tensor], empty_shape: Sequence[int], dtype: str | tf.DType
) -> tf.Tensor:
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
    return tf.cond(tf.shape(x)[0] > 0, compute, lambda: tf.zeros((0, *empty_shape), dtype))
