"""RealNVP on two moons, with a plot of the learned density.

python examples/realnvp_two_moons.py --epochs 30 --out two_moons.png
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

import tfflows
from tfflows import data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default="two_moons.png")
    args = parser.parse_args()

    train = data.toy_dataset("two_moons", 20000, batch_size=256, seed=0)
    test = data.sample_toy("two_moons", 5000, seed=1)
    model = tfflows.VectorRealNVP(event_shape=2, num_steps=8, width=128)
    model.compile(optimizer=tfflows.make_optimizer(2e-3, warmup_steps=100, decay_steps=args.epochs * 80))
    model.fit(train, epochs=args.epochs, verbose=2)
    nll = -float(tf.reduce_mean(model.log_prob(test)))
    print(f"test NLL: {nll:.3f} nats")

    grid = np.linspace(-2.5, 3.5, 300, dtype=np.float32)
    xx, yy = np.meshgrid(grid, grid - 0.5)
    points = np.stack([xx.ravel(), yy.ravel()], axis=1)
    density = np.exp(model.log_prob(points).numpy()).reshape(xx.shape)
    samples = model.sample(2000, seed=0).numpy()

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    axes[0].pcolormesh(xx, yy, density, shading="auto", cmap="magma")
    axes[0].set_title(f"learned density (test NLL {nll:.2f} nats)")
    axes[1].scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.5)
    axes[1].set_title("samples")
    for ax in axes:
        ax.set_xlim(grid[0], grid[-1])
        ax.set_ylim(grid[0] - 0.5, grid[-1] - 0.5)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"plot written to {args.out}")


if __name__ == "__main__":
    main()
