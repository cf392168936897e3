"""``tfflows train``: a flow trained on images, toys or a CSV file (alone, or as one worker)."""

from __future__ import annotations

import math
import os
import sys
import time
from typing import TYPE_CHECKING

from tfflows.cli.common import (
    apply_data_defaults,
    build_model,
    load_data,
    pipeline,
    pixel_range,
    previous_run,
    remove_run,
    tabular_options,
)
from tfflows.cli.parser import PROBE_MIN_MINUTES, PROBE_MIN_STEPS, VAL_EXAMPLES_TIMED

if TYPE_CHECKING:
    import argparse

    import tensorflow as tf

__all__ = ["probe_line", "run"]


def _worth_probing(args, num_train: int) -> bool:
    """Whether ``--jit auto`` times XLA: a run planned long enough to earn back its compilation."""
    per_epoch = args.steps_per_epoch or math.ceil(num_train / args.batch_size)
    return args.epochs * per_epoch >= PROBE_MIN_STEPS and (
        args.time_limit is None or args.time_limit >= PROBE_MIN_MINUTES
    )


def _batches(ds: tf.data.Dataset) -> int | None:
    """The batches in one pass of ``ds``, or None if tf.data does not know (or there are none)."""
    count = int(ds.cardinality())
    return count if count > 0 else None


def _check_tarflow_options(args) -> None:
    """Refuses TarFlow's training flags where they would do nothing (before any data is read)."""
    given = [
        flag
        for flag, key in (
            ("--noise", "noise"),
            ("--noise-std", "noise_std"),
            ("--label-dropout", "label_dropout"),
        )
        if getattr(args, key, None) is not None
    ]
    if given and args.model != "tarflow":
        raise ValueError(f"{given[0]} is a training option of --model tarflow, got --model {args.model}.")
    if getattr(args, "noise_std", None) is not None and args.noise != "gaussian":
        raise ValueError(
            f"--noise-std is the std of --noise gaussian, got --noise "
            f"{args.noise or 'uniform (the default)'}."
        )
    if getattr(args, "label_dropout", None) is not None and not args.conditional:
        raise ValueError(
            "--label-dropout is for class-conditional models (--conditional), got an unconditional one."
        )


def probe_line(probe: dict, jit_compile: bool) -> str:
    """The line ``tfflows train --jit auto`` prints about a :func:`tfflows.training.probe_jit` report."""
    if probe["xla_skipped"]:
        return f"tfflows: --jit auto: XLA off, not tried: {probe['xla_skipped']}"
    if probe["xla_error"]:
        return f"tfflows: --jit auto: XLA off, it could not compile the step: {probe['xla_error']}"
    return (
        f"tfflows: --jit auto: XLA {'on' if jit_compile else 'off'} (measured "
        f"{probe['seconds_per_step']['off'] * 1e3:.3f} ms/step without, "
        f"{probe['seconds_per_step']['on'] * 1e3:.3f} ms/step with)"
    )


def run(args: argparse.Namespace) -> dict:
    from tfflows.cli.workers import train_worker, wants_workers
    from tfflows.io import remove_leftovers
    from tfflows.models.registry import own_trainer
    from tfflows.runlock import RunLock

    trainer = own_trainer(args.model)  # a model trained its own way (the codec's IDF)
    if wants_workers(args):
        if trainer is not None:
            raise ValueError(f"--model {args.model} trains in one process; drop --workers.")
        return train_worker(args)
    with RunLock(args.out):  # one run per --out, for the run's lifetime (issue 21)
        remove_leftovers(args.out)
        return trainer(args) if trainer is not None else _train_alone(args)


def _train_alone(args) -> dict:
    import keras

    from tfflows.backup import ResumableBackup
    from tfflows.callbacks import FiniteCheckpoint, SampleCheck, SampleGrid, TensorBoardSamples, TimeLimit
    from tfflows.clock import Occasional, TestAt, TrainingClock
    from tfflows.data import class_names
    from tfflows.io import atomic_write_json
    from tfflows.progress import EpochProgress
    from tfflows.training import make_optimizer, probe_jit

    _check_tarflow_options(args)
    previous = previous_run(args.out)
    if previous and not (args.resume or args.overwrite):
        raise ValueError(
            f"--out {args.out!r} holds {previous}; pass --resume to continue it "
            "(up to --epochs in total) or --overwrite to start over, or choose another --out."
        )
    if args.test_at and args.time_limit and max(args.test_at) > args.time_limit:
        raise ValueError(
            f"--test-at: expected minutes up to --time-limit {args.time_limit:g}, got {max(args.test_at):g}."
        )
    if args.n_bits is not None:
        print(
            "tfflows train: --n-bits is deprecated and goes in the next release; use --num-bits",
            file=sys.stderr,
        )
        args.num_bits = args.n_bits
    keras.utils.set_random_seed(args.seed)
    tabular = tabular_options(args)
    train_x, train_y, num_bits, source_bits = load_data(
        args.dataset, args.data_dir, "train", args.num_bits, args.max_train, args.conditional, **tabular
    )
    test_x, test_y, _, _ = load_data(
        args.dataset, args.data_dir, "test", args.num_bits, with_labels=args.conditional, **tabular
    )
    defaults = apply_data_defaults(args, len(train_x), num_bits is None, math.prod(train_x.shape[1:]))
    num_classes = None
    if args.conditional:
        if train_y is None or test_y is None:
            raise ValueError(f"--conditional needs labelled data; {args.dataset} has none.")
        num_classes = int(max(train_y.max(), test_y.max())) + 1
    train = pipeline(
        train_x, train_y, num_bits, source_bits, args.batch_size, True, args.seed, drop_remainder=True
    )
    if getattr(args, "perturb", None):
        train = _perturbed(args, train_x, num_bits, source_bits)
    test = pipeline(test_x, test_y, num_bits, source_bits, 256, False, args.seed + 1)
    val_examples = args.val_examples or (VAL_EXAMPLES_TIMED if args.time_limit else None)
    val, val_x = test, test_x
    if num_bits is None:
        # Vector data stop early on validation rows of their own: the test figure comes from rows
        # that picked no epoch. (Image runs validate on test images; they do not stop early.)
        val_x, val_y, _, _ = load_data(args.dataset, args.data_dir, "validation", None, **tabular)
        val = pipeline(val_x, val_y, None, None, 256, False, args.seed + 2)
    elif val_examples and val_examples < len(test_x):
        val = pipeline(
            test_x[:val_examples],
            None if test_y is None else test_y[:val_examples],
            num_bits,
            source_bits,
            256,
            False,
            args.seed + 1,
        )
    model = build_model(args, train_x.shape[1:], num_bits, num_classes)
    value_range = pixel_range(train_x, num_bits, source_bits)
    probe = args.jit == "auto" and _worth_probing(args, len(train_x))
    model.compile(
        optimizer=make_optimizer(
            args.lr, args.warmup, clipnorm=args.clipnorm, weight_decay=getattr(args, "weight_decay", None)
        ),
        jit_compile=False if probe else {"auto": "auto", "on": True, "off": False}[args.jit],
    )
    vector = num_bits is None
    if vector:
        # Standardize's statistics come from every training row, not only the first batch
        # (a resumed run gets its own back from the backup, as for ActNorm).
        model.initialize((train_x, train_y) if model.is_conditional else train_x)
    print(
        f"tfflows: {type(model).__name__} on {args.dataset}: {len(train_x)} train / "
        + (f"{len(val_x)} validation / " if vector else "")
        + f"{len(test_x)} test examples of shape {tuple(train_x.shape[1:])}, "
        f"{model.count_params():,} parameters"
    )
    # Only now, with the data and the model ready, is the earlier run given up.
    if previous and args.overwrite:
        remove_run(args.out)
        print(f"tfflows: --overwrite: removed {previous} from {args.out}")
    os.makedirs(args.out, exist_ok=True)
    ckpt = os.path.join(args.out, "checkpoints")
    os.makedirs(ckpt, exist_ok=True)
    backup = ResumableBackup(os.path.join(args.out, "backup"), checkpoint_dir=ckpt)
    checkpoint = FiniteCheckpoint(os.path.join(ckpt, "epoch_{epoch:03d}.keras"), keep=args.keep_checkpoints)
    grid = SampleGrid(
        os.path.join(args.out, "samples"),
        num_bits=num_bits or 8,
        value_range=value_range,
        seed=args.seed,
        class_names=class_names(args.dataset) if num_classes else None,
        dims=_plot_dims(args, train_x.shape[1:]),
    )
    clock = TrainingClock()
    # The per-epoch extras together take at most --extras-share of the wall time (measured by
    # the clock); the last epoch's always run. Last in the list, after any callback that stops
    # training, so that they know the last epoch when it ends.
    extras = Occasional(
        [
            SampleCheck(seed=args.seed),  # first, so the others log its fraction too
            checkpoint,
            backup,
            grid,
            TensorBoardSamples(
                os.path.join(args.out, "tensorboard"),
                num_bits=num_bits or 8,
                value_range=value_range,
                seed=args.seed,
                source=grid,
            ),
        ],
        clock,
        share=args.extras_share,
    )
    callbacks = [
        keras.callbacks.TensorBoard(os.path.join(args.out, "tensorboard"), update_freq=args.log_every)
    ]
    jit = {"setting": args.jit, "probe": None}
    budget = args.time_limit * 60.0 if args.time_limit else None
    if probe:
        # XLA's compilation may take at most a tenth of a time-limited run.
        jit["probe"] = probe_jit(model, train, max_compile_seconds=budget / 10 if budget else None)
        print(probe_line(jit["probe"], bool(model.jit_compile)))
        if budget:  # the probe's steps trained the model: they count against the budget
            budget = max(budget - jit["probe"]["probe_seconds"], 1e-3)
    jit["jit_compile"] = bool(model.jit_compile)
    limit = TimeLimit(budget) if budget else None
    if limit:
        callbacks.append(limit)
    test_at = None
    marks = sorted(m * 60.0 for m in args.test_at or () if not args.time_limit or m < args.time_limit)
    if marks:
        test_at = TestAt(test, marks, time_limit=limit, clock=None)
        callbacks.append(test_at)
    if vector and not args.no_early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=args.patience,
                restore_best_weights=True,
                verbose=min(args.verbose, 1),
            )
        )
    if test_at is not None:
        test_at.clock = clock
    callbacks = clock.around(callbacks + [extras])
    if args.verbose:
        # Keras's progress bar estimates from the first step (the tracing): ours from the second.
        callbacks.append(EpochProgress(live=None if args.verbose == 1 else False, time_limit=limit))
    start = time.time()
    # One pass of the data per epoch, from one iterator for the whole run: given a finite
    # dataset, Keras starts two iterators per epoch and two per validation pass.
    per_epoch, val_steps = args.steps_per_epoch or _batches(train), _batches(val)
    history = model.fit(
        train.repeat() if per_epoch else train,
        epochs=args.epochs,
        steps_per_epoch=per_epoch,
        validation_data=val.repeat() if val_steps else val,
        validation_steps=val_steps,
        validation_freq=args.val_every,
        callbacks=callbacks,
        verbose=0,
    )
    seconds = time.time() - start
    if args.resume:
        print(
            f"tfflows: resumed after {backup.initial_epoch} epochs from {backup.restored_from}"
            if backup.restored_from
            else f"tfflows: nothing to resume in {args.out}; trained from scratch"
        )
    final = model.evaluate(test, return_dict=True, verbose=0)
    diverged = model.stopped_on_nonfinite
    if not diverged:
        model.save(os.path.join(args.out, "model.keras"))
    epochs_run = len(history.history.get("loss", []))
    fractions = history.history.get(SampleCheck.key, [])
    result = {
        "model": type(model).__name__,
        "dataset": args.dataset,
        "data_dir": None if args.data_dir is None else os.path.abspath(args.data_dir),
        "num_bits": num_bits,
        "n_bits": num_bits,  # the old name, read by earlier versions; to go in the next release
        "pixel_range": value_range,
        "epochs_run": epochs_run,
        "epochs_total": backup.initial_epoch + epochs_run,
        "resumed_from": backup.restored_from,
        "train_seconds": round(seconds, 1),
        "train_steps": int(model.optimizer.iterations.numpy()),
        "time_breakdown_s": {
            **clock.breakdown(),
            **({"jit_probe": jit["probe"]["probe_seconds"]} if jit["probe"] else {}),
        },
        "jit": jit,
        "test_at": (test_at.results if test_at else [])
        + (
            [
                {
                    "minutes": m,
                    "train_seconds": round(
                        seconds - sum(r["eval_seconds"] for r in (test_at.results if test_at else [])), 1
                    ),
                    "train_steps": int(model.optimizer.iterations.numpy()),
                    **final,
                }
                for m in (args.test_at or ())
                if args.time_limit and m == args.time_limit
            ][:1]
        ),
        "test_loss_nats": final["loss"],
        f"test_{model.per_dim_metric}": final[model.per_dim_metric],
        "test_split": (
            "test rows of the CSV file (--test-fraction, seeded by --seed; apart from the "
            "--val-fraction validation rows that early stopping used)"
            if args.dataset.lower().endswith(".csv")
            else "test"
        ),
        "examples": {"train": len(train_x), "validation": len(val_x), "test": len(test_x)},
        "chosen_from_data": defaults,
        "parameters": model.count_params(),
        "stopped_on_nonfinite": diverged,
        "nonfinite_steps": int(model.nonfinite_steps.numpy()),
        "last_good_checkpoint": checkpoint.last_good,
        "best_checkpoint": checkpoint.best,
        "extras_epochs": extras.epochs_run,
        "nonfinite_sample_fraction": fractions[-1] if fractions else None,
        "val_loss_per_epoch": history.history.get("val_loss", []),
        "val_examples": min(val_examples or len(test_x), len(test_x)),
        "nonfinite_sample_fraction_per_epoch": fractions,
        "args": vars(args),
    }
    atomic_write_json(os.path.join(args.out, "results.json"), result)
    if diverged:
        where = (
            f"the last good checkpoint is {checkpoint.last_good}"
            if checkpoint.last_good
            else "no checkpoint was written before it"
        )
        raise SystemExit(
            f"tfflows train: training stopped on non-finite values (the loss, a gradient or the "
            f"update was inf or NaN) in epoch {result['epochs_total']}; that step was skipped and "
            f"model.keras was not written; {where}. Lower --lr or raise --warmup. "
            f"Details in {os.path.join(args.out, 'results.json')}."
        )
    if fractions and fractions[-1] > 0.5:
        print(
            f"tfflows train: warning: {fractions[-1]:.0%} of samples at temperature 1.0 are inf or "
            "NaN: the model is not usable as trained (lower --lr or raise --warmup; "
            "FlowModel.sample(clip_latent=...) draws finite ones).",
            file=sys.stderr,
        )
    what = "NLL (nats)" if num_bits is None else "bits/dim"
    value = final["loss"] if num_bits is None else final["bits_per_dim"]
    print(
        f"tfflows: test {what} {value:.4f} after {result['epochs_total']} epochs "
        f"({epochs_run} in this run, {seconds:.0f} s); model, samples and logs in {args.out}"
    )
    return result


def _plot_dims(args, event_shape: tuple[int, ...]) -> tuple[int, int]:
    """The two features a vector model's density picture shows (``--plot-dims``), checked."""
    dims = tuple(args.plot_dims or (0, 1))
    if len(event_shape) == 1 and event_shape[0] > 1 and not all(0 <= d < event_shape[0] for d in dims):
        raise ValueError(f"--plot-dims: expected two features in 0..{event_shape[0] - 1}, got {dims}.")
    return dims


def _perturbed(args, train_x, num_bits, source_bits):
    """The training data of a background model (``--perturb``): pixels replaced at that rate."""
    from tfflows.ood import perturbed_dataset

    if num_bits is None or args.conditional:
        raise ValueError(
            f"--perturb is for unconditional image models, got dataset {args.dataset!r}"
            + (" with --conditional." if args.conditional else " (vector data).")
        )
    return perturbed_dataset(
        train_x,
        args.perturb,
        batch_size=args.batch_size,
        num_bits=num_bits,
        source_bits=source_bits,
        seed=args.seed,
    )
