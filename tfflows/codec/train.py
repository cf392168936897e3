"""Trains an IDF for the codec: a checkpoint every epoch, ``--resume`` where it stopped, a line per epoch."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence

__all__ = ["main", "train", "train_from_cli"]

_CHECKPOINT = re.compile(r"epoch_(\d+)\.keras$")


def train(args: argparse.Namespace) -> dict:
    """Trains (or resumes) an IDF on ``args.dataset``; returns the last epoch's figures.

    ``args``: dataset, data_dir, out, epochs, batch_size, lr (None: keep the resumed
    optimizer's), config (JSON of IDF arguments), test_examples, threads (0: TF's
    default), resume, max_train, part_size (an "epoch" is this many training
    images, a slice of a seeded permutation of the whole set, so that checkpoints
    come often on a slow machine; 0: the whole set).
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from tfflows.data.images import load_images, num_bits_of
    from tfflows.io import atomic_path, atomic_write_json, numbered_entries
    from tfflows.models.idf import IDF

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    train_x = np.asarray(load_images(args.dataset, "train", data_dir=args.data_dir), np.float32)[
        : args.max_train
    ]
    test_x = np.asarray(load_images(args.dataset, "test", data_dir=args.data_dir), np.float32)[
        : args.test_examples
    ]
    folder = os.path.join(args.out, "checkpoints")
    os.makedirs(folder, exist_ok=True)
    found = numbered_entries(folder, _CHECKPOINT)
    if found and not args.resume:
        raise ValueError(
            f"{folder} holds checkpoints; pass --resume to go on from epoch {found[0][0]} "
            "(or --overwrite on the tfflows command line to start again)."
        )
    if found:
        epoch, path = found[0]
        model = keras.models.load_model(path)
        print(f"resumed from {path}", flush=True)
    else:
        epoch = 0
        config = json.loads(args.config) if args.config else {}
        model = IDF(train_x.shape[1:], num_bits=num_bits_of(args.dataset), **config)
        model.build()
        model.compile(optimizer=keras.optimizers.Adam(args.lr or 1e-3))
    if args.lr is not None:
        model.optimizer.learning_rate.assign(args.lr)
    log = open(os.path.join(args.out, "train.log"), "a")
    result = {"dataset": args.dataset, "epoch": epoch}
    for epoch in range(epoch + 1, args.epochs + 1):  # noqa: B020 (the resumed count goes on)
        start, cpu = time.time(), time.process_time()
        part = _part(len(train_x), epoch, args.part_size)
        hist = model.fit(train_x[part], batch_size=args.batch_size, epochs=1, shuffle=True, verbose=0)
        test_bpd = float(
            np.mean(
                np.concatenate(
                    [np.asarray(model.bits_per_dim(test_x[i : i + 500])) for i in range(0, len(test_x), 500)]
                )
            )
        )
        result = dict(
            dataset=args.dataset,
            epoch=epoch,
            train_bpd=float(hist.history["bits_per_dim"][-1]),
            test_bpd=test_bpd,
            wall_s=round(time.time() - start, 1),
            cpu_s=round(time.process_time() - cpu, 1),
            lr=float(model.optimizer.learning_rate.numpy()),
        )
        with atomic_path(os.path.join(folder, f"epoch_{epoch}.keras")) as tmp:
            model.save(tmp)
        history = (
            [json.loads(line) for line in open(os.path.join(args.out, "train.log"))]
            if os.path.exists(os.path.join(args.out, "train.log"))
            else []
        )
        if all(test_bpd < h["test_bpd"] for h in history):
            # the best so far is kept apart: a loss spike later must not cost it
            with atomic_path(os.path.join(args.out, "best.keras")) as tmp:
                model.save(tmp)
        for _, path in numbered_entries(folder, _CHECKPOINT)[2:]:
            os.remove(path)
        line = json.dumps(result)
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()
    with atomic_path(os.path.join(args.out, "model.keras")) as tmp:
        model.save(tmp)
    atomic_write_json(os.path.join(args.out, "results.json"), result)
    return result


def _part(n: int, epoch: int, size: int):
    """Indices of the training images of ``epoch`` (1-based): consecutive slices of seeded permutations."""
    import numpy as np

    if not size or size >= n:
        return slice(None)
    parts = n // size
    order = np.random.default_rng(1000 + (epoch - 1) // parts).permutation(n)
    k = (epoch - 1) % parts
    return np.sort(order[k * size : (k + 1) * size])


def train_from_cli(args: argparse.Namespace) -> dict:
    """``tfflows train --model idf``: the shared train flags mapped onto :func:`train`."""
    from tfflows.models.idf import cli_config

    config = cli_config(args)
    if args.conditional:
        raise ValueError("--model idf is unconditional; drop --conditional.")
    if args.overwrite:
        import shutil

        shutil.rmtree(os.path.join(args.out, "checkpoints"), ignore_errors=True)
        for name in ("results.json", "model.keras", "train.log"):
            if os.path.exists(os.path.join(args.out, name)):
                os.remove(os.path.join(args.out, name))
    return train(
        argparse.Namespace(
            dataset=args.dataset,
            data_dir=args.data_dir,
            out=args.out,
            epochs=args.epochs,
            batch_size=args.batch_size or 64,
            lr=args.lr,
            config=json.dumps(config),
            test_examples=2000,
            threads=0,
            resume=args.resume,
            max_train=args.max_train,
            part_size=0,
        )
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tfflows.codec.train", description=__doc__)
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--config", default=None, help="JSON of IDF arguments")
    parser.add_argument("--test-examples", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument(
        "--part-size",
        type=int,
        default=0,
        help="training images per epoch (a slice of the set; 0: all), for frequent checkpoints",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    train(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
