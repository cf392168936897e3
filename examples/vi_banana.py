"""Variational inference with a flow: fit a 2-D banana by reverse KL, beside a Gaussian.

    python examples/vi_banana.py --steps 1000 --out vi_banana.png

The target is a normalised banana,

    p(x) = N(x₁; 0, 1) · N(x₂; b·(x₁² − 1), σ²),

so log p needs no normalising constant and the ELBO of a surrogate q,
E_q[log p(x) − log q(x)] = −KL(q ‖ p), is at most 0: the closer to 0, the
better q fits. Both surrogates are trained with ``tfp.vi.fit_surrogate_posterior``
(reverse KL, reparameterised samples): a full-covariance Gaussian
(``tfd.MultivariateNormalTriL`` with a ``tfp.util.TransformedVariable`` scale)
and a VectorRealNVP's live ``model.distribution``, whose every weight the
fit trains. The script prints both final ELBOs (estimated on fresh samples,
with their standard errors) and plots the target, each surrogate's density
and samples.
"""

import argparse
import math

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfflows
from tfflows.io import atomic_path

tfb = tfp.bijectors
tfd = tfp.distributions


def banana_log_prob(x, curvature: float, noise: float):
    """log p(x) of the normalised banana (see the module docstring)."""
    x1, x2 = x[..., 0], x[..., 1]
    return tfd.Normal(0.0, 1.0).log_prob(x1) + tfd.Normal(0.0, noise).log_prob(x2 - curvature * (x1**2 - 1.0))


def elbo(q, target, num_samples: int, seed) -> tuple[float, float]:
    """E_q[log p − log q] on fresh samples, and its standard error."""
    x, log_q = q.experimental_sample_and_log_prob(num_samples, seed=seed)
    gap = (target(x) - log_q).numpy().astype(np.float64)
    return float(gap.mean()), float(gap.std(ddof=1) / math.sqrt(num_samples))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--sample-size", type=int, default=64, help="samples per ELBO estimate in training")
    parser.add_argument("--curvature", type=float, default=1.0)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--out", default="vi_banana.png")
    args = parser.parse_args()

    def target(x):
        return banana_log_prob(x, args.curvature, args.noise)

    keras.utils.set_random_seed(0)
    gaussian = tfd.MultivariateNormalTriL(
        loc=tf.Variable([0.0, 0.0], name="loc"),
        scale_tril=tfp.util.TransformedVariable(tf.eye(2), tfb.FillScaleTriL(), name="scale_tril"),
    )
    model = tfflows.VectorRealNVP(event_shape=2, num_steps=6, width=32)
    flow = model.distribution  # live: reads the model's weights at every call

    surrogates = {"Gaussian": (gaussian, 2e-2), "VectorRealNVP": (flow, 3e-3)}
    results = {}
    for name, (q, learning_rate) in surrogates.items():
        losses = tfp.vi.fit_surrogate_posterior(
            target,
            q,
            keras.optimizers.Adam(learning_rate),
            args.steps,
            sample_size=args.sample_size,
            seed=(1, 2),
        )
        results[name] = elbo(q, target, 20000, seed=(7, 7))
        print(
            f"{name:>14}: final ELBO {results[name][0]:+.4f} ± {results[name][1]:.4f} nats "
            f"(last 50 training steps: {-float(np.mean(losses[-50:])):+.4f}; "
            f"{len(q.trainable_variables)} trainable variables)"
        )

    lim = (-3.5, 3.5), (-2.5, 1.0 + 3.5 * 3.5 * max(args.curvature, 0.0) / 2)
    xs = np.linspace(*lim[0], 200, dtype=np.float32)
    ys = np.linspace(*lim[1], 200, dtype=np.float32)
    xx, yy = np.meshgrid(xs, ys)
    points = np.stack([xx.ravel(), yy.ravel()], axis=1)
    panels = [("target", target(points).numpy(), None)]
    for name, (q, _) in surrogates.items():
        panels.append(
            (
                f"{name}: ELBO {results[name][0]:+.3f}",
                q.log_prob(points).numpy(),
                q.sample(500, seed=(3, 4)).numpy(),
            )
        )

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2))
    for ax, (title, log_density, samples) in zip(axes, panels):
        ax.pcolormesh(xx, yy, np.exp(log_density).reshape(xx.shape), shading="auto", cmap="magma")
        if samples is not None:
            ax.scatter(samples[:, 0], samples[:, 1], s=2, c="cyan", alpha=0.4)
        ax.set_title(title)
        ax.set_xlim(*lim[0])
        ax.set_ylim(*lim[1])
    fig.tight_layout()
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    print(f"plot written to {args.out}")


if __name__ == "__main__":
    main()
