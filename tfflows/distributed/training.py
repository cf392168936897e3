"""Training under ``MultiWorkerMirroredStrategy``: the step loop, checkpoints, a local copy."""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from tfflows.distributed.cluster import is_chief
from tfflows.io import atomic_dir, atomic_write_json, numbered_entries

if TYPE_CHECKING:
    from tfflows.models.base import FlowModel

__all__ = ["CHECKPOINT_NAME", "checkpoints", "fit", "local_copy"]

CHECKPOINT_NAME = re.compile(r"^step_(\d{8})$")
"""A checkpoint folder: ``step_00000120`` after 120 training steps."""


def _state_variables(model: keras.Model) -> list:
    """What a checkpoint holds: every model weight and every optimizer variable."""
    return [*model.weights, *model.optimizer.variables]


def checkpoints(folder: str | os.PathLike | None) -> list[tuple[int, str]]:
    """``(global step, path)`` of every complete checkpoint in ``folder``, newest first."""
    return numbered_entries(folder, CHECKPOINT_NAME)


def _save_checkpoint(
    model: keras.Model, folder: str, epoch: int, step: int, global_step: int, keep: int
) -> str:
    """Writes ``step_XXXXXXXX/`` (variables.npz, state.json) atomically; keeps the newest ``keep``."""
    os.makedirs(folder, exist_ok=True)
    variables = _state_variables(model)
    path = os.path.join(folder, f"step_{global_step:08d}")
    with atomic_dir(path, overwrite=True) as tmp:
        arrays: dict[str, Any] = {f"v{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(variables)}
        np.savez(os.path.join(tmp, "variables.npz"), **arrays)
        atomic_write_json(
            os.path.join(tmp, "state.json"),
            {
                "epoch": epoch,
                "step": step,
                "global_step": global_step,
                "variables": [v.path for v in variables],
            },
        )
    for _, old in checkpoints(folder)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def _load_checkpoint(model: keras.Model, folder: str) -> tuple[int, int, int, str] | None:
    """Restores the newest readable checkpoint: (epoch, step, global step, path), or None.

    A checkpoint of another model (other variables) raises ``ValueError``;
    an unreadable one is skipped with a warning for the one before it.
    """
    variables = _state_variables(model)
    for _, path in checkpoints(folder):
        try:
            with open(os.path.join(path, "state.json"), encoding="utf-8") as f:
                state = json.load(f)
            with np.load(os.path.join(path, "variables.npz")) as archive:
                values = [archive[f"v{i:05d}"] for i in range(len(archive.files))]
        except (OSError, ValueError, KeyError) as err:
            warnings.warn(
                f"tfflows.distributed: skipping unreadable checkpoint {path} ({type(err).__name__}: {err})",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        shapes = [tuple(v.shape) for v in variables]
        if len(values) != len(variables) or [tuple(a.shape) for a in values] != shapes:
            raise ValueError(
                f"checkpoint {path} holds {len(values)} variables that do not fit this model's "
                f"{len(variables)} (model and optimizer): expected shapes {shapes[:4]}..., got "
                f"{[tuple(a.shape) for a in values[:4]]}...; is it another model's checkpoint folder?"
            )
        for var, value in zip(variables, values):
            var.assign(value)
        return int(state["epoch"]), int(state["step"]), int(state["global_step"]), path
    return None


# -- the loop ------------------------------------------------------------------


def _from_chief(strategy: tf.distribute.Strategy, values: list) -> list[tf.Tensor]:
    """The chief's ``values`` on every worker: an all-reduce where the others add zeros.

    Each value goes as float64 (exact for float32 and for integers below 2^53).
    """
    values = [tf.cast(tf.convert_to_tensor(v), tf.float64) for v in values]
    if strategy.num_replicas_in_sync == 1:
        return values
    chief = is_chief(strategy)

    def share(*values):
        ctx = tf.distribute.get_replica_context()
        first = tf.cast(tf.logical_and(chief, tf.equal(ctx.replica_id_in_sync_group, 0)), tf.float64)
        return ctx.all_reduce(tf.distribute.ReduceOp.SUM, [v * first for v in values])

    shared = tf.function(lambda: strategy.run(share, args=tuple(values)))()
    return [strategy.experimental_local_results(v)[0] for v in shared]


def _sync_from_chief(strategy: tf.distribute.Strategy, model: keras.Model) -> None:
    """Every worker takes the chief's weights and optimizer state (bit for bit)."""
    variables = _state_variables(model)
    for var, value in zip(variables, _from_chief(strategy, [v.value for v in variables])):
        var.assign(tf.cast(value, var.dtype))


def _epoch_source(data) -> Callable[[int], tf.data.Dataset]:
    if isinstance(data, tf.data.Dataset):
        return lambda epoch: data
    if callable(data):
        return data
    raise ValueError(
        f"fit: expected a tf.data.Dataset of global batches or a function "
        f"epoch -> Dataset, got {type(data).__name__}."
    )


def _shardable(ds) -> tf.data.Dataset:
    if not isinstance(ds, tf.data.Dataset):
        raise ValueError(f"fit: the data function must return a tf.data.Dataset, got {type(ds).__name__}.")
    options = tf.data.Options()
    # Every worker reads the same batches and keeps its slice of each: sharding by
    # data keeps the order a function of (epoch, step), as resuming needs.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def fit(
    model: FlowModel,
    data: tf.data.Dataset | Callable[[int], tf.data.Dataset],
    *,
    strategy: tf.distribute.Strategy | None = None,
    epochs: int = 1,
    steps_per_epoch: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    keep_checkpoints: int = 2,
    verbose: int = 1,
) -> keras.callbacks.History:
    """Trains ``model`` on every worker of ``strategy`` with a ``strategy.run`` loop.

    ``model`` is a compiled :class:`tfflows.FlowModel` created under
    ``strategy.scope()``. ``data`` gives *global* batches: a
    ``tf.data.Dataset`` read from its start every epoch, or a function
    ``epoch -> Dataset``. It must give the same batches on every worker and
    every time it is asked (seeded shuffling), as each worker reads all of
    it and keeps its slice of each global batch (``AutoShardPolicy.DATA``):
    with W workers and a global batch of B, each trains on B / W examples.
    ``steps_per_epoch`` cuts (or repeats) each epoch's data to that many
    batches.

    Before the first step, unless a checkpoint is restored, data-dependent
    steps (ActNorm, Standardize) are initialised from the first global
    batch, the same one on every worker, and every weight is then taken
    from the chief. Callbacks run on every worker (``on_epoch_begin/end``,
    ``on_train_batch_begin/end`` with ``loss`` and the per-dim metric);
    ``stop_training`` set on any worker stops all at the same step. Give
    callbacks that write files only to the chief (:func:`is_chief`).

    Fault tolerance: with ``checkpoint_dir`` the chief writes a checkpoint
    every ``checkpoint_every`` steps and at the end of every epoch (each an
    atomic folder; the newest ``keep_checkpoints`` kept). Started again
    after any worker stopped, ``fit`` restores the newest one on the chief,
    sends it to every worker and goes on from that (epoch, step): the
    remaining batches are those an uninterrupted run would have seen, so the
    final weights are the same. Only the chief reads and writes the folder.

    Returns:
      The ``History`` of this call: per-epoch ``loss`` and per-dim metric.

    Raises:
      ValueError: an uncompiled model, one not created under ``strategy``,
        bad counts, data that is not a Dataset, or a checkpoint of another model.
    """
    strategy = strategy or tf.distribute.get_strategy()
    name = type(model).__name__
    if getattr(model, "optimizer", None) is None:
        raise ValueError(
            f"fit: expected a compiled model (model.compile(optimizer=...)), got {name} without an optimizer."
        )
    for key, value, low in (
        ("epochs", epochs, 1),
        ("checkpoint_every", checkpoint_every, 1),
        ("keep_checkpoints", keep_checkpoints, 1),
        ("steps_per_epoch", 1 if steps_per_epoch is None else steps_per_epoch, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"fit: {key} must be an integer >= {low}, got {value!r}.")
    if not all(
        strategy.extended.variable_created_in_scope(getattr(v, "value", v)) for v in model.weights[:1]
    ):
        raise ValueError(
            f"fit: {name} was not created under this strategy's scope; build and "
            "compile it inside `with strategy.scope():`."
        )
    source = _epoch_source(data)
    chief = is_chief(strategy)
    folder = os.fspath(checkpoint_dir) if checkpoint_dir is not None and chief else None
    if not model.optimizer.built:
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)

    restored = _load_checkpoint(model, folder) if folder else None
    start = _from_chief(strategy, [*(restored[:3] if restored else (0, 0, 0)), restored is not None])
    start_epoch, start_step, global_step, found = (int(v.numpy()) for v in start)
    if not found:
        first = next(iter(source(0).take(1)), None)
        if first is None:
            raise ValueError("fit: the data of epoch 0 is empty.")
        model.spec.check_first_batch(first)
        if not model.is_initialized:
            model.initialize(first)
    _sync_from_chief(strategy, model)
    if restored and verbose:
        print(f"tfflows: resumed from {restored[3]} (epoch {start_epoch + 1}, step {start_step})")

    from tfflows.models.base import NonFiniteGuard

    model.nonfinite_steps.assign(0)
    model.stopped_on_nonfinite = False
    model.stop_training = False
    callback_list = keras.callbacks.CallbackList(
        list(callbacks or []) + [NonFiniteGuard()],
        add_history=True,
        add_progbar=bool(verbose) and chief,
        model=model,
        verbose=verbose,
        epochs=epochs,
        steps=steps_per_epoch,
    )

    @tf.function
    def train_step(iterator):
        # The batch is taken inside the function: an eager distributed iterator starts
        # collectives of its own, out of step with those of the functions on other workers.
        logs = strategy.run(model.train_step, args=(next(iterator),))
        # Each replica's loss is already the global batch's mean: any replica's value will do.
        logs = {k: strategy.experimental_local_results(v)[0] for k, v in logs.items()}
        return logs

    @tf.function
    def agree_to_stop(stop):
        def vote(stop):
            # A new tensor made on the replica's device: an argument itself has none to reduce to.
            ballot = tf.cast(stop > 0, tf.float32)
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, ballot)

        votes = strategy.run(vote, args=(stop,))
        return strategy.experimental_local_results(votes)[0] > 0

    several = strategy.num_replicas_in_sync > 1
    callback_list.on_train_begin()
    logs: dict = {}
    epoch = start_epoch
    for epoch in range(start_epoch, epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        ds = _shardable(source(epoch))
        if steps_per_epoch is not None:
            ds = ds.repeat().take(steps_per_epoch)
        count = int(ds.cardinality())
        if count < 0:
            raise ValueError(
                f"fit: the number of batches in epoch {epoch} is unknown (cardinality "
                f"{count}); pass steps_per_epoch."
            )
        skip = start_step if epoch == start_epoch else 0
        iterator = iter(strategy.experimental_distribute_dataset(_shardable(ds.skip(skip))))
        for step in range(skip, count):
            callback_list.on_train_batch_begin(step)
            logs = {k: float(v.numpy()) for k, v in train_step(iterator).items()}
            global_step += 1
            callback_list.on_train_batch_end(step, logs)
            if folder and global_step % checkpoint_every == 0:
                _save_checkpoint(model, folder, epoch, step + 1, global_step, keep_checkpoints)
            stop = bool(model.stop_training)
            if several:
                stop = bool(agree_to_stop(tf.constant(float(stop))))
            if stop:
                model.stop_training = True
                break
        callback_list.on_epoch_end(epoch, dict(logs))
        if folder and not model.stop_training:
            _save_checkpoint(model, folder, epoch + 1, 0, global_step, keep_checkpoints)
        if model.stop_training:
            break
    callback_list.on_train_end(dict(logs))
    return model.history


def local_copy(model: FlowModel) -> FlowModel:
    """A plain copy of a distributed ``model`` (weights and optimizer state) to save or evaluate.

    Saving or evaluating the distributed model on the chief alone would read
    its metrics across workers; the copy lives outside every strategy.
    """
    if tf.distribute.has_strategy():
        raise ValueError(
            "local_copy: expected a call outside `strategy.scope()`, where the copy's "
            "variables are plain ones; got a call inside a strategy's scope."
        )
    copy = type(model).from_config(model.get_config())
    copy.compile(optimizer=type(model.optimizer).from_config(model.optimizer.get_config()))
    for target, source in (
        (copy.weights, model.weights),
        (copy.optimizer.variables, model.optimizer.variables),
    ):
        if len(target) != len(source):
            raise ValueError(
                f"local_copy: expected {len(source)} variables in the copy of "
                f"{type(model).__name__}, got {len(target)}."
            )
        for t, s in zip(target, source):
            t.assign(np.asarray(s.numpy()))
    return copy


# -- the end of a run ------------------------------------------------------------
