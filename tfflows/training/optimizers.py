"""Training helpers: an optimizer with learning-rate warmup and gradient clipping, an XLA probe.

The clipping itself, and Adam's fused update, are in :mod:`tfflows.training.updates`.
"""

from __future__ import annotations

import math
import numbers
import time
from typing import Any

import keras
import tensorflow as tf
from keras import ops

from tfflows.checks import finite_number
from tfflows.typing import TensorLike

__all__ = [
    "ScaledSchedule",
    "ScheduledAdam",
    "WarmupSchedule",
    "make_optimizer",
    "probe_jit",
    "warmup_cosine",
]


@keras.saving.register_keras_serializable(package="tfflows")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to ``learning_rate`` over ``warmup_steps``, then constant
    or cosine decay to ``final_fraction · learning_rate`` at ``decay_steps``.

    Kept so that models saved with it load; :func:`make_optimizer` now builds
    Keras's own ``CosineDecay`` (:func:`warmup_cosine`).

    Args:
      learning_rate: the peak learning rate.
      warmup_steps: steps of linear warmup (Glow uses a warmup too).
      decay_steps: total steps of the cosine decay after warmup; 0 keeps the
        peak rate.
      final_fraction: the decayed rate as a fraction of the peak.
    """

    def __init__(
        self, learning_rate: float, warmup_steps: int = 0, decay_steps: int = 0, final_fraction: float = 0.0
    ) -> None:
        finite_number("WarmupSchedule", "learning_rate", learning_rate, 0.0, strict=True)
        if warmup_steps < 0 or decay_steps < 0:
            raise ValueError(
                f"WarmupSchedule: warmup_steps and decay_steps must be >= 0, "
                f"got {warmup_steps!r} and {decay_steps!r}."
            )
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.decay_steps = int(decay_steps)
        self.final_fraction = float(final_fraction)

    def __call__(self, step: TensorLike) -> tf.Tensor:
        step = ops.cast(step, "float32")
        peak = self.learning_rate
        warm = ops.minimum(1.0, (step + 1.0) / max(self.warmup_steps, 1))
        if self.decay_steps <= 0:
            return peak * warm
        t = ops.clip((step - self.warmup_steps) / self.decay_steps, 0.0, 1.0)
        cosine = 0.5 * (1.0 + ops.cos(math.pi * t))
        decayed = peak * (self.final_fraction + (1.0 - self.final_fraction) * cosine)
        return ops.where(step < self.warmup_steps, peak * warm, decayed)

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments, for Keras serialization."""
        return {
            "learning_rate": self.learning_rate,
            "warmup_steps": self.warmup_steps,
            "decay_steps": self.decay_steps,
            "final_fraction": self.final_fraction,
        }


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_positive(name: str, value: Any, alternative: str = "") -> None:
    if not (_is_number(value) and math.isfinite(value) and value > 0):
        raise ValueError(f"make_optimizer: {name} must be a finite number > 0{alternative}, got {value!r}.")


def _check_steps(name: str, value: Any) -> int:
    if not (_is_number(value) and math.isfinite(value) and value >= 0 and float(value).is_integer()):
        raise ValueError(f"make_optimizer: {name} must be a whole number of steps >= 0, got {value!r}.")
    return int(value)


def warmup_cosine(
    learning_rate: float, warmup_steps: int = 0, decay_steps: int = 0, final_fraction: float = 0.0
) -> keras.optimizers.schedules.CosineDecay:
    """Keras's ``CosineDecay``: η(t) = η·(t + 1)/w during warmup, then η, or a cosine to ``final_fraction``·η.

    The warmup starts at η/w (not 0, so the first step learns) and reaches η
    at step w − 1; with ``decay_steps`` the rate then follows a cosine from η
    to ``final_fraction``·η over that many steps.
    """
    lr, w = float(learning_rate), int(warmup_steps)
    decay, alpha = (int(decay_steps), float(final_fraction)) if decay_steps else (1, 1.0)
    if w <= 1:
        return keras.optimizers.schedules.CosineDecay(lr, decay, alpha=alpha)
    return keras.optimizers.schedules.CosineDecay(
        lr / w, decay, alpha=alpha, warmup_target=lr, warmup_steps=w - 1
    )


@keras.saving.register_keras_serializable(package="tfflows")
class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """η(t) = s · schedule(t), with s a variable that :class:`ScheduledAdam` owns and saves."""

    def __init__(self, schedule: keras.optimizers.schedules.LearningRateSchedule) -> None:
        self.schedule = schedule
        self.scale: Any = 1.0

    def __call__(self, step: Any) -> Any:
        rate = self.schedule(step)
        return rate * ops.cast(self.scale, rate.dtype)

    def get_config(self) -> dict[str, Any]:
        """The wrapped schedule, for Keras serialization (the scale is the optimizer's saved variable)."""
        return {"schedule": keras.saving.serialize_keras_object(self.schedule)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ScaledSchedule:
        return cls(keras.saving.deserialize_keras_object(config["schedule"]))


@keras.saving.register_keras_serializable(package="tfflows")
class ScheduledAdam(keras.optimizers.Adam):
    """Adam whose learning rate is a schedule times a scale that can be set.

    η(t) = s · schedule(t), with s a saved optimizer variable (1 at the start).
    Writing a number to ``learning_rate`` (as ``ReduceLROnPlateau`` does:
    ``optimizer.learning_rate = old · factor``) sets s so that the rate at
    the current step is that number; later steps keep the schedule's shape,
    scaled. Keras' own Adam refuses that write when its rate is a schedule.

    Args:
      learning_rate: a ``keras.optimizers.schedules.LearningRateSchedule``
        (e.g. :func:`warmup_cosine`) or a number.
      **kwargs: passed to ``keras.optimizers.Adam``.
    """

    def __init__(self, learning_rate: Any = 1e-3, **kwargs: Any) -> None:
        schedules = keras.optimizers.schedules
        if learning_rate is None or isinstance(learning_rate, (numbers.Number, str, bytes, list, tuple)):
            finite_number(type(self).__name__, "learning_rate", learning_rate, 0.0, strict=True)
        if isinstance(learning_rate, schedules.LearningRateSchedule) and not isinstance(
            learning_rate, ScaledSchedule
        ):
            learning_rate = ScaledSchedule(learning_rate)
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.schedule = learning_rate if isinstance(learning_rate, ScaledSchedule) else None
        with keras.name_scope(self.name, caller=self):
            # Created here, after Keras's own, as before: saved optimizer states keep their order.
            self.learning_rate_scale = keras.Variable(
                1.0,
                name="learning_rate_scale",
                dtype="float32",
                trainable=False,
                aggregation="only_first_replica",
            )  # assigning it tracks it
        if self.schedule is not None:
            self.schedule.scale = self.learning_rate_scale

    def _set_learning_rate(self, learning_rate: Any) -> None:
        schedules = keras.optimizers.schedules
        scaled: ScaledSchedule | None = getattr(self, "schedule", None)  # None within Adam's __init__
        if (
            scaled is None
            or isinstance(learning_rate, schedules.LearningRateSchedule)
            or callable(learning_rate)
        ):
            keras.optimizers.Adam.learning_rate.fset(self, learning_rate)
            self.schedule = learning_rate if isinstance(learning_rate, ScaledSchedule) else None
            if hasattr(self, "learning_rate_scale"):
                self.learning_rate_scale.assign(1.0)
                if self.schedule is not None:
                    self.schedule.scale = self.learning_rate_scale
            return
        value = float(ops.convert_to_numpy(learning_rate))
        base = float(ops.convert_to_numpy(scaled.schedule(self.iterations)))
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(
                f"{type(self).__name__}: learning_rate must be a finite number >= 0, got {learning_rate!r}."
            )
        if not base > 0:
            raise ValueError(
                f"{type(self).__name__}: cannot set the learning rate to {value!r} at "
                f"step {int(ops.convert_to_numpy(self.iterations))}: the schedule is "
                f"{base!r} there, expected a rate > 0 to scale."
            )
        self.learning_rate_scale.assign(value / base)

    # Keras's getter (the current rate, the scale included); the setter scales a schedule.
    learning_rate = property(keras.optimizers.Adam.learning_rate.fget, _set_learning_rate)

    def load_own_variables(self, store: Any) -> None:
        """Also reads the state of a plain Adam (no scale, as ``make_optimizer`` saved it before)."""
        variables = self.variables
        if len(store.keys()) == len(variables) - 1:
            scale = variables.index(self.learning_rate_scale)
            others = variables[:scale] + variables[scale + 1 :]
            for i, variable in enumerate(others):
                variable.assign(store[str(i)])
            self.learning_rate_scale.assign(1.0)
            return
        super().load_own_variables(store)


def make_optimizer(
    learning_rate: float = 1e-3,
    warmup_steps: int = 0,
    decay_steps: int = 0,
    clipnorm: float | None = 50.0,
    **kwargs: Any,
) -> keras.optimizers.Adam:
    """Adam with linear warmup (and optional cosine decay) and global-norm gradient clipping.

    With warmup or decay the optimizer is a :class:`ScheduledAdam` on Keras's
    ``CosineDecay`` (:func:`warmup_cosine`): ``keras.callbacks.ReduceLROnPlateau`` can lower
    its rate (the schedule is scaled by its factor from then on). Without,
    it is a ``keras.optimizers.Adam`` at the constant rate.

    Args:
      learning_rate: the peak learning rate.
      warmup_steps: linear warmup steps.
      decay_steps: cosine decay steps after warmup (0: none).
      clipnorm: clip the global gradient norm to this value (None: no clipping).
      **kwargs: passed to ``keras.optimizers.Adam``.

    Raises:
      ValueError: ``learning_rate`` or ``clipnorm`` is not a finite number > 0,
        or ``warmup_steps`` or ``decay_steps`` is not a whole number >= 0.
    """
    _check_positive("learning_rate", learning_rate)
    warmup_steps = _check_steps("warmup_steps", warmup_steps)
    decay_steps = _check_steps("decay_steps", decay_steps)
    if clipnorm is not None:
        _check_positive("clipnorm", clipnorm, " or None")
    if warmup_steps or decay_steps:
        return ScheduledAdam(
            warmup_cosine(learning_rate, warmup_steps, decay_steps), global_clipnorm=clipnorm, **kwargs
        )
    return keras.optimizers.Adam(float(learning_rate), global_clipnorm=clipnorm, **kwargs)


class _BatchStamps(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.begin = 0.0  # set when training begins
        self.stamps: list[float] = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.begin = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.stamps.append(time.perf_counter())


# XLA's compilation of a training step took 1.8 to 2.2 times the plain step's tracing for every
# model measured on one CPU core (Glow L2 K4: 19 -> 39 s, 22 -> 41 s; Jet, 16 couplings:
# 187 -> 403 s): a probe whose plain first step is slow would spend about twice that again.
XLA_COMPILE_OVER_TRACE = 2.0


def probe_jit(
    model: keras.Model,
    dataset: Any,
    steps: int = 3,
    rounds: int = 2,
    max_compile_seconds: float | None = None,
) -> dict[str, Any]:
    """Times training steps of ``model`` with and without XLA on this machine; keeps the faster.

    The model trains ``rounds`` windows of ``steps`` + 1 batches of
    ``dataset`` (a ``tf.data.Dataset``) with ``jit_compile=False`` and with
    ``jit_compile=True`` in turn (off, on, off, on: a busy moment on a shared
    machine hits both); the first batch of each window is not timed. These
    are real training steps: they update the weights and the optimizer,
    which a ``fit`` afterwards continues. The faster setting's compiled step
    is kept, so ``fit`` neither traces nor compiles it again; the model's
    test and predict functions are rebuilt with that setting when next used.
    Nothing is cached across runs or machines.

    Args:
      model: a compiled Keras model (``FlowModel``: ``fit`` initialises it
        from the first batch if it is not yet).
      dataset: training batches, as ``fit`` takes them.
      steps: timed steps per window (>= 1).
      rounds: windows per setting (>= 1).
      max_compile_seconds: what XLA's compilation may cost (None: no
        limit). When the plain step's first call (tracing) took more than
        this divided by :data:`XLA_COMPILE_OVER_TRACE`, XLA is not tried: its
        compilation would cost more than the limit, and the step stays
        plain (``"xla_skipped"`` says why). ``tfflows train`` passes 10% of
        ``--time-limit``.

    Returns:
      ``{"jit_compile": bool, "seconds_per_step": {"off": s, "on": s},
      "first_step_seconds": {"off": s, "on": s}, "probe_seconds": s,
      "steps": n}``: the choice, the median step time of each setting,
      the first (tracing, compiling) step of each, the probe's whole time
      and the training steps it ran; ``"xla_error"``: why XLA could not
      compile the step (then it is off, and its times are None), else None;
      ``"xla_skipped"``: why XLA was not tried (``max_compile_seconds``), else None.

    Raises:
      ValueError: ``steps`` or ``rounds`` is not a positive integer, the
        model is not compiled, or ``dataset`` gives fewer than two batches
        per window.
    """
    for name, value in (("steps", steps), ("rounds", rounds)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"probe_jit: {name} must be a positive integer, got {value!r}.")
    if getattr(model, "optimizer", None) is None:
        raise ValueError(
            f"probe_jit: expected a compiled model, got {type(model).__name__} "
            "without an optimizer; call compile(optimizer=...) first."
        )
    if max_compile_seconds is not None and (
        isinstance(max_compile_seconds, bool)
        or not isinstance(max_compile_seconds, (int, float))
        or not max_compile_seconds > 0
    ):
        raise ValueError(
            f"probe_jit: max_compile_seconds must be a number > 0 or None, got {max_compile_seconds!r}."
        )
    start = time.perf_counter()
    functions: dict[bool, Any] = {}
    skipped = None
    per_step: dict[bool, list[float]] = {False: [], True: []}
    first: dict[bool, float] = {}
    ran = 0
    failed = None
    for _ in range(rounds):
        for jit in (False, True):
            if jit and (failed or skipped):
                continue
            model.jit_compile = jit
            model.train_function = functions.get(jit)  # None: fit traces (and compiles) it
            stamps = _BatchStamps()
            try:
                model.fit(dataset.take(steps + 1), epochs=1, verbose=0, callbacks=[stamps])
            except Exception as err:  # XLA cannot compile every graph (dynamic shapes)
                if not jit or stamps.stamps:
                    raise
                failed = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:200]}"
                continue
            functions[jit] = model.train_function
            ran += len(stamps.stamps)
            if len(stamps.stamps) < 2:
                raise ValueError(
                    f"probe_jit: expected a dataset of at least 2 batches, got {len(stamps.stamps)}."
                )
            first.setdefault(jit, stamps.stamps[0] - stamps.begin)
            per_step[jit] += [b - a for a, b in zip(stamps.stamps, stamps.stamps[1:])]
            if (
                not jit
                and max_compile_seconds is not None
                and True not in functions
                and first[False] * XLA_COMPILE_OVER_TRACE > max_compile_seconds
            ):
                skipped = (
                    f"the plain step's first call took {first[False]:.1f} s; XLA's compilation "
                    f"would take about {XLA_COMPILE_OVER_TRACE:g}x that, over the "
                    f"{max_compile_seconds:.1f} s allowed"
                )
    # The decision is made on the reported (microsecond) figures, so the report always explains it.
    median = {
        jit: round(sorted(times)[len(times) // 2], 6) if times else None for jit, times in per_step.items()
    }
    fast, plain = median[True], median[False]
    best = (
        failed is None
        and skipped is None
        and bool(model.jit_compile)  # Keras may refuse XLA
        and fast is not None
        and plain is not None
        and fast < plain
    )
    model.jit_compile = best
    model.train_function = functions[best]
    model.test_function = model.predict_function = None

    def rounded(value, digits):
        return None if value is None else round(value, digits)

    return {
        "jit_compile": best,
        "seconds_per_step": {"off": median[False], "on": median[True]},
        "first_step_seconds": {"off": rounded(first.get(False), 2), "on": rounded(first.get(True), 2)},
        "probe_seconds": round(time.perf_counter() - start, 2),
        "steps": ran,
        "xla_error": failed,
        "xla_skipped": skipped,
    }
