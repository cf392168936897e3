"""FlowTrainer: Keras's ``compile``, ``fit`` and ``evaluate`` for flow models, with their checks.

A mixin of :class:`tfflows.FlowModel` (as Keras's ``Trainer`` is of
``keras.Model``): it adds what a flow needs around Keras's own loop — the
first batch checked and used for the data-dependent initialisation,
``sample_weight`` kept when Keras would drop it, the non-finite guard, and
the training and evaluation steps of :mod:`tfflows.training.step`.
"""

from __future__ import annotations

import inspect
import warnings
import weakref
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfflows.data.pipeline import image_key, label_key, repeating_batches
from tfflows.training import step as steps
from tfflows.typing import KerasModelMixin

__all__ = ["FlowTrainer"]


class FlowTrainer(KerasModelMixin):
    """``compile``/``fit``/``evaluate`` and the steps of a :class:`tfflows.FlowModel`.

    The host class provides ``spec`` (a :class:`tfflows.data.DataSpec`),
    ``initialize``, ``is_initialized``, ``log_prob``, ``train_log_prob``,
    ``loss_tracker``, ``bpd_tracker`` and ``nonfinite_steps``.
    """

    # -- Keras's steps ---------------------------------------------------

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        return steps.train_step(self, data)

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        return steps.test_step(self, data)

    def predict_step(self, data: Any) -> tf.Tensor:
        return steps.predict_step(self, data)

    @property
    def metrics(self) -> list:
        # Built per call, not kept as an attribute: an attribute would be walked into saves.
        # Named as its one metric, so metrics_names stays ["loss", per_dim_metric].
        return [self.loss_tracker, steps.MinimisedMetrics([self.bpd_tracker], name=self.per_dim_metric)]

    # -- compile, fit, evaluate --------------------------------------------

    def compile(self, *args: Any, **kwargs: Any) -> None:
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
        given = [
            key
            for key in ("loss", "loss_weights", "metrics", "weighted_metrics")
            if bound.get(key) not in (None, [], (), {})
        ]
        if given:
            raise ValueError(
                f"{type(self).__name__}.compile: a flow's loss is its negative log-likelihood "
                f"(reported as 'loss' and '{self.per_dim_metric}'), so it takes no "
                f"{', '.join(given)}; got {', '.join(f'{k}={bound[k]!r}' for k in given)}. "
                "Call compile(optimizer=...) alone; weight examples with fit(..., "
                "sample_weight=...)."
            )
        super().compile(*args, **kwargs)
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)

    def compile_from_config(self, config: Any) -> None:
        # Keras skips compile() on load when a subclass overrides it; ours only adds the build.
        if config:
            self.compile(**keras.saving.deserialize_keras_object(config))

    def evaluate(self, x: Any = None, y: Any = None, *args: Any, **kwargs: Any) -> Any:
        """Keras ``evaluate``; ``sample_weight`` weights each example's NLL."""
        self.spec.check_weight_array(kwargs.get("sample_weight"), "evaluate")
        check_counts(type(self).__name__, "evaluate", kwargs)
        if not kwargs.get("_use_cached_eval_dataset"):  # fit's own validation passes its placeholder y
            self._check_no_targets(y, "evaluate")
        if not self.compiled:
            # A flow's loss and metrics are its own: evaluating needs nothing from compile().
            self.compile()
        y = self._keep_sample_weight(x, y, kwargs)
        return _warn_nonfinite(self, "evaluate", super().evaluate(x, y, *args, **kwargs))

    def predict(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        """Keras ``predict``: ``log_prob`` of each example; inf or NaN answers are warned of."""
        check_counts(type(self).__name__, "predict", kwargs)
        return _warn_nonfinite(self, "predict", super().predict(x, *args, **kwargs))

    def _check_no_targets(self, y: Any, method: str) -> None:
        """A plain model has no targets: ``y`` would be ignored without a word, so it is refused."""
        if y is not None and not self.spec.is_conditional:
            raise ValueError(
                f"{type(self).__name__}.{method}: this model is not conditional, so it takes no "
                f"targets or labels, got y of type {type(y).__name__}; a flow's loss is the NLL of x "
                "alone (weight examples with sample_weight=...)."
            )

    def fit(self, x: Any = None, y: Any = None, *args: Any, callbacks: Any = None, **kwargs: Any) -> Any:
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
        self.spec.check_weight_array(kwargs.get("sample_weight"), "fit")
        check_counts(type(self).__name__, "fit", kwargs)
        self._check_no_targets(y, "fit")
        y = self._keep_sample_weight(x, y, kwargs)
        batch = None
        if not self.is_initialized or self._unchecked(x):
            batch = self._first_batch(x, y, kwargs.get("batch_size"))
            if batch is not None:
                if not isinstance(x, tf.data.Dataset) and int(tf.shape(self.spec.unpack(batch)[0])[0]) == 0:
                    raise ValueError(
                        f"{type(self).__name__}.fit: expected at least one training example, got an "
                        f"empty batch of shape {list(np.shape(self.spec.unpack(batch)[0]))}."
                    )
                self.spec.check_first_batch(batch)
        if not self.is_initialized:
            if batch is None and isinstance(x, tf.data.Dataset):
                self.initialize(x, num_batches=1)  # raises: the dataset is empty
            if batch is None:
                raise ValueError(
                    f"{type(self).__name__}: fit initialises ActNorm from the first batch, so it "
                    f"needs arrays, tensors or a tf.data.Dataset; got {type(x).__name__}. Call "
                    "model.initialize(batch) first to fit on other inputs."
                )
            self.initialize(batch)
        self.nonfinite_steps.assign(0)
        self.stopped_on_nonfinite = False
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)
        x, y = _batched_arrays(x, y, kwargs, self._ignores_y)
        if isinstance(x, tf.data.Dataset):
            kwargs.setdefault("shuffle", False)  # a Dataset shuffles itself; Keras would warn
        callbacks = list(callbacks or []) + [steps.NonFiniteGuard()]
        return super().fit(x, y, *args, callbacks=callbacks, **kwargs)

    # -- fit's inputs ---------------------------------------------------------

    def _keep_sample_weight(self, x: Any, y: Any, kwargs: dict) -> Any:
        """``y`` to give Keras so it keeps ``sample_weight`` (and the same for ``validation_data``).

        Keras drops ``sample_weight`` without a word when ``y`` is None; an
        unconditional model ignores ``y``, so it gets a placeholder of zeros,
        as does a conditional model whose labels are in a dict ``x``.
        """
        owner = type(self).__name__

        def placeholder(data: Any) -> np.ndarray:
            if isinstance(data, dict):
                data = data[image_key(data, owner)]
            return np.zeros(int(np.shape(data)[0]), np.float32)

        ignores_y = self._ignores_y
        validation = kwargs.get("validation_data")
        if (
            isinstance(validation, (tuple, list))
            and len(validation) == 3
            and validation[1] is None
            and validation[2] is not None
            and ignores_y(validation[0])
        ):
            kwargs["validation_data"] = (validation[0], placeholder(validation[0]), validation[2])
        if (
            kwargs.get("sample_weight") is not None
            and y is None
            and x is not None
            and not isinstance(x, tf.data.Dataset)
            and ignores_y(x)
        ):
            return placeholder(x)
        return y

    def _ignores_y(self, data: Any) -> bool:
        """Whether this model ignores ``y`` beside ``data``: not conditional, or a dict brings the labels."""
        return not self.spec.is_conditional or (isinstance(data, dict) and label_key(data) is not None)

    def _unchecked(self, x: Any) -> bool:
        """Whether ``fit(x)`` checks a first batch: arrays always, a Dataset the first time.

        Pulling a batch from a Dataset costs a pass through its pipeline (a
        shuffle buffer fills) and advances its random streams, so a Dataset
        given to ``fit`` again, as in an epoch loop, is not pulled again.
        """
        if not isinstance(x, tf.data.Dataset):
            return True
        if not self.spec.models_pixel_levels:
            return False
        last = getattr(self, "_checked_dataset", None)
        return last is None or last() is not x

    def _first_batch(self, x: Any, y: Any, batch_size: int | None) -> Any:
        """The first batch ``fit`` will see (up to 256 examples of arrays), or None if unknown."""
        if isinstance(x, tf.data.Dataset):
            if self.spec.models_pixel_levels:
                self._checked_dataset = weakref.ref(x)
            for batch in x.take(1):
                return batch
            return None
        if isinstance(x, (np.ndarray, tf.Tensor, dict, tuple, list)):
            n = batch_size or 256
            xs, cs = self.spec.unpack(x if y is None else (x, y))
            return xs[:n], None if cs is None else cs[:n]
        return None


def _batched_arrays(x: Any, y: Any, kwargs: dict, ignores_y: Any) -> tuple[Any, Any]:
    """``fit``'s ``(x, y)``, with arrays (and array ``validation_data``) as one repeating dataset each.

    Keras's adapter for arrays starts two new iterators per epoch and two per
    validation pass, most of an epoch's time on a small table; the same
    batches from one dataset that repeats, with ``steps_per_epoch``
    (``validation_steps``) set to one pass, start one
    (:func:`tfflows.data.pipeline.repeating_batches`). Their batches are all
    of one size (a short last one filled up with rows weighted 0), so the
    training and evaluation steps are built for one known shape — unless the
    model needs ``y`` and none came (its own check then says so).
    ``kwargs`` is updated to match. Anything Keras's own handling is needed
    for is left to it: datasets and other inputs, ``steps_per_epoch``,
    ``validation_split``, ``class_weight``, ``shuffle="batch"`` and
    tf.distribute strategies. ``ignores_y(x)``: whether the model ignores ``y``.
    """
    shuffle = kwargs.get("shuffle", True)
    if (
        isinstance(x, tf.data.Dataset)
        or kwargs.get("steps_per_epoch") is not None
        or kwargs.get("validation_split")
        or kwargs.get("class_weight") is not None
        or not isinstance(shuffle, (bool, np.bool_))
        or tf.distribute.has_strategy()
    ):
        return x, y
    batch_size = kwargs.get("batch_size") or 32  # Keras's default
    full = y is not None or ignores_y(x)
    made = repeating_batches(
        x, y, kwargs.get("sample_weight"), batch_size=batch_size, shuffle=bool(shuffle), full_batches=full
    )
    if made is None:
        return x, y
    for key in ("batch_size", "sample_weight", "shuffle"):
        kwargs.pop(key, None)
    x, kwargs["steps_per_epoch"] = made
    validation = kwargs.get("validation_data")
    if isinstance(validation, (tuple, list)) and kwargs.get("validation_steps") is None:
        val_x, val_y, val_weight = keras.utils.unpack_x_y_sample_weight(tuple(validation))
        made = repeating_batches(
            val_x,
            val_y,
            val_weight,
            batch_size=kwargs.get("validation_batch_size") or batch_size,
            shuffle=False,
            full_batches=val_y is not None or ignores_y(val_x),
        )
        if made is not None:
            kwargs.pop("validation_batch_size", None)
            kwargs["validation_data"], kwargs["validation_steps"] = made
    return x, None


def check_counts(owner: str, method: str, kwargs: dict) -> None:
    """Keras's counts (``batch_size``, ``steps_per_epoch``, ...): positive integers or None.

    Keras takes ``batch_size=0`` or ``steps_per_epoch=0`` and trains on nothing;
    ``epochs=0`` (checks, no training) stays allowed.
    """
    keys = ("batch_size", "epochs", "steps_per_epoch", "validation_steps", "steps", "validation_batch_size")
    for key in keys:
        value, least = kwargs.get(key), 0 if key == "epochs" else 1
        if value is not None and (
            isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < least
        ):
            what = "an integer >= 0" if least == 0 else "a positive integer"
            raise ValueError(f"{owner}.{method}: {key} must be {what} or None, got {value!r}.")


def _warn_nonfinite(model: Any, method: str, result: Any) -> Any:
    """``result`` of ``evaluate``/``predict``, with a warning when it holds inf or NaN.

    In a graph the inputs' values are not checked (unless the model has
    ``validate_args=True``): inf or NaN in give NaN out, flagged here.
    """
    values = result.values() if isinstance(result, dict) else result if isinstance(result, list) else [result]
    bad = sum(int(np.sum(~np.isfinite(np.asarray(v, dtype=np.float64)))) for v in values)
    if bad:
        warnings.warn(
            f"{type(model).__name__}.{method}: {bad} inf or NaN value(s) in the result: inputs with "
            "inf or NaN (or pixel levels out of range) give NaN inside a graph. Check the data, or "
            "build the model with validate_args=True to have such inputs refused.",
            RuntimeWarning,
            stacklevel=3,
        )
    return result
