"""Glow training throughput: ``tfflows.Glow`` against TFP's ``tfb.Glow``, same run.

Both sides train the same architecture (K steps per level, L levels, one
hidden width, affine couplings with sigmoid(· + 2) scales, LU 1×1
convolutions, ActNorm, a learned conditional prior at every split) on the
same stream of dequantized 28×28×1 images, with Adam, at the same batch size:

- tfflows: ``tfflows.Glow`` trained with ``model.compile`` / ``model.fit``,
  timed between ``on_train_batch_end`` callbacks (steady state, no tracing);
- TFP: ``tfb.Glow`` in a ``tfd.TransformedDistribution`` over a standard
  normal, trained by a plain ``tf.function`` step with ``tf_keras`` Adam on
  the same pixels scaled to [−½, ½), as tfflows does internally.

Each configuration is warmed up (tracing, XLA compilation), then timing
windows are interleaved round-robin across configurations so drifts in the
machine's speed hit all of them alike. The reported number is the median
images/s over the windows.

Usage::

    python bench/glow_throughput.py                       # defaults, ~3-5 min on 2 CPU cores
    python bench/glow_throughput.py --jit off --steps 200 --json-out glow.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

# Benchmark the tfflows of this checkout, not whichever one is installed.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

__all__ = ["main"]

_LOG_256 = math.log(256.0)


# -- set-up -----------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--steps", type=int, default=24, help="timed training steps per configuration")
    p.add_argument("--window", type=int, default=4, help="steps per timing window")
    p.add_argument(
        "--warmup-steps",
        type=int,
        default=2,
        help="untimed steps per configuration after tracing/compilation",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--hidden", type=int, default=128, help="coupling network width")
    p.add_argument("--levels", type=int, default=2, help="L: number of scales")
    p.add_argument("--steps-per-level", type=int, default=4, help="K: flow steps per level")
    p.add_argument(
        "--jit",
        choices=("auto", "on", "off"),
        default="auto",
        help="XLA: 'auto' times both jit_compile=False and True",
    )
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument(
        "--data",
        choices=("auto", "fashion_mnist", "random"),
        default="auto",
        help="'auto': Fashion-MNIST via tfflows.data when available, else random uint8",
    )
    p.add_argument("--pool", type=int, default=4096, help="distinct images cycled through")
    p.add_argument("--only", choices=("both", "tfflows", "tfp"), default="both")
    p.add_argument(
        "--onednn",
        choices=("default", "on", "off"),
        default="default",
        help="set TF_ENABLE_ONEDNN_OPTS before TensorFlow loads (oneDNN kernels on x86)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json-out", default=None, help="write the results here as JSON")
    args = p.parse_args(argv)
    for key in ("steps", "window", "batch_size", "hidden", "levels", "steps_per_level", "pool"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
    if args.warmup_steps < 0:
        p.error(f"--warmup-steps must be >= 0, got {args.warmup_steps}")
    return args


def _git_commit() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "-C", _REPO, "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_info() -> dict:
    import keras
    import tensorflow as tf
    import tensorflow_probability as tfp

    import tfflows

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "load_average_1m_at_start": os.getloadavg()[0],
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset"),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tensorflow_probability": tfp.__version__,
        "tfflows_path": os.path.dirname(tfflows.__file__),
        "git_commit": _git_commit(),
    }


def load_pool(kind: str, size: int, seed: int) -> tuple[np.ndarray, str]:
    """uint8 images [size, 28, 28, 1] and where they came from."""
    if kind in ("auto", "fashion_mnist"):
        try:
            from tfflows.data import load_images

            images = load_images("fashion_mnist", download=False)
            images = np.asarray(images[:size], dtype=np.uint8).reshape(-1, 28, 28, 1)
            return images, "fashion_mnist (tfflows.data.load_images)"
        except Exception as err:  # any failure: missing files, offline TFDS, module being edited
            if kind == "fashion_mnist":
                raise
            print(
                f"[data] Fashion-MNIST unavailable ({type(err).__name__}: {str(err)[:120]}); "
                "using random uint8 images.",
                file=sys.stderr,
            )
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(size, 28, 28, 1), dtype=np.uint8), "random uint8"


def make_dataset(pool: np.ndarray, batch_size: int, seed: int):
    """Endless batches of uniformly dequantized pixel levels in [0, 256), float32."""
    import tensorflow as tf

    def dequantize(x):
        x = tf.cast(x, tf.float32)
        return x + tf.random.uniform(tf.shape(x), 0.0, 1.0 - 2.0**-16)

    tf.random.set_seed(seed)
    ds = tf.data.Dataset.from_tensor_slices(pool).repeat()
    ds = ds.batch(batch_size, drop_remainder=True).map(dequantize, num_parallel_calls=1)
    return ds.prefetch(2)


# -- the two sides ----------------------------------------------------------


class Runner:
    """One configuration: ``warmup(n)`` then repeated ``time(n)`` → seconds for n steps."""

    name: str
    params: dict
    last_bpd: float = float("nan")

    def warmup(self, steps: int) -> None:
        raise NotImplementedError

    def time(self, steps: int) -> float:
        raise NotImplementedError


class TfflowsRunner(Runner):
    """``tfflows.Glow`` trained with ``compile`` + ``fit``."""

    def __init__(self, args: argparse.Namespace, pool: np.ndarray, jit: bool) -> None:
        import keras

        import tfflows

        keras.utils.set_random_seed(args.seed)
        self.model = tfflows.Glow(
            (28, 28, 1),
            num_levels=args.levels,
            num_steps=args.steps_per_level,
            width=args.hidden,
            seed=args.seed,
        )
        self.model.compile(optimizer=keras.optimizers.Adam(args.learning_rate), jit_compile=jit)
        self.jit = jit
        self.name = f"tfflows fit (jit={'on' if jit else 'off'})"
        if bool(self.model.jit_compile) != jit:  # Keras falls back to False when unsupported
            self.name += " [XLA refused: ran without]"
        self.ds = make_dataset(pool, args.batch_size, args.seed)
        self.params = tfflows_params(self.model)
        self.compile_s = float("nan")

    def _fit(self, steps: int) -> list[float]:
        import keras

        stamps: list[float] = []

        class Stamp(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                stamps.append(time.perf_counter())

        hist = self.model.fit(
            self.ds, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False, callbacks=[Stamp()]
        )
        self.last_bpd = float(hist.history["bits_per_dim"][-1])
        return stamps

    def warmup(self, steps: int) -> None:
        t0 = time.perf_counter()
        stamps = self._fit(1 + steps)
        self.compile_s = stamps[0] - t0

    def time(self, steps: int) -> float:
        stamps = self._fit(steps + 1)  # from the end of batch 0 to the end of batch `steps`
        return stamps[-1] - stamps[0]


class TfpRunner(Runner):
    """``tfb.Glow`` in a TransformedDistribution, trained by a ``tf.function`` step."""

    def __init__(self, args: argparse.Namespace, pool: np.ndarray, jit: bool) -> None:
        import tensorflow as tf
        import tensorflow_probability as tfp
        import tf_keras

        tfb, tfd = tfp.bijectors, tfp.distributions
        tf_keras.utils.set_random_seed(args.seed)
        hidden = args.hidden
        shape = (28, 28, 1)
        # tfb.Glow: num_glow_blocks = L, num_steps_per_block = K; half the
        # remaining channels exit after every block but the last (TFP's default
        # grab_after_block, and tfflows' split).
        self.glow = tfb.Glow(
            output_shape=shape,
            num_glow_blocks=args.levels,
            num_steps_per_block=args.steps_per_level,
            coupling_bijector_fn=lambda s: tfb.GlowDefaultNetwork(s, num_hidden=hidden),
            exit_bijector_fn=tfb.GlowDefaultExitNetwork,
            grab_after_block=tuple([0.5] * (args.levels - 1) + [0.0]),
            use_actnorm=True,
            seed=args.seed,
        )
        num_dims = int(np.prod(shape))
        self.num_dims = num_dims
        base = tfd.Sample(tfd.Normal(0.0, 1.0), sample_shape=[num_dims])
        self.dist = tfd.TransformedDistribution(base, self.glow)
        self.ds = make_dataset(pool, args.batch_size, args.seed)
        self.it = iter(self.ds)
        # First eager call: builds the Keras layers and runs TFP's data-dependent ActNorm init.
        x0 = next(self.it)
        self.dist.log_prob(x0 / 256.0 - 0.5)
        self.variables = list(self.glow.trainable_variables)
        self.optimizer = tf_keras.optimizers.Adam(args.learning_rate)
        dist, variables, optimizer = self.dist, self.variables, self.optimizer

        def train_step(x):
            with tf.GradientTape() as tape:
                # The same pixel scaling as tfflows' ScalePixels, with its log-det,
                # so the loss is the NLL of the pixel levels in nats.
                log_prob = dist.log_prob(x / 256.0 - 0.5) - num_dims * _LOG_256
                loss = -tf.reduce_mean(log_prob)
            grads = tape.gradient(loss, variables)
            optimizer.apply_gradients(zip(grads, variables))
            return loss

        self.step = tf.function(train_step, jit_compile=jit)
        self.jit = jit
        self.name = f"TFP tfb.Glow tf.function (jit={'on' if jit else 'off'})"
        self.params = tfp_params(self.glow)
        self.compile_s = float("nan")
        self._loss = None

    def _run(self, steps: int) -> None:
        for _ in range(steps):
            self._loss = self.step(next(self.it))
        self.last_bpd = float(self._loss) / (self.num_dims * math.log(2.0))

    def warmup(self, steps: int) -> None:
        t0 = time.perf_counter()
        self._run(1)
        self.compile_s = time.perf_counter() - t0
        self._run(steps)

    def time(self, steps: int) -> float:
        t0 = time.perf_counter()
        self._run(steps)  # ends with float(loss): a sync, like fit's per-batch callbacks
        return time.perf_counter() - t0


# -- parameter counts -------------------------------------------------------


def tfflows_params(model) -> dict:
    """Trainable entries, and how many of them are the learned top prior."""
    from tfflows.layers.prior import PriorLayer

    total = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    prior = sum(
        int(np.prod(w.shape))
        for layer in model.flow_layers
        if isinstance(layer, PriorLayer)
        for w in layer.trainable_weights
    )
    return {"trainable": total, "learned_top_prior": prior}


def tfp_params(glow) -> dict:
    """Trainable entries of tfb.Glow (its LU matrix stores L and U in one c×c array)."""
    total = sum(int(np.prod(v.shape)) for v in glow.trainable_variables)
    return {"trainable": total, "learned_top_prior": 0}


# -- the run ----------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:

    info = device_info()
    pool, source = load_pool(args.data, args.pool, args.seed)
    jits = {"auto": (False, True), "on": (True,), "off": (False,)}[args.jit]
    makers: list[tuple[str, bool, Callable[..., Runner]]] = []
    for jit in jits:
        if args.only in ("both", "tfflows"):
            makers.append(("tfflows", jit, TfflowsRunner))
        if args.only in ("both", "tfp"):
            makers.append(("tfp", jit, TfpRunner))

    runners: list[Runner] = []
    errors: dict[str, str] = {}
    for side, jit, make in makers:
        try:
            r = make(args, pool, jit)
            print(f"[warmup] {r.name} ...", flush=True)
            r.warmup(args.warmup_steps)
            print(f"[warmup] {r.name}: first step {r.compile_s:.1f} s, bpd {r.last_bpd:.3f}", flush=True)
            runners.append(r)
        except Exception as err:  # report a side that cannot run (e.g. an op without XLA kernel)
            key = f"{side} jit={'on' if jit else 'off'}"
            errors[key] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
            print(f"[error] {key}: {errors[key]}", file=sys.stderr, flush=True)

    windows = max(1, math.ceil(args.steps / args.window))
    rates: dict[str, list[float]] = {r.name: [] for r in runners}
    for w in range(windows):
        for r in runners:  # round-robin: every configuration sees the same machine state
            seconds = r.time(args.window)
            rates[r.name].append(args.window * args.batch_size / seconds)
        print(
            f"[timing] window {w + 1}/{windows} (img/s): "
            + "; ".join(f"{name} {v[-1]:.0f}" for name, v in rates.items()),
            flush=True,
        )

    results = []
    for r in runners:
        v = rates[r.name]
        results.append(
            {
                "name": r.name,
                "side": "tfflows" if isinstance(r, TfflowsRunner) else "tfp",
                "jit": r.jit,
                "images_per_s_median": statistics.median(v),
                "images_per_s_min": min(v),
                "images_per_s_max": max(v),
                "ms_per_step_median": 1e3 * args.batch_size / statistics.median(v),
                "windows": v,
                "first_step_s": r.compile_s,
                "final_bits_per_dim": r.last_bpd,
                "params": r.params,
            }
        )

    # Ratios of tfflows over TFP: of the medians, and the median of the ratios
    # within each round (paired, so a busy moment on the machine cancels out).
    by_key = {(x["side"], x["jit"]): x for x in results}
    ratios, paired = {}, {}
    pairs = [
        ("jit_off", [False], [False]),
        ("jit_on", [True], [True]),
        ("best_vs_best", [False, True], [False, True]),
    ]
    for label, a_jits, b_jits in pairs:
        a = [by_key[("tfflows", j)] for j in a_jits if ("tfflows", j) in by_key]
        b = [by_key[("tfp", j)] for j in b_jits if ("tfp", j) in by_key]
        if not a or not b:
            continue
        a = max(a, key=lambda x: x["images_per_s_median"])
        b = max(b, key=lambda x: x["images_per_s_median"])
        ratios[label] = a["images_per_s_median"] / b["images_per_s_median"]
        paired[label] = statistics.median(u / v for u, v in zip(a["windows"], b["windows"]))
    return {
        "benchmark": "glow_training_throughput",
        "config": {
            "height": 28,
            "width": 28,
            "channels": 1,
            "levels": args.levels,
            "steps_per_level": args.steps_per_level,
            "hidden": args.hidden,
            "batch_size": args.batch_size,
            "timed_steps": windows * args.window,
            "window": args.window,
            "warmup_steps": args.warmup_steps,
            "optimizer": f"Adam(lr={args.learning_rate})",
            "data": source,
        },
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "load_average_1m_at_end": os.getloadavg()[0],
        "device": info,
        "results": results,
        "ratio_tfflows_over_tfp": ratios,
        "ratio_tfflows_over_tfp_paired_median": paired,
        "errors": errors,
    }


def print_report(out: dict) -> None:
    d, c = out["device"], out["config"]
    print()
    print(
        f"Glow training throughput  K={c['steps_per_level']} L={c['levels']} hidden={c['hidden']} "
        f"28x28x1 batch={c['batch_size']}  data={c['data']}"
    )
    print(
        f"device: {d['cpu']}, {d['usable_cpus']} usable CPUs, GPUs={d['gpus'] or 'none'}; "
        f"TF {d['tensorflow']}, Keras {d['keras']}, TFP {d['tensorflow_probability']}, "
        f"TF_ENABLE_ONEDNN_OPTS={d['TF_ENABLE_ONEDNN_OPTS']}"
    )
    print(f"tfflows from {d['tfflows_path']} (commit {d['git_commit']})")
    print(
        f"1-minute load average: {d['load_average_1m_at_start']:.1f} at start, "
        f"{out['load_average_1m_at_end']:.1f} at end (above the CPU count means other work shared the cores)"
    )
    print(
        f"timing: {c['timed_steps']} steps per config in windows of {c['window']} (round-robin), "
        "median over windows"
    )
    head = (
        f"{'configuration':42s} {'img/s':>8s} {'min':>7s} {'max':>7s} {'ms/step':>8s} "
        f"{'1st step s':>10s} {'bpd':>7s} {'params':>9s}"
    )
    print(head)
    print("-" * len(head))
    for r in out["results"]:
        print(
            f"{r['name']:42s} {r['images_per_s_median']:8.1f} {r['images_per_s_min']:7.1f} "
            f"{r['images_per_s_max']:7.1f} {r['ms_per_step_median']:8.1f} {r['first_step_s']:10.1f} "
            f"{r['final_bits_per_dim']:7.3f} {r['params']['trainable']:9d}"
        )
    for label, value in out["ratio_tfflows_over_tfp"].items():
        print(
            f"ratio tfflows / TFP ({label}): {value:.2f}x of the medians, "
            f"{out['ratio_tfflows_over_tfp_paired_median'][label]:.2f}x median of per-round ratios"
        )
    for key, msg in out["errors"].items():
        print(f"FAILED {key}: {msg}")
    ps = {r["side"]: r["params"] for r in out["results"]}
    if "tfflows" in ps:
        p = ps["tfflows"]
        print(
            f"tfflows params: {p['trainable']} trainable, of which {p['learned_top_prior']} "
            "the learned top prior"
        )
    if "tfp" in ps:
        print(f"TFP params: {ps['tfp']['trainable']} trainable")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.onednn != "default":
        if "tensorflow" in sys.modules:
            print("[warn] TensorFlow already imported: --onednn has no effect", file=sys.stderr)
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if args.onednn == "on" else "0"
    out = run(args)
    print_report(out)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {args.json_out}")
    return 0 if out["results"] else 1


if __name__ == "__main__":
    sys.exit(main())
