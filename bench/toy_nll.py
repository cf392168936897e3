"""Test NLL of vector flows on 2-D toys against the toys' exact entropies.

A perfect model's test NLL equals the data's differential entropy
(8gaussians: 2.833 nats, checkerboard: log 32 = 3.466 nats), so the gap
NLL − entropy measures how far a flow is from the truth.

    python bench/toy_nll.py --toys 8gaussians checkerboard --model nsf --epochs 40
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import tfflows
from tfflows import data


def run(
    toy: str,
    model_name: str,
    epochs: int,
    layers: int,
    width: int,
    batch: int,
    n_train: int,
    lr: float,
    seed: int,
) -> dict:
    import keras

    keras.utils.set_random_seed(seed)
    train = data.toy_dataset(toy, n_train, batch_size=batch, seed=seed)
    test = data.sample_toy(toy, 100_000, seed=seed + 1)
    cls = {"realnvp": tfflows.VectorRealNVP, "glow": tfflows.VectorGlow, "nsf": tfflows.VectorNSF}[model_name]
    model = cls(2, num_steps=layers, width=width, depth=2)
    steps = epochs * int(np.ceil(n_train / batch))
    model.compile(optimizer=tfflows.make_optimizer(lr, warmup_steps=200, decay_steps=steps))
    start = time.time()
    model.fit(train, epochs=epochs, verbose=0)
    nll = -float(
        np.mean(
            np.concatenate([model.log_prob(test[i : i + 20000]).numpy() for i in range(0, len(test), 20000)])
        )
    )
    entropy = data.toy_entropy(toy)
    return {
        "toy": toy,
        "model": model_name,
        "layers": layers,
        "width": width,
        "epochs": epochs,
        "test_nll": round(nll, 4),
        "entropy": entropy,
        "gap": None if entropy is None else round(nll - entropy, 4),
        "train_seconds": round(time.time() - start, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--toys", nargs="+", default=["8gaussians", "checkerboard"])
    p.add_argument("--model", choices=("realnvp", "glow", "nsf"), default="realnvp")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--n-train", type=int, default=100_000)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json-out", default=None)
    args = p.parse_args()
    rows = [
        run(
            t,
            args.model,
            args.epochs,
            args.layers,
            args.width,
            args.batch_size,
            args.n_train,
            args.lr,
            args.seed,
        )
        for t in args.toys
    ]
    print(f"{'toy':14s} {'model':8s} {'test NLL':>9s} {'entropy':>8s} {'gap':>7s} {'seconds':>8s}")
    for r in rows:
        ent = "-" if r["entropy"] is None else f"{r['entropy']:.3f}"
        gap = "-" if r["gap"] is None else f"{r['gap']:+.3f}"
        print(
            f"{r['toy']:14s} {r['model']:8s} {r['test_nll']:9.3f} {ent:>8s} {gap:>7s} "
            f"{r['train_seconds']:8.0f}"
        )
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
