"""The guarded training step every flow model runs under ``fit``, and its evaluation step.

A model's own loss enters through one seam, ``model.train_log_prob(x,
context, seed)``: the per-example log-likelihood this step maximises (the
model's ``log_prob`` of freshly dequantized pixels by default; TarFlow adds
its noise and label dropout there). Everything else lives here, the same for
every model:

- the mean negative log-likelihood of the global batch, weighted by
  ``sample_weight``, exact under ``tf.distribute`` with uneven last batches;
- the non-finite guard: a step whose loss, gradients or update are not finite
  is skipped (its update not made, or undone), and counted in
  ``model.nonfinite_steps`` (:class:`NonFiniteGuard` stops ``fit`` on it);
- the update bound that proves an Adam or SGD update finite before it is
  made, so that the guard needs no copy of the training state
  (:func:`tfflows.guard.update_stays_finite`);
- loss scaling (``mixed_float16``) and overflow-safe gradient clipping.
"""

from __future__ import annotations

import warnings
from typing import Any

import keras
import tensorflow as tf

# The one Keras container whose metrics its monitors read ``_direction`` from (see MinimisedMetrics);
# Keras offers no public class for it.
from keras.src.trainers import compile_utils

from tfflows.guard import all_finite, squared_halves, tensor_values, update_stays_finite
from tfflows.layers.convolution import xla_compiling
from tfflows.training.updates import adam_update, clip_gradients, clip_with_norm

__all__ = [
    "MinimisedMetrics",
    "NonFiniteGuard",
    "StepMean",
    "nll",
    "predict_step",
    "step_seed",
    "test_step",
    "train_step",
]


class StepMean(keras.metrics.Mean):
    """Mean over the applied training steps; NaN, not 0.0, while none was applied.

    A lower value is better (``_direction`` ``"down"``, as Keras marks its losses).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._direction = "down"

    def result(self) -> tf.Tensor:
        return tf.where(self.count > 0, super().result(), float("nan"))


class MinimisedMetrics(compile_utils.MetricsList):
    """Our trackers where Keras's ``MonitorCallback`` looks for a metric's direction.

    With ``mode="auto"``, EarlyStopping, ModelCheckpoint and ReduceLROnPlateau
    know only ``loss`` by name; for other names they read ``_direction`` of
    the metrics inside the model's metric containers (``CompileMetrics`` or
    ``MetricsList``), never of a bare metric in ``model.metrics``.
    """

    def result(self) -> dict[str, tf.Tensor]:
        return {m.name: m.result() for m in self.metrics}


class NonFiniteGuard(keras.callbacks.Callback):
    """Stops ``fit`` with a clear message when a step met a non-finite value.

    A step is skipped when its loss or a gradient is inf or NaN, or when its
    update would leave a weight or optimizer variable inf or NaN (for Adam
    and SGD: when bounds cannot prove the update finite, so it is not made;
    for other optimizers it is undone before the next step reads it): the
    weights stay finite, and this callback ends training at the end of that
    batch.

    Under a ``LossScaleOptimizer`` (``mixed_float16``) scaled gradients that
    overflow are not such a step: the optimizer halves its loss scale and
    skips the update, and training goes on. They stop training only at a
    loss scale of 1 or less, where the unscaled gradient itself is not finite.
    """

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        count = int(keras.ops.convert_to_numpy(self.model.nonfinite_steps))
        if count > 0:
            self.model.stop_training = True
            self.model.stopped_on_nonfinite = True
            warnings.warn(
                f"tfflows: stopped training at batch {batch}: the loss, a gradient or the "
                "update was not finite (or too large to be proven finite), so that step's "
                "update was skipped and the weights were kept finite. Lower the learning "
                "rate, add warmup or gradient clipping (tfflows.make_optimizer), or check "
                "the data for values outside "
                "[0, 2**num_bits).",
                RuntimeWarning,
                stacklevel=2,
            )


def step_seed(model: Any) -> tf.Tensor:
    """A stateless seed new at every training step, skipped steps included, and on every replica.

    Keyed by the optimizer's step count, the count of skipped (non-finite)
    steps and the replica, so it runs the same under ``tf.function``, XLA and
    ``tf.distribute``.
    """
    ctx = tf.distribute.get_replica_context()
    replica = 0 if ctx is None else ctx.replica_id_in_sync_group
    skipped = tf.cast(tf.convert_to_tensor(model.nonfinite_steps), tf.int64)
    return tf.stack(
        [
            tf.cast(tf.convert_to_tensor(model.optimizer.iterations), tf.int64),
            tf.cast(replica, tf.int64) + skipped * (1 << 16),
        ]
    )


def nll(model: Any, data: Any, seed: tf.Tensor | None = None) -> tuple[tf.Tensor, ...]:
    """(loss, per-dim loss, loss to differentiate, total weight): the mean NLL of the global batch.

    With a ``seed`` (training) the log-likelihood is the model's
    ``train_log_prob``; without one (evaluation) its ``log_prob``. With
    example weights wᵢ (``fit``'s ``sample_weight``) the loss is
    Σ wᵢ·nllᵢ / Σ wᵢ; without them every wᵢ is 1 and the total weight is the
    example count. A batch of total weight 0 has loss 0 (not NaN) and no
    gradient; ``train_step`` skips it.

    Under ``tf.distribute`` with several replicas each replica's share of
    the gradient is its weighted NLL sum over the global total weight, so
    the summed gradients are those of the global-batch mean even when the
    last batch splits unevenly (a replica may get no example at all: it
    adds nothing). The reported loss is that global mean on every replica.
    """
    spec = model.spec
    x, context = spec.unpack(data)
    if seed is None:
        log_prob = model.log_prob(x, context)
    else:
        # Through Keras's __call__ (FlowModel.call hands over to train_log_prob): its call
        # context gives training=True to the layers inside, which turns dropout on.
        log_prob = model(x, context, training=True, seed=seed)
    weight = spec.sample_weight(
        data, tf.shape(log_prob)[0] if not tf.executing_eagerly() else int(log_prob.shape[0])
    )
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
    return loss, loss / spec.nats_per_unit, scaled, count


def train_step(model: Any, data: Any) -> dict[str, tf.Tensor]:
    """One guarded optimizer step on ``data``; returns the running loss and per-dim loss."""
    optimizer = model.optimizer
    with tf.GradientTape() as tape, xla_compiling(model.jit_compile):
        loss, per_dim, scaled, weight_sum = nll(model, data, step_seed(model))
        # The loss scale of a LossScaleOptimizer (mixed_float16); the loss itself otherwise.
        scaled = optimizer.scale_loss(scaled)
    variables = model.trainable_variables
    # Dense gradients (an embedding's arrive as IndexedSlices), checked, measured and clipped
    # from one float64 pass over them.
    grads = [g if g is None else tf.convert_to_tensor(g) for g in tape.gradient(scaled, variables)]
    halves = squared_halves(grads)
    finite_loss = all_finite([loss])
    finite_grads = tf.math.is_finite(tf.reduce_sum(halves))
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
        # ReduceOp has only SUM and MEAN: count the replicas that saw a non-finite value.
        flags = tf.cast(tf.stack([finite_loss, finite_grads]), tf.float32)
        bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - flags)
        finite_loss, finite_grads = bad[0] < 0.5, bad[1] < 0.5

    # A batch whose examples all weigh 0 says nothing: skipped, and not counted as non-finite.
    weighted = weight_sum > 0
    loss_scale = _loss_scale(optimizer)
    grad_norm = None
    if loss_scale is None:
        go = finite_loss & finite_grads
        # Keras computes the clip norm from squares that overflow float32 for gradients
        # past ~1.8e19 and then scales the update by NaN: clip here with a safe norm first.
        grads, grad_norm = clip_with_norm(grads, optimizer, halves)
    else:
        # Scaled gradients that overflow are routine: the optimizer then halves its scale
        # and skips the update, so it must see them. They are a non-finite step only at a
        # scale <= 1, where scaling cannot have caused the overflow.
        go = finite_loss & (finite_grads | (loss_scale > 1.0))
        grads = _clip_scaled(optimizer, grads, loss_scale)
    # A loss-scale overflow skips the update but counts as a step: its loss is finite.
    kept = _apply_if_finite(model, grads, variables, go & weighted, grad_norm)
    model.nonfinite_steps.assign_add(tf.cast(weighted & ~kept, tf.int32))
    weight = tf.cast(kept, loss.dtype)
    model.loss_tracker.update_state(tf.where(kept, loss, tf.zeros_like(loss)), sample_weight=weight)
    model.bpd_tracker.update_state(tf.where(kept, per_dim, tf.zeros_like(per_dim)), sample_weight=weight)
    return {"loss": model.loss_tracker.result(), model.per_dim_metric: model.bpd_tracker.result()}


def test_step(model: Any, data: Any) -> dict[str, tf.Tensor]:
    """``evaluate``'s step: the NLL at bin centres, weighted by each batch's total weight."""
    with xla_compiling(model.jit_compile):
        loss, per_dim, _, count = nll(model, data)
    # Weighted by each batch's total weight (its example count without sample_weight):
    # the result is the weighted mean over the data, a short last batch included.
    model.loss_tracker.update_state(loss, sample_weight=count)
    model.bpd_tracker.update_state(per_dim, sample_weight=count)
    return {"loss": model.loss_tracker.result(), model.per_dim_metric: model.bpd_tracker.result()}


def predict_step(model: Any, data: Any) -> tf.Tensor:
    """``predict``'s step: ``log_prob`` of each example."""
    # predict((x, context)) arrives as ((x, context),): Keras wraps its one input.
    if isinstance(data, (tuple, list)) and len(data) == 1:
        data = data[0]
    x, context = model.spec.unpack(data)
    with xla_compiling(model.jit_compile):
        return model.log_prob(x, context)


def _loss_scale(optimizer: Any) -> tf.Tensor | None:
    """The current scale of a ``LossScaleOptimizer``, None for any other optimizer."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return tf.convert_to_tensor(optimizer.dynamic_scale)
    return None


def _clip_scaled(optimizer: Any, grads: list, loss_scale: tf.Tensor) -> list:
    """Clips gradients scaled by ``loss_scale`` as the inner optimizer asks, on their true size.

    The scale is a power of two, so unscaling and scaling again are exact.
    """
    inner = optimizer.inner_optimizer
    if not (inner.clipnorm or inner.global_clipnorm):
        return list(grads)
    unscaled = [None if g is None else g / tf.cast(loss_scale, g.dtype) for g in grads]
    clipped = clip_gradients(unscaled, inner)
    return [None if g is None else g * tf.cast(loss_scale, g.dtype) for g in clipped]


def _training_state(model: Any) -> list:
    """Every variable an update writes: the trainable weights and the optimizer's."""
    return [*model.trainable_variables, *model.optimizer.variables]


def _skip() -> tf.Tensor:
    """The branch of a step whose update is not made: nothing kept."""
    return tf.constant(False)


def _apply_guarded(
    model: Any, grads: list, variables: list, finite: tf.Tensor, grad_norm: tf.Tensor | None = None
) -> tf.Tensor:
    """Outside a tf.distribute strategy: skips the step unless ``finite``, else applies ``grads``.

    Finite gradients can still give a non-finite update (a huge learning
    rate, Adam's squared gradients overflowing). For Adam and SGD, bounds on
    the gradients (``grad_norm``: their norm, when the step has it), weights
    and optimizer state prove the update finite
    (:func:`tfflows.guard.update_stays_finite`) at any sane size: the update
    is made only then, so no copy of the training state (three times the
    parameters for Adam) is needed; an update the bounds cannot prove finite
    (a learning rate times gradient norm past ~1e29 for Adam, a weight near
    1e37, a gradient norm past 1e18) is skipped and counted as non-finite.
    A plain Adam's update is TensorFlow's fused kernel
    (:func:`tfflows.training.optimizers.adam_update`), exactly what the
    bounds cover; any other update the bounds allow is still checked after
    it is made (a weight constraint, say, could break it), and counted if
    not finite. For other optimizers the state is copied first and restored
    unless every floating weight and optimizer variable is finite. Returns
    whether the update was kept.
    """
    optimizer = model.optimizer

    safe = update_stays_finite(optimizer, grads, variables, grad_norm)
    if safe is None:
        return tf.cond(finite, lambda: _apply_with_copies(model, grads, variables), _skip)

    def update() -> tf.Tensor:
        done = adam_update(optimizer, grads, variables)
        if done is not None:
            with tf.control_dependencies([done]):
                return tf.constant(True)
        optimizer.apply(grads, variables)
        return all_finite(tensor_values(_training_state(model)))

    return tf.cond(finite & safe, update, _skip)


def _apply_with_copies(model: Any, grads: list, variables: list) -> tf.Tensor:
    """Applies ``grads`` after copying the training state; restores it if anything is non-finite."""
    state = tensor_values(_training_state(model))
    saved = [tf.identity(v) for v in state]
    with tf.control_dependencies(saved):
        model.optimizer.apply(grads, variables)
    ok = all_finite(state)
    if not tf.distribute.has_strategy():
        # One cond for the whole state: tracing a cond per variable (three per weight under
        # Adam) was about half the time of building the training step (bench/first_run.py).
        def undo_all() -> tf.Tensor:
            for var, old in zip(state, saved):
                var.assign(old)
            return tf.constant(False)

        tf.cond(ok, lambda: tf.constant(True), undo_all)
        return ok

    def restore(strategy: Any, state: list, saved: list, ok: tf.Tensor) -> None:
        def put_back(var: Any, old: tf.Tensor, ok: tf.Tensor) -> tf.Tensor:
            def undo() -> tf.Tensor:
                var.assign(old)
                return tf.constant(False)

            return tf.cond(ok, lambda: tf.constant(True), undo)

        for var, old in zip(state, saved):
            strategy.extended.update(var, put_back, args=(old, ok), group=False)

    # Mirrored variables are written in the cross-replica context, as the optimizer does.
    # ``maybe_merge_call`` is TensorFlow's own helper for that (public under tf.__internal__,
    # which Keras's optimizers use the same way); no stable API offers it.
    tf.__internal__.distribute.interim.maybe_merge_call(
        restore, tf.distribute.get_strategy(), state, saved, ok
    )
    return ok


def _apply_if_finite(
    model: Any, grads: list, variables: list, finite: tf.Tensor, grad_norm: tf.Tensor | None = None
) -> tf.Tensor:
    """Applies ``grads`` when ``finite`` (the same on every replica), else skips the step.

    Returns whether the update was applied and kept (see :func:`_apply_guarded`;
    under a tf.distribute strategy the state is always copied first).
    """
    if not tf.distribute.has_strategy():
        return _apply_guarded(model, grads, variables, finite, grad_norm)

    def apply(grads: list = grads) -> tf.Tensor:
        return _apply_with_copies(model, grads, variables)

    ctx = tf.distribute.get_replica_context()
    if ctx is None or tf.__internal__.distribute.strategy_supports_no_merge_call():
        return tf.cond(finite, apply, _skip)

    # The optimizer all-reduces the gradients with a merge_call, which may not sit in
    # a cond inside a replica context: take the branch in the cross-replica context,
    # as keras.optimizers.LossScaleOptimizer does.
    def cross_replica(strategy: Any, grads: list, finite: tf.Tensor) -> tf.Tensor:
        def apply_everywhere() -> tf.Tensor:
            kept = strategy.extended.call_for_each_replica(apply, args=(grads,))
            # Replicas hold the same state after a synchronised update: one answer for all.
            return strategy.experimental_local_results(kept)[0]

        return tf.cond(strategy.experimental_local_results(finite)[0], apply_everywhere, _skip)

    return ctx.merge_call(cross_replica, args=(grads, finite))
