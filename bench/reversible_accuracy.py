"""How far backprop="reversible" gradients are from stored ones in a deep Glow (K=32).

Builds ``tfflows.Glow`` twice (store, reversible) with the same weights
(ActNorm set from a batch, every weight perturbed by N(0, σ²), σ =
``--perturb``, so the zero-initialised couplings act; at σ = 0.05 a K=32
model's log-density overflowed), and reports, in float32 and float64:

- the inversion error: max |x − f⁻¹(f(x))| over each run of steps between
  factor-outs, inverted from its output as the backward pass does
  (the first run's input is pixel levels in [0, 256));
- the gradient difference of the mean NLL (eagerly; the tests compare
  tf.function gradients too): max over weights of
  max|g_rev − g_store| / max|g_store| (the largest entry of each weight's
  gradient as the scale), and the median of that over weights.

Usage::

    python bench/reversible_accuracy.py                    # K=32, L=3, hidden 16, 16×16×3, batch 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--shape", type=int, nargs=3, default=[16, 16, 3])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument(
        "--perturb", type=float, default=0.01, help="standard deviation of the noise added to every weight"
    )
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    p.add_argument("--json-out")
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, root)
    import keras
    import tensorflow as tf
    from machine import cpu_name

    import tfflows
    from tfflows.reversible import inversion_error

    rows = []
    for dtype in args.dtypes:
        rng = np.random.default_rng(0)
        x = (rng.integers(0, 256, (args.batch, *args.shape)) + rng.random((args.batch, *args.shape))).astype(
            dtype
        )
        models = {}
        for mode in ("store", "reversible"):
            keras.utils.set_random_seed(1)
            models[mode] = tfflows.Glow(
                tuple(args.shape),
                num_levels=args.levels,
                num_steps=args.k,
                width=args.hidden,
                dtype=dtype,
                backprop=mode,
            )
        models["store"].initialize(x)
        start = [
            w + args.perturb * rng.standard_normal(w.shape).astype(w.dtype) if w.dtype.kind == "f" else w
            for w in models["store"].get_weights()
        ]
        grads = {}
        for mode, model in models.items():
            model.set_weights(start)

            def loss_and_grads(x, model=model):
                with tf.GradientTape() as tape:
                    loss = -tf.reduce_mean(model.log_prob(x))
                return loss, tape.gradient(loss, model.trainable_variables)

            grads[mode] = [g.numpy() for g in loss_and_grads(tf.constant(x))[1]]
        finite = all(np.all(np.isfinite(g)) for gs in grads.values() for g in gs)
        if not finite:
            sys.exit(f"{dtype}: non-finite gradients at --perturb {args.perturb}; use a smaller one")
        rel = [
            float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
            for a, b in zip(grads["reversible"], grads["store"])
            if np.max(np.abs(b)) > 0
        ]
        error = inversion_error(models["store"]._plan.steps, tf.constant(x))
        row = {
            "dtype": dtype,
            "inversion_error": error,
            "max_rel_grad_diff": max(rel),
            "median_rel_grad_diff": float(np.median(rel)),
            "weights_compared": len(rel),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = {
        "machine": cpu_name(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "config": vars(args),
        "rows": rows,
    }
    if args.json_out:
        from tfflows.io import atomic_write_json

        atomic_write_json(args.json_out, out)


if __name__ == "__main__":
    main()
