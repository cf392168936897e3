"""The update a training step makes: gradient clipping with safe norms, and Adam's fused update.

Both read the gradients' float64 norms from one pass over them
(:func:`tfflows.guard.squared_halves`), which the training step's
non-finite guard shares.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf
from keras import ops

from tfflows.guard import squared_halves
from tfflows.training.optimizers import ScheduledAdam

__all__ = ["adam_update", "clip_factors", "clip_gradients", "clip_with_norm", "safe_global_norm"]


def safe_global_norm(tensors: Sequence[Any]) -> Any:
    """sqrt(Σ t²) over every entry of ``tensors``, without overflow in float32.

    Every entry is divided by the largest |entry| m before squaring and the
    root is multiplied by m again: a gradient of 2e19 squares to inf in
    float32, which makes ``keras.optimizers``' global-norm clipping scale the
    whole update by NaN.
    """
    tensors = [ops.convert_to_tensor(t) for t in tensors if t is not None]
    if not tensors:
        return ops.convert_to_tensor(0.0)
    peak = ops.max(
        ops.stack(
            [
                ops.max(ops.abs(ops.reshape(t, (-1,))))
                if math.prod(t.shape or ()) != 0
                else ops.convert_to_tensor(0.0, t.dtype)
                for t in tensors
            ]
        )
    )
    peak = ops.where(peak > 0, peak, ops.ones_like(peak))
    total = sum(ops.sum(ops.square(t / ops.cast(peak, t.dtype))) for t in tensors)
    return peak * ops.sqrt(total)


def clip_gradients(
    grads: Sequence[Any], optimizer: keras.optimizers.Optimizer, halves: tf.Tensor | None = None
) -> list:
    """``grads`` clipped as ``optimizer``'s ``clipnorm`` or ``global_clipnorm`` asks, with safe norms.

    The norms are taken in float64 (:func:`tfflows.guard.squared_halves`; pass
    ``halves``, one entry per gradient that is not None, when you have them),
    so a gradient of 2e19, whose square is inf in float32, is clipped rather
    than scaled by NaN as ``keras.optimizers``' clipping would. When the
    optimizer's own ``apply`` clips again, gradients already within the limit
    are unchanged (a factor of 1 up to rounding), so the meaning (global-norm
    clipping in :func:`make_optimizer`) is the same. Gradients with inf or
    NaN stay non-finite: those steps are skipped, not clipped.
    """
    return clip_with_norm(grads, optimizer, halves)[0]


def clip_with_norm(
    grads: Sequence[Any], optimizer: keras.optimizers.Optimizer, halves: tf.Tensor | None = None
) -> tuple[list, tf.Tensor]:
    """(:func:`clip_gradients` of ``grads``, the float64 Euclidean norm of all of them after clipping)."""
    if halves is None:
        halves = squared_halves(grads)
    factors = clip_factors(grads, optimizer, halves)
    if factors is None:
        return list(grads), tf.sqrt(2.0 * tf.reduce_sum(halves))
    clipped: list = []
    k = 0
    for g in grads:
        if g is None:
            clipped.append(None)
            continue
        clipped.append(g * ops.cast(factors[k], g.dtype))
        k += 1
    return clipped, tf.sqrt(2.0 * tf.reduce_sum(halves * tf.square(factors)))


def clip_factors(
    grads: Sequence[Any], optimizer: keras.optimizers.Optimizer, halves: tf.Tensor | None = None
) -> tf.Tensor | None:
    """Float64 [n]: the factor each gradient (None skipped) is clipped by; None when nothing clips."""
    if getattr(optimizer, "gradient_accumulation_steps", None):
        return None  # it clips the accumulated sum, not each step's gradients
    clipnorm = getattr(optimizer, "clipnorm", None)
    global_clipnorm = getattr(optimizer, "global_clipnorm", None)
    if not ((clipnorm and clipnorm > 0) or (global_clipnorm and global_clipnorm > 0)):
        return None
    if halves is None:
        halves = squared_halves(grads)
    one = tf.constant(1.0, tf.float64)
    if clipnorm and clipnorm > 0:
        # A zero norm gives clipnorm / 0 = inf, so a factor of 1.
        return tf.minimum(one, float(clipnorm) / tf.sqrt(2.0 * halves))
    limit = float(global_clipnorm)  # type: ignore[arg-type]  # > 0: checked above
    factor = tf.minimum(one, limit / tf.sqrt(2.0 * tf.reduce_sum(halves)))
    return tf.fill(tf.shape(halves), factor)


def adam_update(optimizer: keras.optimizers.Optimizer, grads: Sequence[Any], variables: Sequence[Any]) -> Any:
    """Makes ``optimizer``'s Adam update with TensorFlow's fused Adam kernel; None if it cannot.

    For a plain ``keras.optimizers.Adam`` or :class:`ScheduledAdam` (no
    AMSGrad, weight decay, EMA, gradient accumulation, loss-scale factor or
    ``clipvalue``; float32 weights without constraints; every gradient given) this
    is Keras's update — m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g²,
    w ← w − η·√(1−β₂ᵗ)/(1−β₁ᵗ)·m/(√v + ε), then the step count + 1 — made by
    ``ResourceApplyAdam``, one op per weight where Keras's ``update_step``
    builds about twenty-five. The gradients must be clipped already
    (:func:`clip_gradients`): ``clipnorm`` and ``global_clipnorm`` are not
    applied again. Returns the op group, or None (nothing done) for any
    other optimizer or setting, or under a ``tf.distribute`` strategy, where
    the caller uses ``optimizer.apply``.
    """
    if type(optimizer) not in (keras.optimizers.Adam, ScheduledAdam) or tf.distribute.has_strategy():
        return None
    if (
        optimizer.amsgrad
        or optimizer.weight_decay
        or optimizer.use_ema
        or optimizer.gradient_accumulation_steps
        or optimizer.loss_scale_factor is not None
        or optimizer.clipvalue is not None
    ):
        return None
    if any(g is None for g in grads) or any(
        getattr(v, "constraint", None) is not None or getattr(v, "overwrite_with_gradient", False)
        for v in variables
    ):
        return None
    # Each weight's moments, found as Keras names them ("<path with _>_momentum", "_velocity").
    by_name = {v.name: v for v in optimizer.variables}
    if len(by_name) != len(optimizer.variables):
        return None  # two variables of one name: which moment is whose is not known
    slots = []
    for v in variables:
        key = v.path.replace("/", "_")
        m, s = by_name.get(f"{key}_momentum"), by_name.get(f"{key}_velocity")
        # float32 only: Keras rounds the betas through float32 even for float64 weights, which
        # the kernel, given them in the weights' precision, would not.
        if m is None or s is None or not v.dtype == m.dtype == s.dtype == "float32":
            return None
        slots.append((m, s))
    f32 = tf.float32
    t = tf.cast(optimizer.iterations + 1, f32)
    beta_1, beta_2 = tf.constant(optimizer.beta_1, f32), tf.constant(optimizer.beta_2, f32)
    beta_1_power, beta_2_power = tf.pow(beta_1, t), tf.pow(beta_2, t)
    lr = tf.cast(ops.convert_to_tensor(optimizer.learning_rate), f32)
    epsilon = tf.constant(optimizer.epsilon, f32)
    updates = []
    for g, v, (m, s) in zip(grads, variables, slots):
        updates.append(
            tf.raw_ops.ResourceApplyAdam(
                var=v.handle,
                m=m.handle,
                v=s.handle,
                beta1_power=beta_1_power,
                beta2_power=beta_2_power,
                lr=lr,
                beta1=beta_1,
                beta2=beta_2,
                epsilon=epsilon,
                grad=tf.cast(tf.convert_to_tensor(g), f32),
            )
        )
    with tf.control_dependencies(updates):
        return optimizer.iterations.assign_add(1)
