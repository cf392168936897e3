"""Training: optimizers and schedules, the guarded training step, and fit's input checks.

- :mod:`tfflows.training.optimizers`: ``make_optimizer``, ``ScheduledAdam``,
  ``WarmupSchedule``, safe gradient clipping, the XLA probe;
- :mod:`tfflows.training.step`: the training and evaluation steps every
  :class:`tfflows.FlowModel` runs under ``fit`` — the negative log-likelihood
  under ``tf.distribute``, the non-finite guard, the update bound, loss
  scaling and clipping. A model changes its loss through one seam,
  :meth:`tfflows.FlowModel.train_log_prob`;
- :mod:`tfflows.training.fit`: what ``fit`` checks before the first step.
"""

from tfflows.training.optimizers import (
    ScaledSchedule,
    ScheduledAdam,
    WarmupSchedule,
    clip_gradients,
    make_optimizer,
    probe_jit,
    safe_global_norm,
    warmup_cosine,
)

__all__ = [
    "ScaledSchedule",
    "ScheduledAdam",
    "WarmupSchedule",
    "clip_gradients",
    "make_optimizer",
    "probe_jit",
    "safe_global_norm",
    "warmup_cosine",
]
