"""One worker of the two-worker tests in test_multiworker.py (run as a script, one process each).

    python tests/multiworker_job.py INDEX HOST0:PORT0,HOST1:PORT1 OUT [--reference]
        [--checkpoint-dir D] [--pause SECONDS] [--join-timeout SECONDS]

Trains a tiny Glow (8×8×1, L=1, K=2, hidden 8) with ``tfflows.distributed.fit``
for 2 epochs of 4 global batches of 8 and writes, through ``tfflows.io``:
``OUT/worker{INDEX}_init.npz`` (every weight once ActNorm is initialised),
``OUT/worker{INDEX}_final.npz`` and ``OUT/worker{INDEX}_losses.json`` (the
loss after every step). ``--pause`` sleeps after each
step so a test can kill the worker mid-run. With ``--reference`` the same
processes first train a fresh model once without checkpoints or pauses and
write its files as ``worker{INDEX}_ref_*``: one launch of the pair gives the
uninterrupted run and then the one to kill. The process ends through
``tfflows.distributed.finish``.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfflows import distributed

GLOBAL_BATCH, EXAMPLES, EPOCHS = 8, 32, 2


def examples():
    import numpy as np

    rng = np.random.RandomState(0)
    return rng.uniform(0.0, 32.0, (EXAMPLES, 8, 8, 1)).astype("float32")


def epoch_data(epoch: int):
    """The global batches of ``epoch``: a seeded shuffle, the same in every process."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(examples())
    return ds.shuffle(EXAMPLES, seed=100 + epoch, reshuffle_each_iteration=False).batch(GLOBAL_BATCH)


def build_model():
    import keras

    import tfflows

    keras.utils.set_random_seed(0)
    model = tfflows.Glow((8, 8, 1), num_levels=1, num_steps=2, width=8, num_bits=5)
    model.compile(optimizer=tfflows.make_optimizer(1e-3, warmup_steps=2), jit_compile=False)
    return model


def main() -> None:
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 prints where a stuck worker waits
    parser = argparse.ArgumentParser()
    parser.add_argument("index", type=int)
    parser.add_argument("hosts")
    parser.add_argument("out")
    parser.add_argument("--reference", action="store_true")
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--pause", type=float, default=0.0)
    parser.add_argument("--join-timeout", type=float, default=60.0)
    args = parser.parse_args()
    config = distributed.cluster_config(worker_hosts=args.hosts, worker_index=args.index)
    strategy = distributed.connect(config, join_timeout=args.join_timeout, collective_timeout=300.0)

    import keras
    import numpy as np

    from tfflows.io import atomic_path, atomic_write_json

    def save(name, model):
        with atomic_path(os.path.join(args.out, f"worker{args.index}_{name}.npz")) as tmp:
            np.savez(tmp, *[np.asarray(w) for w in model.get_weights()])

    def train(prefix, checkpoint_dir, pause):
        losses = []

        class Record(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                save(f"{prefix}init", self.model)

            def on_train_batch_end(self, batch, logs=None):
                losses.append(logs["loss"])
                time.sleep(pause)

        with strategy.scope():
            model = build_model()
        distributed.fit(
            model,
            epoch_data,
            strategy=strategy,
            epochs=EPOCHS,
            callbacks=[Record()],
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=2,
            verbose=0,
        )
        save(f"{prefix}final", model)
        atomic_write_json(os.path.join(args.out, f"worker{args.index}_{prefix}losses.json"), losses)

    if args.reference:
        train("ref_", None, 0.0)
    train("", args.checkpoint_dir, args.pause)
    distributed.finish(strategy, timeout=300.0, exit_code=0)


if __name__ == "__main__":
    main()
