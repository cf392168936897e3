"""What ``tfflows train`` prints while it trains: the compile line, one line per epoch, a live line.

Keras's progress bar estimates the time left from the first step, which
holds the tracing of the training step (tens of seconds on a CPU), so its
first estimate is many times too long; written to a file it is one line of
carriage returns. :class:`EpochProgress` replaces it (pass ``verbose=0`` to
``fit``): a line says the step is being built before the first step, the
estimates count from the second step, and a pipe or a file gets one clean
line per epoch.
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, TYPE_CHECKING

import keras

if TYPE_CHECKING:
    from tfflows.callbacks import TimeLimit

__all__ = ["EpochProgress", "format_seconds"]


def format_seconds(seconds: float) -> str:
    """``"0:07"``, ``"12:05"`` or ``"1:02:03"``: a duration as a clock shows it."""
    seconds = max(round(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _value(value) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:.4f}" if math.isfinite(number) and abs(number) < 1e5 else f"{number:.4g}"


class EpochProgress(keras.callbacks.Callback):
    """Prints a run's progress: the compile line, one line per epoch and (on a terminal) a live line.

    - When training begins: ``tfflows: building the training step (…)``, as
      TensorFlow traces the step into a graph (and with XLA compiles it)
      before the first step; after the first step, how long that took.
    - After every epoch, one line: ``epoch 3/20: loss 2.9131, bits_per_dim
      2.9512, val_loss … (4.2 s, about 1:05 left)``. The time left is the
      epochs to go times the mean of the epochs after the first (which holds
      the tracing); after the first, its steps after its first step.
    - With ``live`` (default: when ``stream`` is a terminal), a line
      rewritten in place during an epoch: the batch, the running loss and
      the epoch's time left, estimated from its steps after the first.
    - With a ``time_limit`` (:class:`tfflows.callbacks.TimeLimit`) the time
      left is at most what the limit leaves, and says so.

    Args:
      stream: where to print (default ``sys.stdout``).
      live: whether to show the live line; None: when ``stream.isatty()``.
      min_interval: seconds between two updates of the live line.
      time_limit: the run's ``TimeLimit`` callback, if it has one.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        live: bool | None = None,
        min_interval: float = 0.2,
        time_limit: TimeLimit | None = None,
    ) -> None:
        super().__init__()
        self.stream = stream
        self.time_limit = time_limit
        self.live = live
        self.min_interval = float(min_interval)
        self.first_step_seconds: float | None = None
        self._began = self._epoch_began = self._rate_from = 0.0
        self._epoch = 0
        self._last_batch = 0.0
        self._rate_steps = 0
        self._epoch_seconds: list[float] = []
        self._shown = 0
        self._last_shown = 0.0

    # -- output ------------------------------------------------------------------------
    def _out(self) -> IO[str]:
        return self.stream if self.stream is not None else sys.stdout

    def _is_live(self) -> bool:
        if self.live is not None:
            return self.live
        isatty = getattr(self._out(), "isatty", None)
        return bool(isatty and isatty())

    def _print(self, text: str) -> None:
        out = self._out()
        if self._shown:  # wipe the live line first
            out.write("\r" + " " * self._shown + "\r")
            self._shown = 0
        out.write(text + "\n")
        out.flush()

    def _show(self, text: str) -> None:
        out = self._out()
        out.write("\r" + text + " " * max(self._shown - len(text), 0))
        out.flush()
        self._shown = len(text)

    # -- Keras hooks -------------------------------------------------------------------
    def on_train_begin(self, logs: dict | None = None) -> None:
        """Prints the line saying the step is being built."""
        self._began = time.perf_counter()
        self.first_step_seconds = None
        self._epoch_seconds = []
        how = "compiles it with XLA" if self.model.jit_compile is True else "traces it"
        self._print(
            f"tfflows: building the training step: TensorFlow {how} into one graph before "
            "the first step; this takes a while, once per run (later steps are fast)"
        )

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Starts the epoch's clock."""
        self._epoch_began = time.perf_counter()
        self._epoch = epoch
        self._rate_from, self._rate_steps = 0.0, 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Reports the first step's time once; on a terminal, the live progress line."""
        now = self._last_batch = time.perf_counter()
        if self.first_step_seconds is None:
            self.first_step_seconds = now - self._began
            self._print(f"tfflows: training step built in {self.first_step_seconds:.1f} s")
        if self._rate_steps == 0 and self._rate_from == 0.0:
            self._rate_from = now  # the epoch's estimates count from its second step
        else:
            self._rate_steps += 1
        if not self._is_live() or now - self._last_shown < self.min_interval:
            return
        self._last_shown = now
        epochs, steps = self.params.get("epochs"), self.params.get("steps")
        text = f"epoch {self._epoch + 1}/{epochs}  batch {batch + 1}" + (f"/{steps}" if steps else "")
        if logs:
            text += "  " + "  ".join(f"{k} {_value(v)}" for k, v in logs.items())
        if steps and self._rate_steps:
            per_step = (now - self._rate_from) / self._rate_steps
            text += f"  epoch ends in {format_seconds(per_step * (steps - batch - 1))}"
        self._show(text)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Prints the epoch's line: its figures, its time and the time left."""
        now = time.perf_counter()
        took = now - self._epoch_began
        self._epoch_seconds.append(took)
        epochs = self.params.get("epochs") or 0
        left = epochs - (epoch + 1)
        text = (
            f"epoch {epoch + 1}/{epochs}: "
            + ", ".join(f"{k} {_value(v)}" for k, v in (logs or {}).items())
            + f" ({took:.1f} s"
        )
        estimate = self._epoch_estimate()
        if left > 0 and estimate is not None:
            seconds = estimate * left
            limited = self.time_limit.remaining() if self.time_limit is not None else math.inf
            if limited < seconds:
                text += f", about {format_seconds(limited)} left of the time limit"
            else:
                text += f", about {format_seconds(seconds)} left"
        self._print(text + ")")

    def _epoch_estimate(self) -> float | None:
        """Seconds per epoch to come: the mean of the epochs after the first, else the first's steps.

        The first epoch of a run holds the tracing of the training and the
        evaluation steps and the extras' first (traced) run: it is left out
        once a later epoch has been timed; before that, its steps after the
        first stand for a whole epoch.
        """
        later = self._epoch_seconds[1:]
        if later:
            return sum(later) / len(later)
        if self._rate_steps:
            return (self._last_batch - self._rate_from) / self._rate_steps * (self._rate_steps + 1)
        return None
