"""Training: optimizers and schedules, the guarded training step, and fit's input checks.

- :mod:`tfflows.training.optimizers`: ``make_optimizer``, ``ScheduledAdam``,
  ``WarmupSchedule``, the XLA probe;
- :mod:`tfflows.training.updates`: safe gradient clipping and Adam's fused update;
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
    make_optimizer,
    probe_jit,
    warmup_cosine,
)
from tfflows.training.updates import adam_update, clip_gradients, safe_global_norm

__all__ = [
    "ScaledSchedule",
    "ScheduledAdam",
    "WarmupSchedule",
    "adam_update",
    "clip_gradients",
    "make_optimizer",
    "probe_jit",
    "safe_global_norm",
    "warmup_cosine",
]
