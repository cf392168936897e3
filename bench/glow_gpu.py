"""Glow at the paper's CIFAR-10 size: training images/s and the fraction of the GPU's peak.

The model is ``tfflows.Glow((32, 32, 3), num_levels=3, num_steps=32,
hidden_channels=512)`` (Kingma & Dhariwal 2018, CIFAR-10), trained by Keras
``fit`` on random uint8 images (throughput does not depend on the pixel
values) with batch 64 per GPU. Four configurations: float32 and
``mixed_bfloat16``, XLA on and off; each runs in its own process, in turn,
for ``--rounds`` rounds (A B C D A B C D), and the median of each is kept.

FLOPs per image are counted from the model, not estimated by hand: TensorFlow's
graph profiler (``ProfileOptionBuilder.float_operation``) sums the
floating-point operations of every op of the traced training step (forward,
backward and the optimizer update) for one batch, divided by the batch size.
The fraction of peak is FLOPs per image × images/s divided by the card's dense
bf16 peak (``--peak-tflops``; 989 for an H100 SXM or H200, NVIDIA's figure
without sparsity). The issue's target is ≥ 40 %.

Usage (on a GPU machine; on a CPU it runs and reports no peak fraction)::

    python bench/glow_gpu.py --rounds 2 --json-out glow_gpu.json
    python bench/glow_gpu.py --levels 2 --steps 4 --width 64 --image 16 --rounds 1 --timed 4   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from machine import batch_clock, cpu_name  # bench/machine.py (this folder is on sys.path when run)

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

__all__ = ["main"]

CONFIGS = [("float32", "off"), ("float32", "on"), ("mixed_bfloat16", "off"), ("mixed_bfloat16", "on")]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--steps", type=int, default=32, help="K, steps per level")
    p.add_argument("--width", type=int, default=512, help="hidden channels")
    p.add_argument("--image", type=int, default=32, help="image height and width")
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--timed", type=int, default=20, help="timed batches per process")
    p.add_argument("--warmup", type=int, default=3, help="untimed batches after the first")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--peak-tflops", type=float, default=989.0, help="the card's dense bf16 peak")
    p.add_argument(
        "--configs", nargs="+", default=[f"{d}:{j}" for d, j in CONFIGS], help="dtype:jit pairs to run"
    )
    p.add_argument("--json-out", default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def count_flops(model, images) -> float:
    """Floating-point operations of one training step on ``images``, from the traced graph."""
    import tensorflow as tf
    from tensorflow.python.profiler import model_analyzer, option_builder

    optimizer = model.optimizer

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(model.log_prob(x))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    graph = step.get_concrete_function(tf.TensorSpec(images.shape, tf.float32)).graph
    opts = option_builder.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    return float(model_analyzer.profile(graph, options=opts).total_float_ops)


def run_child(args: argparse.Namespace) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    import tfflows
    from tfflows.io import atomic_write_json

    dtype, jit = args.child.split(":")
    shape = (args.image, args.image, args.channels)
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, (args.batch_size * 8, *shape)).astype(np.uint8)
    model = tfflows.Glow(
        shape, num_levels=args.levels, num_steps=args.steps, width=args.width, dtype=dtype, seed=0
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=(jit == "on"))
    ds = tf.data.Dataset.from_tensor_slices(pool).repeat().batch(args.batch_size).prefetch(4)

    t0 = time.perf_counter()
    model.fit(ds, steps_per_epoch=1 + args.warmup, epochs=1, verbose=0)
    first = time.perf_counter() - t0
    clock = batch_clock()
    model.fit(ds, steps_per_epoch=args.timed + 1, epochs=1, verbose=0, callbacks=[clock])
    per_batch = (clock.stamps[-1] - clock.stamps[0]) / (len(clock.stamps) - 1)
    gpus = tf.config.list_physical_devices("GPU")
    device = (
        tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else cpu_name()
    )
    flops = count_flops(model, pool[: args.batch_size].astype(np.float32)) / args.batch_size
    memory = tf.config.experimental.get_memory_info("GPU:0")["peak"] if gpus else None
    atomic_write_json(
        args.child_out,
        {
            "config": args.child,
            "device": device,
            "parameters": int(model.count_params()),
            "images_per_s": args.batch_size / per_batch,
            "first_fit_s": first,
            "train_flops_per_image": flops,
            "peak_gpu_memory_bytes": memory,
        },
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        run_child(args)
        return
    rows: dict[str, list[dict]] = {c: [] for c in args.configs}
    passthrough = [
        "--levels",
        str(args.levels),
        "--steps",
        str(args.steps),
        "--width",
        str(args.width),
        "--image",
        str(args.image),
        "--channels",
        str(args.channels),
        "--batch-size",
        str(args.batch_size),
        "--timed",
        str(args.timed),
        "--warmup",
        str(args.warmup),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for config in args.configs:
                out = os.path.join(tmp, f"{config.replace(':', '_')}_{r}.json")
                subprocess.run(
                    [
                        sys.executable,
                        os.path.abspath(__file__),
                        "--child",
                        config,
                        "--child-out",
                        out,
                        *passthrough,
                    ],
                    check=True,
                )
                with open(out) as f:
                    rows[config].append(json.load(f))
                print(f"round {r + 1}: {rows[config][-1]}", flush=True)
    table = {}
    for config, runs in rows.items():
        ips = statistics.median(x["images_per_s"] for x in runs)
        flops = runs[0]["train_flops_per_image"]
        on_gpu = runs[0]["device"] != cpu_name()
        table[config] = {
            "images_per_s": ips,
            "train_gflops_per_image": flops / 1e9,
            "achieved_tflops": ips * flops / 1e12,
            "fraction_of_bf16_peak": ips * flops / (args.peak_tflops * 1e12) if on_gpu else None,
            "peak_gpu_memory_gib": (runs[0]["peak_gpu_memory_bytes"] or 0) / 2**30 if on_gpu else None,
            "runs": runs,
        }
    report = {
        "device": rows[args.configs[0]][0]["device"],
        "cpu": cpu_name(),
        "model": f"Glow L={args.levels} K={args.steps} width={args.width} "
        f"{args.image}x{args.image}x{args.channels}, batch {args.batch_size}",
        "parameters": rows[args.configs[0]][0]["parameters"],
        "peak_tflops": args.peak_tflops,
        "configs": table,
        "argv": sys.argv[1:],
    }
    print(json.dumps(report, indent=1))
    if args.json_out:
        from tfflows.io import atomic_write_json

        atomic_write_json(args.json_out, report)


if __name__ == "__main__":
    main()
