"""How late each new epoch of ``fit`` starts, with tf.data's autotuner on and off.

``tfflows.data.make_dataset`` turns the autotuner off (``tfflows.data.steady``):
deleting an exhausted iterator waits for the autotuner's background thread,
so under ``fit`` each new epoch started late. This script measures that
delay: a Glow (L=2, K=4) trains ``--epochs`` epochs over the first ``--images``
Fashion-MNIST training images, once through ``make_dataset`` as shipped
(``off``) and once with the autotuner turned back on (``on``). Each
configuration runs in its own process, alternating (on off on off ...).

The delay of an epoch is the time from ``on_epoch_begin`` to the end of its
first batch, less the median step; the first epoch (tracing) is left out.

Usage::

    taskset -c 0 python bench/epoch_restart.py --images 12800 --rounds 2 --json-out restart.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from datetime import UTC, datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_name


def child(args) -> dict:
    import time

    import keras
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import tfflows
    from tfflows import data

    images = np.asarray(data.load_images("fashion_mnist", split="train", data_dir=args.data_dir))
    ds = data.make_dataset(images[: args.images], batch_size=args.batch, seed=0, drop_remainder=True)
    if args.autotune == "on":
        options = tf.data.Options()
        options.autotune.enabled = True
        ds = ds.with_options(options)
    keras.utils.set_random_seed(0)
    model = tfflows.Glow((28, 28, 1), num_levels=2, num_steps=4, width=args.width)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=args.jit == "on")

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.first, self.steps, self.last, self.begin = [], [], None, None

        def on_epoch_begin(self, epoch, logs=None):
            self.begin, self.last = time.perf_counter(), None

        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            if self.last is None:
                self.first.append(now - self.begin)
            else:
                self.steps.append(now - self.last)
            self.last = now

    clock = Clock()
    model.fit(ds, epochs=args.epochs, verbose=0, callbacks=[clock])
    step = statistics.median(clock.steps)
    late = [first - step for first in clock.first[1:]]
    return {
        "autotune": args.autotune,
        "autotuner_enabled_in_pipeline": args.autotune == "on",
        "step_s": step,
        "epoch_start_late_s": late,
        "mean_late_s": statistics.mean(late) if late else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--images", type=int, default=12800, help="training images per epoch")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--width", type=int, default=128, help="hidden channels")
    p.add_argument("--jit", choices=["on", "off"], default="off")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--data-dir")
    p.add_argument("--json-out")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--autotune", choices=["on", "off"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return
    if args.epochs < 2:
        p.error(f"--epochs must be at least 2 (the first epoch is not timed), got {args.epochs}")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    runs = []
    for r in range(args.rounds):
        for autotune in ("on", "off"):
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--child",
                "--autotune",
                autotune,
                "--images",
                str(args.images),
                "--epochs",
                str(args.epochs),
                "--batch",
                str(args.batch),
                "--width",
                str(args.width),
                "--jit",
                args.jit,
            ]
            if args.data_dir:
                cmd += ["--data-dir", args.data_dir]
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
            if done.returncode or not line:
                sys.exit(f"child failed ({done.returncode}):\n{done.stderr[-3000:]}")
            result = json.loads(line[0][7:])
            runs.append(result)
            late = ", ".join(f"{x:.2f}" for x in result["epoch_start_late_s"])
            print(
                f"round {r + 1} autotune {autotune:3s}  step {result['step_s']:.3f} s  "
                f"epochs started late by {late} s",
                flush=True,
            )
    summary = {
        a: statistics.mean(x for r in runs if r["autotune"] == a for x in r["epoch_start_late_s"])
        for a in ("on", "off")
    }
    print(f"mean delay per epoch: autotuner on {summary['on']:.2f} s, off {summary['off']:.2f} s")
    if args.json_out:
        out = {
            "cpu": cpu_name(),
            "date": datetime.now(UTC).date().isoformat(),
            "argv": sys.argv[1:],
            "mean_late_s": summary,
            "runs": runs,
        }
        tmp = args.json_out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1)
        os.replace(tmp, args.json_out)


if __name__ == "__main__":
    main()
