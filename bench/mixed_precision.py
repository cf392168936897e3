"""float32 against mixed_bfloat16 (or mixed_float16) training of a small Glow on Fashion-MNIST.

Each configuration trains the same Glow (same seed, same data stream, same
number of steps) in its own Python process, and the processes alternate
A B A B … over ``--rounds`` rounds so drifts in the machine's speed hit every
policy alike. Each run reports:

- training throughput in images/s, timed between ``on_train_batch_end``
  callbacks after ``--skip-steps`` steps (tracing and warm-up excluded);
- the test bits/dim after ``--steps`` steps, on the first ``--test-images``
  images of the Fashion-MNIST test split, dequantized with a fixed seed
  (the same pixels for every run), evaluated under the run's own policy.

The summary gives the median img/s per policy, the mean test bits/dim, and
each policy's difference to float32 (the target for mixed_bfloat16: no more
than 0.01 bits/dim worse), plus the CPU model, GPUs and load average. Under a
mixed policy only the coupling and prior networks compute in 16 bits; the
flow itself (ActNorm, 1×1 convolutions, log-dets, loss) stays float32.

Usage::

    python bench/mixed_precision.py --steps 5 --rounds 1 --test-images 64   # smoke test
    python bench/mixed_precision.py --steps 400 --rounds 2 --json-out mixed_precision.json
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from machine import cpu_name  # bench/machine.py (this folder is on sys.path when run)

# Benchmark the tfflows of this checkout, not whichever one is installed.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

__all__ = ["main"]

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
TARGET_BPD = 0.01


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--policies",
        default="float32,mixed_bfloat16",
        help=f"comma-separated, from {POLICIES}; the first is the reference",
    )
    p.add_argument("--steps", type=int, default=400, help="training steps per run")
    p.add_argument(
        "--skip-steps", type=int, default=5, help="first steps left out of the throughput (tracing, warm-up)"
    )
    p.add_argument("--rounds", type=int, default=2, help="A B A B … rounds (each policy once per round)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--hidden", type=int, default=128, help="coupling network width")
    p.add_argument("--levels", type=int, default=2, help="L: number of scales")
    p.add_argument("--steps-per-level", type=int, default=4, help="K: flow steps per level")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--test-images", type=int, default=1000, help="first N test images evaluated")
    p.add_argument("--jit", choices=("off", "on"), default="off", help="XLA for the train step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json-out", default=None, help="write the results here as JSON (atomically)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one run's policy
    p.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for key in ("steps", "rounds", "batch_size", "hidden", "levels", "steps_per_level", "test_images"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
    if not 0 <= args.skip_steps < args.steps - 1:
        p.error(f"--skip-steps must be in 0..{args.steps - 2} (below --steps - 1), got {args.skip_steps}")
    if not (args.learning_rate > 0 and math.isfinite(args.learning_rate)):
        p.error(f"--learning-rate must be a finite number > 0, got {args.learning_rate}")
    policies = [s.strip() for s in args.policies.split(",") if s.strip()]
    bad = [s for s in policies if s not in POLICIES]
    if bad or len(policies) < 2 or len(set(policies)) != len(policies):
        p.error(f"--policies must name two or more different policies from {POLICIES}, got {args.policies!r}")
    args.policy_list = policies
    return args


def cpu_flags() -> list[str]:
    """The CPU's 16-bit float instruction sets (bf16 runs natively with AVX512_BF16 / AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return sorted(f for f in flags if "bf16" in f or "fp16" in f or f.startswith("amx"))
    except OSError:
        pass
    return []


# -- one run (a worker process) ---------------------------------------------------------------


def worker(args: argparse.Namespace) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    import tfflows
    from tfflows.data import load_images, make_dataset

    keras.mixed_precision.set_global_policy(args.worker)
    keras.utils.set_random_seed(args.seed)
    train = load_images("fashion_mnist", "train", download=False)
    test = load_images("fashion_mnist", "test", download=False)[: args.test_images]
    model = tfflows.Glow(
        (28, 28, 1), num_levels=args.levels, num_steps=args.steps_per_level, width=args.hidden, seed=args.seed
    )
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate), jit_compile=args.jit == "on")
    data = make_dataset(
        train, batch_size=args.batch_size, shuffle=True, repeat=True, seed=args.seed, drop_remainder=True
    )

    stamps: list[float] = []

    class Stamp(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            stamps.append(time.perf_counter())

    started = time.perf_counter()
    history = model.fit(data, epochs=1, steps_per_epoch=args.steps, verbose=0, callbacks=[Stamp()])
    timed = len(stamps) - 1 - args.skip_steps
    seconds = stamps[-1] - stamps[args.skip_steps]
    test_data = make_dataset(test, batch_size=250, shuffle=False, seed=args.seed + 1)
    scores = model.evaluate(test_data, verbose=0, return_dict=True)
    optimizer = model.optimizer
    return {
        "policy": args.worker,
        "images_per_s": timed * args.batch_size / seconds,
        "timed_steps": timed,
        "timed_seconds": seconds,
        "first_step_s": stamps[0] - started,  # fit's set-up, ActNorm init, tracing
        "train_loss_last_epoch_mean": float(history.history["loss"][-1]),
        "test_bits_per_dim": float(scores["bits_per_dim"]),
        "test_images": len(test),
        "nonfinite_steps": int(model.nonfinite_steps.numpy()),
        "loss_scale": (
            float(optimizer.dynamic_scale.numpy())
            if isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
            else None
        ),
        "conditioner_compute_dtype": sorted(
            {
                layer.conditioner.compute_dtype
                for layer in model.flow_layers
                if getattr(layer, "conditioner", None) is not None
            }
        ),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "finite_weights": bool(
            all(
                np.all(np.isfinite(w.numpy())) for w in model.weights if keras.backend.is_float_dtype(w.dtype)
            )
        ),
    }


def run_worker(args: argparse.Namespace, policy: str, argv: list[str]) -> dict:
    """Runs one configuration in a fresh Python process and reads back its JSON."""
    import json

    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "run.json")
        command = [sys.executable, os.path.abspath(__file__), *argv, "--worker", policy, "--worker-out", out]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_REPO, env.get("PYTHONPATH")]))
        started = time.perf_counter()
        proc = subprocess.run(command, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"the {policy} run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        with open(out) as f:
            result = json.load(f)
    result["process_seconds"] = time.perf_counter() - started
    return result


# -- the comparison ----------------------------------------------------------------------------


def summarize(args: argparse.Namespace, runs: list[dict]) -> dict:
    reference = args.policy_list[0]
    per_policy = {}
    for policy in args.policy_list:
        mine = [r for r in runs if r["policy"] == policy]
        bpd = [r["test_bits_per_dim"] for r in mine]
        rate = [r["images_per_s"] for r in mine]
        per_policy[policy] = {
            "images_per_s_median": statistics.median(rate),
            "images_per_s_runs": rate,
            "test_bits_per_dim_mean": statistics.fmean(bpd),
            "test_bits_per_dim_runs": bpd,
            "nonfinite_steps": [r["nonfinite_steps"] for r in mine],
            "loss_scale": [r["loss_scale"] for r in mine],
            "conditioner_compute_dtype": mine[0]["conditioner_compute_dtype"],
        }
    ref = per_policy[reference]
    for s in per_policy.values():
        s["speedup_vs_reference"] = s["images_per_s_median"] / ref["images_per_s_median"]
        s["bits_per_dim_minus_reference"] = s["test_bits_per_dim_mean"] - ref["test_bits_per_dim_mean"]
        s["within_target"] = s["bits_per_dim_minus_reference"] <= TARGET_BPD
    return {"reference": reference, "target_bits_per_dim_worse_at_most": TARGET_BPD, "policies": per_policy}


def markdown(out: dict) -> str:
    c, d, s = out["config"], out["device"], out["summary"]
    lines = [
        f"Glow K={c['steps_per_level']} L={c['levels']} hidden={c['hidden']} on Fashion-MNIST 28×28×1, "
        f"batch {c['batch_size']}, {c['steps']} steps, Adam({c['learning_rate']}), jit={c['jit']}, "
        f"{c['rounds']} round(s) A B …; test bits/dim on the first {c['test_images']} test images",
        f"device: {d['cpu']} ({d['usable_cpus']} usable CPUs; 16-bit flags: "
        f"{' '.join(d['cpu_16bit_flags']) or 'none'}); GPUs: {', '.join(d['gpus']) or 'none'}; "
        f"load average {d['load_average_1m_at_start']:.1f} at start, "
        f"{out['load_average_1m_at_end']:.1f} at end",
        "",
        "| policy | img/s (median) | speed-up | test bits/dim | Δ bits/dim vs "
        + s["reference"]
        + f" | within {TARGET_BPD} |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for policy, p in s["policies"].items():
        runs = ", ".join(f"{v:.4f}" for v in p["test_bits_per_dim_runs"])
        lines.append(
            f"| {policy} | {p['images_per_s_median']:.1f} | {p['speedup_vs_reference']:.2f}× | "
            f"{p['test_bits_per_dim_mean']:.4f} ({runs}) | "
            f"{p['bits_per_dim_minus_reference']:+.4f} | "
            f"{'yes' if p['within_target'] else 'no'} |"
        )
    return "\n".join(lines)


def device_info() -> dict:
    import keras
    import tensorflow as tf

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu_name(),
        "cpu_16bit_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "load_average_1m_at_start": os.getloadavg()[0],
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset"),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def forwarded(argv: list[str]) -> list[str]:
    """The command line without --json-out / --rounds / --policies, for the workers."""
    out, skip = [], False
    for _i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in ("--json-out", "--rounds", "--policies"):
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.worker:
        from tfflows.io import atomic_write_json

        atomic_write_json(args.worker_out, worker(args))
        return 0
    from tfflows.io import atomic_write_json

    device = device_info()
    runs = []
    for round_ in range(args.rounds):
        for policy in args.policy_list:  # A B A B …: the machine's drifts hit both alike
            print(f"[round {round_ + 1}/{args.rounds}] {policy} ...", file=sys.stderr, flush=True)
            result = run_worker(args, policy, forwarded(argv))
            result["round"] = round_ + 1
            runs.append(result)
            print(
                f"[round {round_ + 1}/{args.rounds}] {policy}: {result['images_per_s']:.1f} img/s, "
                f"test {result['test_bits_per_dim']:.4f} bits/dim",
                file=sys.stderr,
                flush=True,
            )
    out = {
        "benchmark": "mixed_precision_glow",
        "config": {
            "policies": args.policy_list,
            "steps": args.steps,
            "skip_steps": args.skip_steps,
            "rounds": args.rounds,
            "batch_size": args.batch_size,
            "hidden": args.hidden,
            "levels": args.levels,
            "steps_per_level": args.steps_per_level,
            "learning_rate": args.learning_rate,
            "test_images": args.test_images,
            "jit": args.jit,
            "seed": args.seed,
            "data": "Fashion-MNIST (tfflows.data.load_images, download=False), 8 bits, "
            "uniform dequantization; test subset dequantized with seed + 1",
        },
        "command": " ".join([os.path.basename(sys.executable), "bench/mixed_precision.py", *argv]),
        "device": device,
        "runs": runs,
        "summary": summarize(args, runs),
        "load_average_1m_at_end": os.getloadavg()[0],
    }
    print(markdown(out))
    if args.json_out:
        atomic_write_json(args.json_out, out)
        print(f"\nwrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
