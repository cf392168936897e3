"""Where the wall-clock time of a Keras ``fit`` goes, and test figures at set training times.

``tfflows train`` records the breakdown in results.json
(``time_breakdown_s``), so a run that trains fewer steps than a benchmark
predicts says why; ``--test-at`` evaluates the test split after given
minutes of training with the training clock paused (:class:`TestAt`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import keras

if TYPE_CHECKING:
    from tfflows.callbacks import TimeLimit

__all__ = ["EXTRAS_SHARE", "Occasional", "TestAt", "TrainingClock"]

EXTRAS_SHARE = 0.1
"""The share of a run's wall time that per-epoch extras (samples, checks, checkpoints, backups) may take."""


class TrainingClock:
    """Splits a ``fit``'s wall-clock time into training steps, validation and callbacks.

    ``clock.around(callbacks)`` returns the list with small timing callbacks
    around each one; pass that list to ``fit``. Afterwards
    :meth:`breakdown` gives seconds per part:

    - ``first_step``: from the start of ``fit`` to the end of its first batch
      (tracing, XLA compilation, the first batch of data);
    - ``epoch_start``: from each later epoch's start to the end of its first
      batch, less that batch's typical step time (the input pipeline
      starting again: the shuffle buffer refilling);
    - ``steps``: every other training batch, from the end of the one before
      (the step itself, the input pipeline's waits, per-batch callbacks);
    - ``validation``: ``fit``'s evaluation on ``validation_data``;
    - ``callback:<Name>``: each callback's ``on_epoch_end`` (samples,
      checkpoints, backups, TensorBoard);
    - ``test_at``: evaluations in the middle of training (:class:`TestAt`),
      taken out of the step they interrupted;
    - ``other``: the rest of the total (``fit``'s own work between epochs).

    ``steps_timed`` is the number of batches in ``steps``, and
    ``seconds_per_step`` their median time.
    """

    def __init__(self) -> None:
        self.parts: dict[str, float] = {}
        self.step_times: list[float] = []
        self._start: float | None = None
        self._end: float | None = None
        self._last = 0.0
        self._lap: float | None = None
        self._epoch_start = 0.0
        self._first_of_epoch = False
        self._test_start: float | None = None
        self._epoch_restarts = 0
        self._pending_pause = 0.0

    def pause(self, name: str, seconds: float) -> None:
        """Books ``seconds`` spent between two batches under ``name`` instead of ``steps``."""
        self._add(name, seconds)
        self._pending_pause += seconds

    def around(self, callbacks: Sequence[keras.callbacks.Callback]) -> list:
        """``callbacks`` with the clock's own before the first and after each one."""
        out: list = [_Start(self)]
        for callback in callbacks:
            # An Occasional books each of its callbacks itself; its lap only marks where it ended.
            name = None if isinstance(callback, Occasional) else f"callback:{type(callback).__name__}"
            out += [callback, _Lap(self, name)]
        return out

    @property
    def first_step_seconds(self) -> float | None:
        """The first step's time (tracing, compilation, the first batch), once it ended."""
        return self.parts.get("first_step")

    def _add(self, name: str, seconds: float) -> None:
        self.parts[name] = self.parts.get(name, 0.0) + max(seconds, 0.0)

    # -- what the clock's callbacks tell it (see ``around``) ---------------

    def train_began(self) -> None:
        """Training starts: the clock starts."""
        self._start = self._last = time.perf_counter()
        self._epoch_start = self._start
        self._first_of_epoch = True

    def epoch_began(self) -> None:
        """An epoch starts: its first batch counts as the epoch's start, not as a step."""
        self._epoch_start = time.perf_counter()
        self._first_of_epoch = True

    def batch_ended(self) -> None:
        """A training batch ended: the time since the last one is a step (less any pause)."""
        now = time.perf_counter()
        paused, self._pending_pause = self._pending_pause, 0.0
        if self._first_of_epoch:
            if "first_step" not in self.parts:
                assert self._start is not None, "batch_ended before train_began"
                self._add("first_step", now - self._start - paused)
            else:
                self._add("epoch_start", now - self._epoch_start - paused)
                self._epoch_restarts += 1
            self._first_of_epoch = False
        else:
            self.step_times.append(now - self._last - paused)
            self._add("steps", now - self._last - paused)
        self._last = now

    def test_began(self) -> None:
        """Validation starts."""
        self._test_start = time.perf_counter()

    def test_ended(self) -> None:
        """Validation ended: its time is counted as ``validation``."""
        if self._test_start is not None:
            self._add("validation", time.perf_counter() - self._test_start)
            self._test_start = None

    def lap(self, name: str | None = None) -> float:
        """An epoch's end work: the time since the last lap goes to ``name`` (None: a new lap only).

        Returns the seconds booked (0.0 for a new lap only).
        """
        now = time.perf_counter()
        booked = 0.0
        if name is not None and self._lap is not None:
            booked = now - self._lap
            self._add(name, booked)
        self._lap = now
        return booked

    def train_ended(self) -> None:
        """Training ended: the clock stops."""
        self._end = time.perf_counter()

    def breakdown(self) -> dict[str, float | int | None]:
        """Seconds per part (see the class), rounded to 0.01 s, with ``total`` and step counts."""
        if self._start is None:
            return {}
        end = self._end if self._end is not None else time.perf_counter()
        total = end - self._start
        parts = dict(self.parts)
        typical = _median(self.step_times)
        if typical is not None and parts.get("epoch_start"):
            # epoch_start held whole first batches: move one step per epoch back to steps.
            moved = min(parts["epoch_start"], typical * self._epoch_restarts)
            parts["epoch_start"] -= moved
            parts["steps"] = parts.get("steps", 0.0) + moved
        parts["other"] = total - sum(parts.values())
        out: dict[str, float | int | None] = {key: round(value, 2) for key, value in parts.items()}
        out["total"] = round(total, 2)
        out["steps_timed"] = len(self.step_times)
        out["seconds_per_step"] = None if typical is None else round(typical, 4)
        return out


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


class _Start(keras.callbacks.Callback):
    """First in the list: times batches, validation and the start of each epoch."""

    def __init__(self, clock: TrainingClock) -> None:
        super().__init__()
        self.clock = clock

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.clock.train_began()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.clock.epoch_began()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.clock.batch_ended()

    def on_test_begin(self, logs: dict | None = None) -> None:
        self.clock.test_began()

    def on_test_end(self, logs: dict | None = None) -> None:
        self.clock.test_ended()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.clock.lap()

    def on_train_end(self, logs: dict | None = None) -> None:
        self.clock.train_ended()


class _Lap(keras.callbacks.Callback):
    """After a callback: its ``on_epoch_end`` time is the time since the lap before."""

    def __init__(self, clock: TrainingClock, name: str | None) -> None:
        super().__init__()
        self.clock = clock
        self.name = name

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.clock.lap(self.name)

    def on_train_end(self, logs: dict | None = None) -> None:
        self.clock.train_ended()


class TestAt(keras.callbacks.Callback):
    """Evaluates ``data`` after given seconds of training, with the training clock paused.

    After the first batch that ends past each mark (seconds of training
    since ``fit`` began, not counting earlier evaluations), the model is
    evaluated on ``data``; the training metrics' running means are put back
    afterwards, so the epoch's logged loss is unchanged. The evaluation's
    time is added to ``time_limit.paused`` (a :class:`~tfflows.callbacks.TimeLimit`)
    and booked as ``test_at`` on ``clock``, so a run with ``--time-limit``
    still trains for its whole budget.

    Args:
      data: the test data, as ``evaluate`` takes it.
      seconds: the marks, in seconds of training (each > 0).
      time_limit: the run's ``TimeLimit``, or None.
      clock: the run's :class:`TrainingClock`, or None.

    Attributes:
      results: one dict per mark reached: ``minutes`` (the mark),
        ``train_seconds`` (training time when it was taken), ``train_steps``
        (the optimizer's step count), ``eval_seconds`` and the metrics
        ``evaluate`` returned.
    """

    __test__ = False  # a callback, not a test class, for pytest that collects names "Test*"

    def __init__(
        self,
        data: Any,
        seconds: Sequence[float],
        time_limit: TimeLimit | None = None,
        clock: TrainingClock | None = None,
    ) -> None:
        super().__init__()
        marks = sorted(float(s) for s in seconds)
        if not marks or not all(s > 0 for s in marks):
            raise ValueError(f"TestAt: expected seconds of training > 0, got {list(seconds)!r}.")
        self.data = data
        self.marks = marks
        self.time_limit = time_limit
        self.clock = clock
        self.results: list[dict] = []
        self._start: float | None = None
        self._paused = 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._start = time.perf_counter()
        self._paused = 0.0
        self.results = []

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        assert self._start is not None, "on_train_batch_end before on_train_begin"
        trained = time.perf_counter() - self._start - self._paused
        if len(self.results) == len(self.marks) or trained < self.marks[len(self.results)]:
            return
        model = self.model
        saved = [(v, keras.ops.convert_to_numpy(v)) for m in model.metrics for v in m.variables]
        began = time.perf_counter()
        metrics = model.evaluate(self.data, return_dict=True, verbose=0)
        took = time.perf_counter() - began
        for variable, value in saved:
            variable.assign(value)
        self._paused += took
        if self.time_limit is not None:
            self.time_limit.paused += took
        if self.clock is not None:
            self.clock.pause("test_at", took)
        mark = self.marks[len(self.results)]
        self.results.append(
            {
                "minutes": round(mark / 60.0, 4),
                "train_seconds": round(trained, 1),
                "train_steps": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
                "eval_seconds": round(took, 1),
                **{k: float(v) for k, v in metrics.items()},
            }
        )


class Occasional(keras.callbacks.Callback):
    """Callbacks whose end-of-epoch work runs only as often as keeps it within a share of the run.

    Sample grids, sample checks, checkpoints and backups cost about the same
    whatever the epoch's length; on a short epoch they can take most of a
    run. ``Occasional(callbacks, clock)`` passes every Keras hook to
    ``callbacks`` but runs their ``on_epoch_end`` only when it is due
    (:meth:`due`): when the wall time since it last ran is at least
    ``(1 - share) / share`` times what it cost then (9× for the default
    10%), as the ``clock`` measured it. Before it first ran, the first
    step's time (mostly tracing, as its own first run mostly is) stands for
    that cost. The last epoch (the planned last one, or one after which
    training stops: a time limit, early stopping or a non-finite step placed
    earlier in the list) always runs, so the final samples and check are
    written; so does every epoch with ``share`` 1.

    Each callback's time is booked on the clock as ``callback:<Name>``, as
    :meth:`TrainingClock.around` books the others; pass the ``Occasional``
    itself (not its callbacks) to ``around``.

    Args:
      callbacks: the callbacks, run in this order when due.
      clock: the run's :class:`TrainingClock`.
      share: the largest share of the wall time their epoch-end work may
        take, in (0, 1].
      last_epoch: whether to run them after the last epoch whether due or not.

    Attributes:
      epochs_run: the epochs (counted from 1) after which they ran.
    """

    def __init__(
        self,
        callbacks: Sequence[keras.callbacks.Callback],
        clock: TrainingClock,
        share: float = EXTRAS_SHARE,
        last_epoch: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 < share <= 1.0:
            raise ValueError(f"Occasional: share must be in (0, 1], got {share!r}.")
        self.callbacks = list(callbacks)
        self.clock = clock
        self.share = float(share)
        self.last_epoch = bool(last_epoch)
        self.epochs_run: list[int] = []
        self.cost: float | None = None
        self._since = 0.0

    @staticmethod
    def due(seconds_since: float, cost: float, share: float = EXTRAS_SHARE) -> bool:
        """Whether work that cost ``cost`` seconds may run again ``seconds_since`` after it last did.

        Running it then keeps its part of the wall time at most ``share``:
        cost / (seconds_since + cost) <= share.
        """
        return share >= 1.0 or seconds_since * share >= cost * (1.0 - share)

    # -- hooks passed on ----------------------------------------------------------------
    def set_model(self, model: keras.Model) -> None:
        """Gives the model to this callback and to each one it holds."""
        super().set_model(model)
        for callback in self.callbacks:
            callback.set_model(model)

    def set_params(self, params: dict) -> None:
        """Gives ``fit``'s parameters to this callback and to each one it holds."""
        super().set_params(params)
        for callback in self.callbacks:
            callback.set_params(params)

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Starts the clock of the extras; passed on."""
        self._since = time.perf_counter()
        self.epochs_run = []
        self.cost = None
        for callback in self.callbacks:
            callback.on_train_begin(logs)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Passed on to each callback."""
        for callback in self.callbacks:
            callback.on_epoch_begin(epoch, logs)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Passed on to each callback."""
        for callback in self.callbacks:
            callback.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Passed on to each callback."""
        for callback in self.callbacks:
            callback.on_train_batch_end(batch, logs)

    def on_train_end(self, logs: dict | None = None) -> None:
        """Passed on to each callback."""
        for callback in self.callbacks:
            callback.on_train_end(logs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Runs the callbacks' epoch ends when they are due (always after the last epoch)."""
        now = time.perf_counter()
        last = epoch + 1 >= (self.params.get("epochs") or 0) or self.model.stop_training
        cost = self.cost if self.cost is not None else self.clock.first_step_seconds
        if not ((self.last_epoch and last) or cost is None or self.due(now - self._since, cost, self.share)):
            return
        self.clock.lap()
        spent = 0.0
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)
            spent += self.clock.lap(f"callback:{type(callback).__name__}")
        self.cost = spent
        self.epochs_run.append(epoch + 1)
        self._since = time.perf_counter()
