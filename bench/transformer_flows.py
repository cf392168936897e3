"""TarFlow, Jet and Glow at similar parameter counts: speed, and bits/dim after the same budget.

Two measurements, each model always in its own process (a fresh TensorFlow):

``--mode speed``
    Training images/s (Keras ``fit`` on Fashion-MNIST batches, timed between
    ``on_train_batch_end`` callbacks after warm-up) and sampling seconds per
    image (``model.sample``, traced once, then timed; TarFlow's sampler is the
    key/value-cached sequential inverse). The models run in turn, A B C A B C,
    for ``--rounds`` rounds; the median of each is reported.

``--mode budget``
    Each model is trained by ``tfflows train`` on Fashion-MNIST for the same
    wall-clock budget (``--minutes``), one after another, never two at once.
    Validation during training is off, so the budget goes to training; the
    figure is the test bits/dim over the whole test split (10,000 images,
    uniform dequantization) that ``tfflows train`` computes after the budget.
    Each run's folder (model, results.json) is kept under ``--runs``.

``--cores 1`` pins every process to those CPU cores (``taskset``) with as many
TensorFlow threads, so a benchmark can run beside other work on the other
core without either disturbing the other's threads.

Usage::

    python bench/transformer_flows.py --mode speed --rounds 2 --cores 1
    python bench/transformer_flows.py --mode budget --minutes 30 --cores 1 --json-out budget.json

The three models (parameter counts for 28×28×1):

- glow: ``Glow(num_levels=2, num_steps=4, hidden_channels=192)``, 423,829;
- tarflow: ``TarFlow(patch_size=4, num_blocks=4, num_layers=2, width=64, heads=4)``, 425,729;
- jet: ``Jet(patch_size=4, num_steps=8, depth=1, width=64, heads=4)``, 445,121.
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

__all__ = ["MODELS", "main"]

# The same three models in both modes, as `tfflows train` flags.
MODELS: dict[str, list[str]] = {
    "glow": ["--model", "glow", "--levels", "2", "--steps", "4", "--width", "192"],
    "tarflow": [
        "--model",
        "tarflow",
        "--patch-size",
        "4",
        "--steps",
        "4",
        "--depth",
        "2",
        "--width",
        "64",
        "--heads",
        "4",
    ],
    "jet": [
        "--model",
        "jet",
        "--patch-size",
        "4",
        "--steps",
        "8",
        "--depth",
        "1",
        "--width",
        "64",
        "--heads",
        "4",
    ],
}
RECIPE = ["--batch-size", "64", "--lr", "1e-3", "--warmup", "200", "--seed", "0"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--mode", choices=["speed", "budget"], default="speed")
    p.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["glow", "tarflow", "jet"])
    p.add_argument(
        "--cores", default=None, help="pin every process to these cores (taskset list, e.g. '1' or '0,1')"
    )
    p.add_argument("--rounds", type=int, default=2, help="speed: rounds of A B C")
    p.add_argument("--train-steps", type=int, default=30, help="speed: timed training batches")
    p.add_argument("--sample-images", type=int, default=16, help="speed: images per sampling call")
    p.add_argument("--sample-calls", type=int, default=2, help="speed: timed sampling calls")
    p.add_argument("--minutes", type=float, default=30.0, help="budget: minutes of training each")
    p.add_argument("--runs", default="runs/transformer_budget", help="budget: run folders")
    p.add_argument("--json-out", default=None)
    p.add_argument("--child", choices=sorted(MODELS), default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _flag(flags: list[str], name: str) -> str:
    return flags[flags.index(name) + 1]


def build(name: str):
    """The model ``tfflows train`` builds from MODELS[name], for 28×28×1 8-bit images."""
    import tfflows

    f = MODELS[name]
    shape = (28, 28, 1)
    if name == "glow":
        return tfflows.Glow(
            shape,
            num_levels=int(_flag(f, "--levels")),
            num_steps=int(_flag(f, "--steps")),
            width=int(_flag(f, "--width")),
            seed=0,
        )
    if name == "tarflow":
        return tfflows.TarFlow(
            shape,
            patch_size=int(_flag(f, "--patch-size")),
            num_steps=int(_flag(f, "--steps")),
            depth=int(_flag(f, "--depth")),
            width=int(_flag(f, "--width")),
            heads=int(_flag(f, "--heads")),
        )
    return tfflows.Jet(
        shape,
        patch_size=int(_flag(f, "--patch-size")),
        num_steps=int(_flag(f, "--steps")),
        depth=int(_flag(f, "--depth")),
        width=int(_flag(f, "--width")),
        heads=int(_flag(f, "--heads")),
        seed=0,
    )


# -- speed: one model, in its own process ---------------------------------------


def run_child(args: argparse.Namespace) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    from tfflows import data
    from tfflows.io import atomic_write_json

    images = data.load_images("fashion_mnist", split="train")[: 64 * (args.train_steps + 8)]
    model = build(args.child)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ds = tf.data.Dataset.from_tensor_slices(images).batch(64, drop_remainder=True)

    clock = batch_clock()
    model.fit(ds.take(4), epochs=1, verbose=0)  # data-dependent init, tracing
    model.fit(ds.skip(4), epochs=1, verbose=0, callbacks=[clock])
    per_batch = float(np.median(np.diff(clock.stamps[2:])))

    n = args.sample_images
    sampler = tf.function(lambda: model.sample(n, temperature=1.0, seed=0))
    sampler()  # trace
    times = []
    for _ in range(args.sample_calls):
        t0 = time.perf_counter()
        out = sampler()
        _ = out.numpy()
        times.append(time.perf_counter() - t0)
    atomic_write_json(
        args.child_out,
        {
            "model": args.child,
            "parameters": int(model.count_params()),
            "train_images_per_s": 64.0 / per_batch,
            "sample_s_per_image": float(np.median(times)) / n,
            "samples_finite": bool(np.isfinite(out.numpy()).all()),
        },
    )


def _pinned(cmd: list[str], cores: str | None) -> tuple[list[str], dict]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if cores is None:
        return cmd, env
    n = len([c for c in cores.split(",") if c.strip()])
    env.update(TF_NUM_INTRAOP_THREADS=str(n), TF_NUM_INTEROP_THREADS=str(n))
    return ["taskset", "-c", cores] + cmd, env


def speed(args: argparse.Namespace) -> dict:
    per_model: dict[str, list[dict]] = {m: [] for m in args.models}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name in args.models:
                out = os.path.join(tmp, f"{name}_{r}.json")
                cmd = [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--child",
                    name,
                    "--child-out",
                    out,
                    "--train-steps",
                    str(args.train_steps),
                    "--sample-images",
                    str(args.sample_images),
                    "--sample-calls",
                    str(args.sample_calls),
                ]
                cmd, env = _pinned(cmd, args.cores)
                subprocess.run(cmd, check=True, env=env)
                with open(out) as f:
                    per_model[name].append(json.load(f))
                print(f"round {r + 1}: {per_model[name][-1]}", flush=True)
    table = {}
    for name, rows in per_model.items():
        table[name] = {
            "parameters": rows[0]["parameters"],
            "train_images_per_s": statistics.median(x["train_images_per_s"] for x in rows),
            "sample_s_per_image": statistics.median(x["sample_s_per_image"] for x in rows),
            "samples_finite": all(x["samples_finite"] for x in rows),
            "rounds": rows,
        }
    return table


def budget(args: argparse.Namespace) -> dict:
    table = {}
    for name in args.models:
        out = os.path.join(args.runs, name)
        cmd = [
            "tfflows",
            "train",
            "--dataset",
            "fashion_mnist",
            *MODELS[name],
            *RECIPE,
            "--epochs",
            "100000",
            "--steps-per-epoch",
            "250",
            "--val-every",
            "100000",
            "--time-limit",
            str(args.minutes),
            "--verbose",
            "0",
            "--out",
            out,
            "--overwrite",
        ]
        cmd, env = _pinned(cmd, args.cores)
        print("running:", " ".join(cmd), flush=True)
        t0 = time.time()
        subprocess.run(cmd, check=True, env=env)
        with open(os.path.join(out, "results.json")) as f:
            res = json.load(f)
        table[name] = {
            "parameters": res["parameters"],
            "train_seconds": res["train_seconds"],
            "train_steps": res.get("train_steps"),
            "epochs_run": res["epochs_run"],
            "test_bits_per_dim": res["test_bits_per_dim"],
            "wall_seconds": round(time.time() - t0, 1),
            "command": " ".join(cmd),
        }
        print(json.dumps({name: table[name]}), flush=True)
    return table


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        run_child(args)
        return
    table = speed(args) if args.mode == "speed" else budget(args)
    report = {
        "cpu": cpu_name(),
        "cores": args.cores or f"all ({os.cpu_count()})",
        "mode": args.mode,
        "models": table,
        "argv": sys.argv[1:],
    }
    print(json.dumps({k: v for k, v in report.items()}, indent=1, default=str))
    if args.json_out:
        sys.path.insert(0, _REPO)
        from tfflows.io import atomic_write_json

        atomic_write_json(args.json_out, report)


if __name__ == "__main__":
    main()
