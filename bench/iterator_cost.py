"""What a new iterator over fit's validation batches costs: the stored batches against the mapped pipeline.

Keras's ``evaluate`` (and so every validation pass of ``fit``) starts a new
iterator over its data. ``tfflows.data.pipeline.repeating_batches`` stores
in-order full batches once (``from_tensor_slices`` over them); shuffled ones
are gathered by a ``map`` with a prefetch. This times ``iter(dataset)`` and
its first batch for both forms of the same batches, and for the stored form
with tf.data's autotuner left on (what ``steady`` turns off):

    taskset -c 0 python bench/iterator_cost.py --rows 57 --features 30
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=57)  # breast cancer's validation rows
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--iterators", type=int, default=200)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from tfflows.data.pipeline import repeating_batches

    x = np.random.default_rng(0).standard_normal((args.rows, args.features)).astype("float32")

    def per_iterator(dataset: tf.data.Dataset) -> float:
        first = iter(dataset)
        next(first)
        del first
        start = time.perf_counter()
        for _ in range(args.iterators):
            it = iter(dataset)
            next(it)
            del it
        return (time.perf_counter() - start) / args.iterators * 1e3

    stored, _ = repeating_batches(x, batch_size=args.batch_size, shuffle=False, full_batches=True)
    # The mapped form of the same batches: shuffle=True builds it (the order does not matter here).
    mapped, _ = repeating_batches(x, batch_size=args.batch_size, shuffle=True, full_batches=True)
    options = tf.data.Options()
    options.autotune.enabled = True
    autotuned = stored.with_options(options)
    for label, dataset in (
        ("stored (in order)", stored),
        ("mapped (shuffled)", mapped),
        ("stored, autotuner on", autotuned),
    ):
        print(f"{label:<22} {per_iterator(dataset):7.2f} ms per new iterator and its first batch")


if __name__ == "__main__":
    main()
