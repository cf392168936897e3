"""TarFlow sampling: the key/value-cached sequential inverse against the uncached one.

Both decode the same latents with the same weights; only the inverse loop
differs:

- cached: each of the T steps of a block feeds one token through the
  transformer, reading earlier keys and values from the cache;
- uncached: each step reruns the transformer on the whole prefix (T full
  passes per block), the reference.

Each side runs in its own process (a fresh TensorFlow, no shared caches),
alternating A B A B for ``--rounds`` rounds so a busy moment on a shared
machine hits both alike. A process builds the model from a seed (weights set
to seeded random values: a fresh TarFlow block is the identity), traces a
``tf.function`` sampler, runs ``--warmup`` untimed calls, then times
``--calls`` calls. Reported: the median seconds per image of each side over
all its timed calls, their ratio, and the largest absolute difference
between the two sides' samples (pixel levels).

Usage::

    python bench/tarflow_sampling.py                    # 16×16×1, p=2 (T=64), ~1-2 min on 2 CPUs
    python bench/tarflow_sampling.py --size 8 --patch 2 --rounds 2 --json-out tarflow.json
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

import numpy as np
from machine import cpu_name  # bench/machine.py (this folder is on sys.path when run)

# Benchmark the tfflows of this checkout, not whichever one is installed.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

__all__ = ["main"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--size", type=int, default=16, help="image height and width")
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--patch", type=int, default=2, help="patch size p")
    p.add_argument("--blocks", type=int, default=2, help="flow blocks")
    p.add_argument("--layers", type=int, default=2, help="transformer layers per block")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--batch", type=int, default=8, help="images per sampling call")
    p.add_argument("--calls", type=int, default=3, help="timed calls per process")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls after tracing")
    p.add_argument("--rounds", type=int, default=2, help="A B rounds (processes per side)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jit", action="store_true", help="compile the sampler with XLA")
    p.add_argument("--json-out", default=None, help="write the results here as JSON")
    p.add_argument("--child", choices=["cached", "uncached"], default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# -- one side, in its own process ---------------------------------------------


def run_child(args: argparse.Namespace) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    import tfflows
    from tfflows.io import atomic_path, atomic_write_json

    keras.utils.set_random_seed(args.seed)
    shape = (args.size, args.size, args.channels)
    model = tfflows.TarFlow(
        shape,
        patch_size=args.patch,
        num_steps=args.blocks,
        depth=args.layers,
        width=args.width,
        heads=args.heads,
        num_bits=8,
    )
    rng = np.random.default_rng(args.seed)
    for w in model.trainable_weights:
        fan_in = w.shape[0] if len(w.shape) == 2 else 1
        w.assign((rng.normal(size=w.shape) * 0.5 / np.sqrt(fan_in)).astype(w.dtype))
    cached = args.child == "cached"
    z = tf.random.stateless_normal([args.batch, model.num_dims], seed=[args.seed, 1])
    sampler = tf.function(lambda z: model.decode(z, cached=cached), jit_compile=args.jit)

    start = time.perf_counter()
    x = sampler(z).numpy()
    first = time.perf_counter() - start
    for _ in range(args.warmup):
        sampler(z).numpy()
    times = []
    for _ in range(args.calls):
        start = time.perf_counter()
        sampler(z).numpy()
        times.append((time.perf_counter() - start) / args.batch)
    with atomic_path(args.child_out + ".npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, x)
    atomic_write_json(
        args.child_out,
        {
            "side": args.child,
            "first_call_s": first,
            "seconds_per_image": times,
            "tokens": model.token_shape[0],
        },
    )


# -- the parent: alternate the sides, compare -------------------------------------


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.child:
        run_child(args)
        return {}
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
    if "--json-out" in passthrough:
        i = passthrough.index("--json-out")
        del passthrough[i : i + 2]
    results: dict[str, list] = {"cached": [], "uncached": []}
    samples: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as folder:
        for r in range(args.rounds):
            for side in ("cached", "uncached"):
                out = os.path.join(folder, f"{side}_{r}.json")
                cmd = [
                    sys.executable,
                    os.path.abspath(__file__),
                    *passthrough,
                    "--child",
                    side,
                    "--child-out",
                    out,
                ]
                subprocess.run(cmd, check=True)
                with open(out) as f:
                    results[side].append(json.load(f))
                samples.setdefault(side, np.load(out + ".npy"))
                median_ms = statistics.median(results[side][-1]["seconds_per_image"]) * 1e3
                print(
                    f"round {r} {side:9s}: {median_ms:9.2f} "
                    f"ms/image (first call {results[side][-1]['first_call_s']:.1f} s)",
                    flush=True,
                )
    medians = {
        side: statistics.median([t for run in runs for t in run["seconds_per_image"]])
        for side, runs in results.items()
    }
    diff = float(np.max(np.abs(samples["cached"] - samples["uncached"])))
    summary = {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "jit": args.jit,
        "image": [args.size, args.size, args.channels],
        "patch": args.patch,
        "tokens": results["cached"][0]["tokens"],
        "blocks": args.blocks,
        "layers": args.layers,
        "width": args.width,
        "heads": args.heads,
        "batch": args.batch,
        "median_ms_per_image": {k: v * 1e3 for k, v in medians.items()},
        "speedup_cached": medians["uncached"] / medians["cached"],
        "max_abs_diff_levels": diff,
        "runs": results,
    }
    print(
        f"{summary['cpu']} ({summary['cpu_count']} CPUs), T={summary['tokens']} tokens: "
        f"cached {medians['cached'] * 1e3:.2f} ms/image, uncached {medians['uncached'] * 1e3:.2f} "
        f"ms/image, speed-up {summary['speedup_cached']:.2f}x; max |cached − uncached| = "
        f"{diff:.3g} pixel levels"
    )
    if args.json_out:
        from tfflows.io import atomic_write_json

        atomic_write_json(args.json_out, summary)
    return summary


if __name__ == "__main__":
    main()
