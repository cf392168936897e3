"""Where a Glow training step spends its time: tfflows against TFP's tfb.Glow.

Companion to ``glow_throughput.py`` (same model, data and TFP configuration).
Three reports, all on one training step (loss, gradients, Adam update) at
batch 64, without XLA:

1. ``graph``: op counts of the traced step. TFP's ``TransformedDistribution.log_prob``
   calls ``glow.inverse`` and ``glow.inverse_log_det_jacobian`` separately and
   ``RealNVP`` runs its conditioner network in each, so every coupling network
   appears twice, forward and backward.
2. ``ops``: self time per op type from the TensorFlow profiler.
3. ``timing``: interleaved, paired step times of the tfflows step as it is
   (thin convolutions as matrix products, ``tfflows.layers.Conv2D``), of
   tfflows with stock convolutions (``conv_implementation("conv")``), of its
   coupling networks alone (forward and backward) and of TFP's step.

    python bench/glow_profile.py                     # all three, TF defaults
    python bench/glow_profile.py --onednn on --only timing
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import shutil
import statistics
import sys
import tempfile
import time

__all__ = ["main"]

VARIANTS = ("tfflows", "tfflows+stock_convs", "conv_only", "tfp")


def build_steps(names, xs, pool):
    """name → tf.function training step, each traced once under its own patches."""
    import glow_throughput as gt
    import keras
    import tensorflow as tf

    import tfflows
    from tfflows.layers.convolution import conv_implementation
    from tfflows.layers.coupling import CouplingLayer

    steps = {}
    for name in names:
        if name == "tfp":
            runner = gt.TfpRunner(gt.parse_args([]), pool, jit=False)
            steps[name] = runner.step
            continue
        keras.utils.set_random_seed(0)
        model = tfflows.Glow((28, 28, 1), num_levels=2, num_steps=4, width=128, seed=0)
        model.initialize(xs[0])
        optimizer = keras.optimizers.Adam(1e-3)
        if name == "conv_only":
            # Every coupling's network on an input of its level's shape: [B, 14, 14, 2]
            # at level 0 (and the split prior's zero conv), [B, 7, 7, 4] at level 1.
            couplings = [layer for layer in model.flow_layers if isinstance(layer, CouplingLayer)]
            nets = [layer.conditioner for layer in couplings]
            inputs = [
                tf.random.normal(
                    (xs[0].shape[0], 14, 14, 2) if "_l0" in layer.name else (xs[0].shape[0], 7, 7, 4)
                )
                for layer in couplings
            ]
            variables = [v for net in nets for v in net.trainable_variables]

            def loss_fn(x, nets=nets, inputs=inputs):
                # Inputs depend on x so that input gradients are computed, as in the flow.
                ins = [i + 0.0 * tf.reduce_mean(x) for i in inputs]
                return tf.add_n([tf.reduce_mean(net(i) * i[..., :1]) for net, i in zip(nets, ins)])
        else:
            variables = model.trainable_variables

            def loss_fn(x, model=model):
                return -tf.reduce_mean(model.log_prob(x))

        optimizer.build(variables)
        steps[name] = tf.function(_train_step(loss_fn, variables, optimizer))
        # The implementation is fixed when the step is traced, here.
        with conv_implementation("conv" if name == "tfflows+stock_convs" else "auto"):
            steps[name].get_concrete_function(xs[0])
    return steps


def _train_step(loss_fn, variables, optimizer):
    import tensorflow as tf

    def step(x):
        with tf.GradientTape() as tape:
            loss = loss_fn(x)
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    return step


def report_graph(steps, x) -> None:
    print("\n== graph: ops in the traced training step ==")
    kinds = (
        "Conv2D",
        "Conv2DBackpropInput",
        "Conv2DBackpropFilter",
        "Einsum",
        "BatchMatMulV2",
        "MatMul",
        "MatrixTriangularSolve",
    )  # tfflows' Conv2D shows as _FusedConv2D when run
    print(f"{'step':30s} {'all ops':>8s} " + " ".join(f"{k:>12.12s}" for k in kinds))
    for name, fn in steps.items():
        ops = fn.get_concrete_function(x).graph.get_operations()
        count = collections.Counter(op.type for op in ops)
        print(f"{name:30s} {len(ops):8d} " + " ".join(f"{count[k]:12d}" for k in kinds))


def report_ops(steps, xs, top: int) -> None:
    import json

    import tensorflow as tf

    try:
        from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin
    except ImportError as err:
        print(f"\n== ops: skipped, no profiler plugin ({err}) ==")
        return
    for name, fn in steps.items():
        for i in range(2):
            fn(xs[i % len(xs)]).numpy()
        folder = tempfile.mkdtemp(prefix=f"glow_profile_{name.replace('+', '_')}_")
        tf.profiler.experimental.start(folder)
        for i in range(4):
            fn(xs[i % len(xs)]).numpy()
        tf.profiler.experimental.stop()
        files = glob.glob(f"{folder}/**/*.xplane.pb", recursive=True)
        data, ok = plugin.xspace_to_tools_data(files, "framework_op_stats", {})
        shutil.rmtree(folder, ignore_errors=True)
        if not ok:
            print(f"\n== ops {name}: profiler conversion failed ==")
            continue
        table = json.loads(data)[0]
        cols = {c["id"]: k for k, c in enumerate(table["cols"])}
        by_type = collections.defaultdict(lambda: [0.0, 0.0])
        for row in table["rows"]:
            r = [c["v"] if c else None for c in row["c"]]
            if r[cols["host_or_device"]] != "Host" or r[cols["type"]] == "IDLE":
                continue
            by_type[r[cols["type"]]][0] += r[cols["occurrences"]] / 4
            by_type[r[cols["type"]]][1] += r[cols["total_self_time"]] / 4e3
        total = sum(v[1] for v in by_type.values())
        print(
            f"\n== ops {name}: op self time per step {total:.0f} ms (summed over threads), "
            f"{sum(v[0] for v in by_type.values()):.0f} ops executed =="
        )
        for kind, (n, ms) in sorted(by_type.items(), key=lambda kv: -kv[1][1])[:top]:
            print(f"  {kind:44s} {n:5.0f}/step {ms:8.1f} ms {100 * ms / total:5.1f}%")


def report_timing(steps, xs, rounds: int, window: int) -> None:
    for fn in steps.values():
        fn(xs[0]).numpy()
        fn(xs[1]).numpy()
    ms = collections.defaultdict(list)
    for r in range(rounds):
        for name, fn in steps.items():  # round-robin, so each round sees one machine state
            t0 = time.perf_counter()
            for i in range(window):
                out = fn(xs[i % len(xs)])
            out.numpy()
            ms[name].append((time.perf_counter() - t0) / window * 1e3)
        print(f"[round {r + 1}/{rounds}] " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in ms.items()), flush=True)
    print(
        f"\n== timing: ms per training step, batch {xs[0].shape[0]}, no XLA, "
        f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')} =="
    )
    print("   (x-factors are medians of per-round ratios: same round, same machine state)")
    base = ms.get("tfflows")
    for name, v in ms.items():
        line = f"  {name:30s} median {statistics.median(v):7.1f}  min {min(v):7.1f}"
        if base and name != "tfflows":
            line += f"  speed-up vs tfflows {statistics.median(b / x for b, x in zip(base, v)):.2f}x"
        if "tfp" in ms and name != "tfp":
            line += f"  vs TFP {statistics.median(t / x for t, x in zip(ms['tfp'], v)):.2f}x"
        print(line)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=("all", "graph", "ops", "timing"), default="all")
    p.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {', '.join(VARIANTS)}"
    )
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--window", type=int, default=2, help="steps per timing window")
    p.add_argument("--top", type=int, default=12, help="op types listed per profile")
    p.add_argument(
        "--onednn",
        choices=("default", "on", "off"),
        default="default",
        help="set TF_ENABLE_ONEDNN_OPTS before TensorFlow loads",
    )
    args = p.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        p.error(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.onednn != "default":
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if args.onednn == "on" else "0"
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import glow_throughput as gt  # also puts this checkout's tfflows first on sys.path

    import tfflows

    pool, source = gt.load_pool("auto", 512, 0)
    it = iter(gt.make_dataset(pool, 64, 0))
    xs = [next(it) for _ in range(4)]
    print(
        f"tfflows from {os.path.dirname(tfflows.__file__)}; data: {source}; "
        f"1-minute load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    steps = build_steps(names, xs, pool)
    if args.only in ("all", "graph"):
        report_graph(steps, xs[0])
    if args.only in ("all", "ops"):
        report_ops(
            {k: v for k, v in steps.items() if k in ("tfflows", "tfflows+stock_convs", "tfp")}, xs, args.top
        )
    if args.only in ("all", "timing"):
        report_timing(steps, xs, args.rounds, args.window)
    return 0


if __name__ == "__main__":
    sys.exit(main())
