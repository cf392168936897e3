"""``tfflows train --workers N``, a mode of train: one worker of a multi-worker run.

See :mod:`tfflows.distributed`.

Every worker loads the same data, builds the same model under a
``MultiWorkerMirroredStrategy`` and trains with :func:`tfflows.distributed.fit`;
``--batch-size`` is per worker, so a global batch holds ``batch_size × workers``
examples. Only the chief writes in ``--out``: ``checkpoints/step_*`` during
training, then ``model.keras`` and ``results.json``. Started again on an
interrupted run, the workers go on from the chief's newest checkpoint.
A worker ends its process itself (:func:`tfflows.distributed.finish`): the
other workers once the chief has written its files, then the chief, so that
TensorFlow's coordination service reports no task as crashed.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

__all__ = ["train_worker", "wants_workers"]


def wants_workers(args: argparse.Namespace) -> bool:
    """True when ``tfflows train`` should run as one worker of a cluster.

    Raises:
      ValueError: ``--worker-index`` without a cluster (``--workers``,
        ``--worker-hosts`` or ``TF_CONFIG``): such a worker would train alone.
    """
    cluster = (
        getattr(args, "workers", None) is not None
        or bool(getattr(args, "worker_hosts", None))
        or bool(os.environ.get("TF_CONFIG", "").strip())
    )
    index = getattr(args, "worker_index", None)
    if index is not None and not cluster:
        raise ValueError(
            f"--worker-index {index} places this process in a cluster, got no cluster: "
            "give --workers N (and --worker-hosts, or TF_CONFIG) as well, or leave "
            "--worker-index out for a single run."
        )
    return cluster


def _is_chief_task(config: dict) -> bool:
    task = config["task"]
    return task["type"] == "chief" or (
        task["type"] == "worker" and task["index"] == 0 and "chief" not in config["cluster"]
    )


def train_worker(args: argparse.Namespace) -> dict:
    """Runs this worker's part of ``tfflows train``, then ends the process (status 0 when all went well).

    Errors before training (the cluster, the data, the arguments) raise as in
    any command; once trained, the chief writes the results and every worker
    exits through :func:`tfflows.distributed.finish`: status 2 when the
    chief could not write, 1 when training stopped on non-finite values.
    """
    from tfflows import distributed
    from tfflows.data.tabular import check_columns_flag
    from tfflows.io import remove_leftovers
    from tfflows.runlock import RunLock

    config = distributed.cluster_config(args.workers, args.worker_index, args.worker_hosts)
    for flag, value in (("--perturb", getattr(args, "perturb", None)),):
        if value:
            raise ValueError(f"{flag} is not supported with multi-worker training; got {flag} {value}.")
    # Flags checked as a single run checks them, before waiting for the cluster to join.
    check_columns_flag(args.dataset, getattr(args, "columns", None))
    if not _is_chief_task(config):
        return _train(args, config, None)
    with RunLock(args.out) as lock:  # the chief holds --out for the run (issue 21)
        remove_leftovers(args.out)
        return _train(args, config, lock)


def _train(args, config: dict, lock) -> dict:
    """:func:`train_worker` after the cluster is known; ``lock``: the chief's :class:`RunLock`, else None."""
    from tfflows import distributed
    from tfflows.cli import common

    chief = lock is not None
    previous = common.previous_run(args.out) if chief else None
    if previous and previous.startswith("a finished") and not (args.resume or args.overwrite):
        raise ValueError(
            f"--out {args.out!r} holds {previous}; pass --resume to continue it "
            "(up to --epochs in total) or --overwrite to start over, or choose another --out."
        )
    strategy = distributed.connect(config, join_timeout=args.join_timeout)

    import keras

    from tfflows.callbacks import TimeLimit
    from tfflows.training import make_optimizer

    keras.utils.set_random_seed(args.seed)
    tabular = common.tabular_options(args)
    train_x, train_y, num_bits, source_bits = common.load_data(
        args.dataset, args.data_dir, "train", args.num_bits, args.max_train, args.conditional, **tabular
    )
    common.apply_data_defaults(args, len(train_x), num_bits is None, math.prod(train_x.shape[1:]))
    workers = strategy.num_replicas_in_sync
    global_batch = args.batch_size * workers

    def epoch_data(epoch: int):
        # Seeded per epoch: the batches of (epoch, step) are the same on every worker and after a restart.
        return common.pipeline(train_x, train_y, num_bits, source_bits, global_batch, True, args.seed + epoch)

    num_classes = int(train_y.max()) + 1 if args.conditional and train_y is not None else None
    if args.conditional and train_y is None:
        raise ValueError(f"--conditional needs labelled data; {args.dataset} has none.")
    with strategy.scope():
        model = common.build_model(args, train_x.shape[1:], num_bits, num_classes)
        model.compile(
            optimizer=make_optimizer(
                args.lr, args.warmup, clipnorm=args.clipnorm, weight_decay=getattr(args, "weight_decay", None)
            ),
            jit_compile=False,
        )  # the strategy.run loop is not compiled with XLA
    if num_bits is None:
        model.initialize((train_x, train_y) if model.is_conditional else train_x)
    where = f"{config['task']['type']} {config['task']['index']} of {workers}"
    print(
        f"tfflows: {where}: {type(model).__name__} on {args.dataset}, global batch {global_batch} "
        f"({args.batch_size} per worker), {model.count_params():,} parameters"
    )
    ckpt = os.path.join(args.out, "checkpoints")
    if chief:
        if previous and args.overwrite:
            common.remove_run(args.out)
        os.makedirs(ckpt, exist_ok=True)
    callbacks = [TimeLimit(args.time_limit * 60.0)] if args.time_limit else []
    start = time.time()
    history = distributed.fit(
        model,
        epoch_data,
        strategy=strategy,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        callbacks=callbacks,
        checkpoint_dir=ckpt,
        checkpoint_every=args.checkpoint_every,
        verbose=args.verbose if chief else 0,
    )
    seconds = time.time() - start
    if not chief:
        print(f"tfflows: {where}: done after {seconds:.0f} s; the chief writes the results", flush=True)
        distributed.finish(strategy, exit_code=0)  # leaves first: the chief hosts the coordination service
        return {}  # not reached
    code = 0
    try:
        result = _write_results(
            args, model, history, seconds, workers, global_batch, num_bits, source_bits, tabular, ckpt
        )
    except (ValueError, OSError) as err:  # as cli.main would report it, before the workers are let go
        print(f"tfflows train: {common.one_line(err)}", file=sys.stderr)
        code = 2
    else:
        if result["stopped_on_nonfinite"]:
            print(
                "tfflows train: training stopped on non-finite values; model.keras was not "
                "written. Lower --lr or raise --warmup.",
                file=sys.stderr,
            )
            code = 1
    # The other workers wait for the chief's files, leave, then the chief ends the process
    # (with os._exit: the lock is released here, not by the with-block).
    lock.release()
    distributed.finish(strategy, exit_code=code)
    return result  # not reached: finish ends the process


def _write_results(
    args, model, history, seconds, workers, global_batch, num_bits, source_bits, tabular, ckpt
) -> dict:
    """The chief's part after training: test NLL, ``model.keras`` and ``results.json`` in ``--out``."""
    from tfflows import distributed
    from tfflows.cli import common
    from tfflows.io import atomic_write_json

    test_x, test_y, _, _ = common.load_data(
        args.dataset, args.data_dir, "test", args.num_bits, with_labels=args.conditional, **tabular
    )
    test = common.pipeline(test_x, test_y, num_bits, source_bits, 256, False, args.seed + 1)
    copy = distributed.local_copy(model)
    final = copy.evaluate(test, return_dict=True, verbose=0)
    diverged = model.stopped_on_nonfinite
    if not diverged:
        copy.save(os.path.join(args.out, "model.keras"))
    result = {
        "model": type(model).__name__,
        "dataset": args.dataset,
        "num_bits": num_bits,
        "workers": workers,
        "global_batch": global_batch,
        "epochs_run": len(history.history.get("loss", [])),
        "train_seconds": round(seconds, 1),
        "train_steps": int(model.optimizer.iterations.numpy()),
        "loss_per_epoch": history.history.get("loss", []),
        "test_loss_nats": final["loss"],
        f"test_{model.per_dim_metric}": final[model.per_dim_metric],
        "stopped_on_nonfinite": diverged,
        "checkpoints": ckpt,
        "args": vars(args),
    }
    atomic_write_json(os.path.join(args.out, "results.json"), result)
    what = "NLL (nats)" if num_bits is None else "bits/dim"
    value = final["loss"] if num_bits is None else final["bits_per_dim"]
    print(
        f"tfflows: test {what} {value:.4f} after {result['train_steps']} steps on {workers} "
        f"workers ({seconds:.0f} s); model and results in {args.out}",
        flush=True,
    )
    return result
