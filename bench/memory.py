"""Peak memory and time of one Glow training step for backprop="store" / "recompute" / "reversible".

Each configuration (mode, K) runs in its own process, in rounds that cycle
through all of them (A B C A B C ...), so a busy moment on the machine hits
every configuration alike. A process builds ``tfflows.Glow`` (L levels, K
steps per level), sets ActNorm from a batch, compiles Adam, traces the
training step (``model.train_step`` in one ``tf.function``, fit's path) and
runs ``--warmup`` steps (the first traces it). Then:

- memory of one step: on a GPU, ``tf.config.experimental`` peak bytes
  allocated during the step minus the bytes allocated before it; on a CPU,
  the process's peak resident set (VmHWM, reset through
  ``/proc/self/clear_refs`` just before the step) minus its resident set
  before the step. On the CPU, large allocations are made with mmap
  (``MALLOC_MMAP_THRESHOLD_``) and the heap is trimmed first, so memory freed
  by the warm-up steps does not hide the step's own peak.
- time: the median of ``--steps`` further steps (each ending with a read of
  the loss).

``--execution eager`` runs the same ``train_step`` eagerly (as
``fit(run_eagerly=True)``): the tape then keeps what the gradient needs, as
the graph does, and there is no tracing, which on a busy shared CPU took
18 minutes for one K=8 process.

Usage::

    python bench/memory.py                                  # CPU: 64 channels, 32×32×3, batch 16
    python bench/memory.py --execution eager                # the same step without tracing
    python bench/memory.py --hidden 512 --batch 64 --json-out gpu.json   # the paper's size on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime

MODES = ("store", "recompute", "reversible")


def _kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(args) -> dict:
    import ctypes

    import keras
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import tfflows

    gpu = bool(tf.config.list_physical_devices("GPU"))
    h, w, c = args.shape
    keras.utils.set_random_seed(0)
    model = tfflows.Glow(
        (h, w, c), num_levels=args.levels, num_steps=args.k, width=args.hidden, backprop=args.mode
    )
    rng = np.random.default_rng(0)
    x = tf.constant(
        (rng.integers(0, 256, (args.batch, h, w, c)) + rng.random((args.batch, h, w, c))).astype("float32")
    )
    model.initialize(x)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), jit_compile=args.jit == "on")
    if args.execution == "graph":
        step = tf.function(model.train_step, jit_compile=args.jit == "on")
    else:
        step = model.train_step  # eagerly, as fit(run_eagerly=True): no tracing to wait for
    t0 = time.perf_counter()
    float(step(x)["loss"])
    first = time.perf_counter() - t0
    for _ in range(args.warmup - 1):
        float(step(x)["loss"])

    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
        before = tf.config.experimental.get_memory_info("GPU:0")["current"]
        loss = float(step(x)["loss"])
        peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
        memory = {
            "what": "GPU bytes allocated (peak during the step - before)",
            "before_mib": before / 2**20,
            "step_mib": (peak - before) / 2**20,
        }
    else:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        before = _kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident set
        loss = float(step(x)["loss"])
        peak = _kib("VmHWM")
        memory = {
            "what": "process RSS (peak during the step - before)",
            "before_mib": before / 1024,
            "step_mib": (peak - before) / 1024,
        }
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        float(step(x)["loss"])
        times.append(time.perf_counter() - t0)
    return {
        "mode": args.mode,
        "k": args.k,
        "loss": loss,
        "first_step_s": first,
        "step_s": statistics.median(times),
        "device": "GPU" if gpu else "CPU",
        "gpu": tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0]).get(
            "device_name"
        )
        if gpu
        else None,
        "parameters": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
        **memory,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ks", type=int, nargs="+", default=[8, 16, 32], help="K, steps per level")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--shape", type=int, nargs=3, default=[32, 32, 3])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2, help="processes per configuration")
    p.add_argument("--steps", type=int, default=3, help="timed steps per process")
    p.add_argument("--warmup", type=int, default=3, help="steps before the measured one (>= 1)")
    p.add_argument("--jit", choices=["on", "off"], default="off")
    p.add_argument(
        "--execution",
        choices=["graph", "eager"],
        default="graph",
        help="graph: fit's tf.function step; eager: the same step run eagerly",
    )
    p.add_argument("--json-out")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--k", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return

    from machine import cpu_name

    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "MALLOC_MMAP_THRESHOLD_": "65536",
        "MALLOC_TRIM_THRESHOLD_": "65536",
    }
    common = [
        "--levels",
        str(args.levels),
        "--hidden",
        str(args.hidden),
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--jit",
        args.jit,
        "--execution",
        args.execution,
        "--shape",
        *map(str, args.shape),
    ]
    runs: dict[tuple[str, int], list[dict]] = {}
    for r in range(args.rounds):
        for k in args.ks:
            for mode in args.modes:
                cmd = [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--child",
                    "--mode",
                    mode,
                    "--k",
                    str(k),
                    *common,
                ]
                done = subprocess.run(cmd, capture_output=True, text=True, env=env)
                lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
                if done.returncode or not lines:
                    sys.exit(f"round {r} K={k} {mode} failed:\n{done.stderr[-3000:]}")
                result = json.loads(lines[-1][7:])
                runs.setdefault((mode, k), []).append(result)
                print(
                    f"round {r} K={k:3d} {mode:10s} step memory {result['step_mib']:8.1f} MiB  "
                    f"{result['step_s']:7.3f} s/step  (first step {result['first_step_s']:.1f} s)",
                    flush=True,
                )
    device = runs[(args.modes[0], args.ks[0])][0]
    where = device["gpu"] if device["device"] == "GPU" else cpu_name()
    print(
        f"\n{where}; Glow L={args.levels}, hidden {args.hidden}, {tuple(args.shape)}, batch "
        f"{args.batch}, {args.execution}, XLA {args.jit}; medians of {args.rounds} processes; "
        f"{device['what']}"
    )
    caveat = None
    if device["device"] != "GPU" and args.execution == "graph":
        # Measured: store's compiled step at batch 16 grew the RSS by 18.7 MiB, less than its
        # eager step at batch 8 (24 MiB), which keeps the same activations.
        caveat = (
            "on a CPU the resident set does not show a compiled step's memory: TensorFlow's "
            "executor and oneDNN keep buffers between steps; use --execution eager for "
            "memory, or a GPU, whose allocator peak is exact"
        )
        print(f"note: {caveat}")
    print(f"{'K':>3} {'mode':10s} {'step MiB':>9} {'vs store':>8} {'s/step':>8} {'vs store':>8}")
    table = []
    for k in args.ks:
        base = (
            {key: statistics.median(r[key] for r in runs[("store", k)]) for key in ("step_mib", "step_s")}
            if "store" in args.modes
            else None
        )
        for mode in args.modes:
            mib = statistics.median(r["step_mib"] for r in runs[(mode, k)])
            sec = statistics.median(r["step_s"] for r in runs[(mode, k)])
            rm = mib / base["step_mib"] if base else float("nan")
            rs = sec / base["step_s"] if base else float("nan")
            print(f"{k:3d} {mode:10s} {mib:9.1f} {rm:8.2f} {sec:8.3f} {rs:8.2f}")
            table.append(
                {
                    "k": k,
                    "mode": mode,
                    "step_mib": mib,
                    "step_s": sec,
                    "memory_vs_store": rm,
                    "time_vs_store": rs,
                    "losses": [r["loss"] for r in runs[(mode, k)]],
                }
            )
    if args.json_out:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from tfflows.io import atomic_write_json

        atomic_write_json(
            args.json_out,
            {
                "machine": where,
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
                "config": {
                    k: v for k, v in vars(args).items() if k not in ("child", "mode", "k", "json_out")
                },
                "table": table,
                "memory_caveat": caveat,
                "runs": [r for rs in runs.values() for r in rs],
            },
        )


if __name__ == "__main__":
    main()
