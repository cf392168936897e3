"""Refusing non-finite models: nothing with an inf or NaN weight is saved or exported."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

__all__ = [
    "NonFiniteWeightsError",
    "all_finite",
    "check_finite_weights",
    "finite_rows",
    "nonfinite_weights",
    "squared_halves",
    "update_stays_finite",
]


def all_finite(tensors: Iterable[Any]) -> tf.Tensor:
    """A scalar bool tensor: every entry of every floating tensor (``None`` skipped) is finite."""
    # One flag per tensor, reduced once: a chain of logical_and ops would add one op per tensor
    # to every training step's graph (the guard checks each weight and optimizer variable).
    flags = [tf.reduce_all(tf.math.is_finite(t)) for t in tensors if t is not None and t.dtype.is_floating]
    if not flags:
        return tf.constant(True)
    return flags[0] if len(flags) == 1 else tf.reduce_all(tf.stack(flags))


def finite_rows(x: tf.Tensor) -> tf.Tensor:
    """Bool [batch]: whether each example of ``x`` [batch, ...] is free of inf and NaN."""
    return tf.reduce_all(tf.math.is_finite(tf.reshape(x, [tf.shape(x)[0], -1])), axis=1)


class NonFiniteWeightsError(ValueError):
    """A model with an inf or NaN weight was about to be saved, checkpointed or exported."""


def nonfinite_weights(model: Any) -> list[tuple[str, int, int]]:
    """``(path, bad entries, entries)`` for every floating weight of ``model`` with inf or NaN."""
    bad = []
    for weight in model.weights:
        value = np.asarray(weight.numpy() if hasattr(weight, "numpy") else weight)
        if not np.issubdtype(value.dtype, np.floating):
            continue
        count = int(value.size - np.count_nonzero(np.isfinite(value)))
        if count:
            bad.append((getattr(weight, "path", None) or weight.name, count, int(value.size)))
    return bad


def check_finite_weights(model: Any, action: str) -> None:
    """Raises :class:`NonFiniteWeightsError` naming the first bad weight, if any.

    Args:
      model: a Keras model.
      action: what was refused, for the message (``"save"``, ``"export"`` …).
    """
    bad = nonfinite_weights(model)
    if not bad:
        return
    path, count, size = bad[0]
    total = sum(b[1] for b in bad)
    raise NonFiniteWeightsError(
        f"{type(model).__name__}: refusing to {action} a model with non-finite weights: "
        f"{path!r} has {count} of {size} entries inf or NaN ({len(bad)} weights, {total} "
        "entries in all). Training diverged; go back to the last good checkpoint and lower "
        "the learning rate or add warmup."
    )


# Bounds for update_stays_finite, far inside float32's range (3.4e38) so that no
# intermediate of the update below can overflow.
_GRADIENT_LIMIT = 1e18  # its square, Adam's second moment, stays below 1e36
_STATE_LIMIT = 1e30
_RESULT_LIMIT = 1e37
_VELOCITY_SUFFIXES = ("_velocity", "_velocity_hat")  # Adam's second moments (amsgrad: _hat)
_MOMENT_SUFFIXES = ("_momentum", *_VELOCITY_SUFFIXES)


def tensor_values(variables: Iterable[Any]) -> list:
    """Each Keras variable's current value tensor; anything else as it is."""
    import keras

    return [v.value if isinstance(v, keras.Variable) else v for v in variables]


def squared_halves(tensors: Iterable[Any]) -> tf.Tensor:
    """Float64 [n]: ½·Σ entry² of each floating tensor (``None`` and integer tensors skipped).

    One op per tensor, stacked, so a whole training step's gradients are
    checked (finite: the sum is finite), measured (norms: √(2·h)) and
    clipped from one pass. Squared in float64, so float32 entries cannot
    overflow; NaN if an entry is NaN, +inf if one is inf. Sums propagate NaN
    under XLA too, where ``reduce_max`` may skip it.
    """
    halves = [tf.nn.l2_loss(tf.cast(t, tf.float64)) for t in tensors if t is not None and t.dtype.is_floating]
    if not halves:
        return tf.zeros([0], tf.float64)
    return tf.stack(halves)


def _norm(tensors: Iterable[Any]) -> tf.Tensor:
    """The Euclidean norm of all entries of the floating tensors together, as float64.

    An upper bound on every |entry| for the bounds below (see :func:`squared_halves`).
    """
    return tf.sqrt(2.0 * tf.reduce_sum(squared_halves(tensors)))


def update_stays_finite(
    optimizer: Any, grads: Sequence[Any], variables: Sequence[Any], grad_norm: tf.Tensor | None = None
) -> tf.Tensor | None:
    """Whether ``optimizer.apply(grads, variables)`` provably leaves every value finite.

    A scalar bool tensor, True only when bounds on the gradients, the
    weights and the optimizer's state prove that the update cannot overflow;
    ``None`` for an optimizer whose update it cannot bound. The non-finite
    guard of a training step then skips saving a copy of the whole training
    state (weights and optimizer variables: three times the parameters for
    Adam) before an update that cannot go wrong, which is most of the
    memory of a reversible training step's update.

    Bounded: ``keras.optimizers.Adam``, ``AdamW`` and :class:`tfflows.ScheduledAdam`
    (epsilon > 0), and ``SGD``, with no EMA, gradient accumulation or
    loss-scale factor, and a ``clipnorm``/``global_clipnorm`` (if any) below
    1e18, whose clipping inside ``apply`` squares the gradients (those the
    train step has already clipped). With G, S and W the Euclidean norms
    of all gradients < 1e18, of the optimizer's moments < 1e30 and of all
    weights (each at least the largest |entry| it covers), learning rate
    η ≥ 0 and weight decay λ:

    - Adam (second moments v ≥ 0, as in any run): |m'| ≤ max(S, G),
      v' ≤ max(S, G²), and a weight moves by at most α·max(S, G)/ε with
      α = η·√(1−β₂ᵗ)/(1−β₁ᵗ) (β in the variables' precision), the product
      α·max(S, G) itself bounded;
    - SGD: |m'| ≤ μS + ηG, and a weight moves by at most (1+μ)|m'| + ηG;

    and W·λ, and the new weights, at most W(1+λη) plus that move, must stay
    below 1e37. A NaN anywhere fails the bounds.

    ``grad_norm`` (float64), when given, is used as G instead of the norm of
    ``grads`` (the training step has it from its one pass over them).
    """
    import keras

    from tfflows.training import ScheduledAdam

    kind = type(optimizer)
    adam = kind in (keras.optimizers.Adam, keras.optimizers.AdamW, ScheduledAdam)
    if not (adam or kind is keras.optimizers.SGD):
        return None
    if (
        getattr(optimizer, "use_ema", False)
        or getattr(optimizer, "gradient_accumulation_steps", None)
        or getattr(optimizer, "loss_scale_factor", None)
    ):
        return None
    for clip in (getattr(optimizer, "clipnorm", None), getattr(optimizer, "global_clipnorm", None)):
        if clip is not None and not 0 < float(clip) < _GRADIENT_LIMIT:
            return None
    if adam and not float(optimizer.epsilon) > 0:
        return None
    f64 = tf.float64
    if grad_norm is None:
        grad_norm = _norm(grads)
    # The moments (Keras names them "<weight>_momentum", "_velocity", "_velocity_hat"): the
    # learning rate's own variable is bounded as the rate below, not as optimizer state.
    moments = [v for v in optimizer.variables if v.name.endswith(_MOMENT_SUFFIXES)]
    state_norm = _norm(tensor_values(moments))
    weight_norm = _norm(tensor_values(variables))
    rate = tf.cast(tf.convert_to_tensor(optimizer.learning_rate), f64)
    rate = tf.where(tf.math.is_nan(rate), tf.constant(np.inf, f64), rate)
    decay = abs(float(optimizer.weight_decay or 0.0))
    if adam:
        # The betas as the update sees them: a β₁ that rounds to 1 in float32 makes 1 − β₁ᵗ = 0.
        dtype = np.dtype(getattr(variables[0], "dtype", "float32") if variables else np.float32)
        beta_1, beta_2 = float(dtype.type(optimizer.beta_1)), float(dtype.type(optimizer.beta_2))
        step = tf.cast(optimizer.iterations, f64) + 1.0
        alpha = rate * tf.sqrt(1.0 - beta_2**step) / (1.0 - beta_1**step)
        scaled = alpha * tf.maximum(state_norm, grad_norm)  # m·α, before the division by √v + ε
        move = scaled / float(optimizer.epsilon)
        ok = scaled < _RESULT_LIMIT
    else:
        momentum = float(optimizer.momentum)
        velocity = momentum * state_norm + rate * grad_norm
        move = (1.0 + momentum) * velocity + rate * grad_norm
        ok = tf.constant(True)
    bound = weight_norm * (1.0 + decay * rate) + move
    ok &= (
        (grad_norm < _GRADIENT_LIMIT)
        & (state_norm < _STATE_LIMIT)
        & (rate >= 0.0)
        & (weight_norm * decay < _RESULT_LIMIT)
        & (bound < _RESULT_LIMIT)
    )
    # Adam's second moments are >= 0 in any run (v' >= β₂v); a negative one (a corrupt
    # checkpoint) would give √v = NaN, so the proof needs it. (A NaN there fails the norm.)
    if adam:
        lowest = [tf.reduce_min(v) for v in moments if v.name.endswith(_VELOCITY_SUFFIXES)]
        if lowest:
            ok &= tf.reduce_min(tf.stack(lowest)) >= 0
    return ok  # NaN anywhere fails every comparison
