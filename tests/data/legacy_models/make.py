"""Writes the legacy fixtures: tiny models of every kind saved by tfflows 0.1.0 before issue 18.

Run once from the commit before the model contract (3332668) with
``python tests/data/legacy_models/make.py``; the files it writes are committed and
must load, with identical ``log_prob``, in every later release.
"""

from __future__ import annotations

import pathlib

import numpy as np

import tfflows

HERE = pathlib.Path(__file__).resolve().parent
RNG = np.random.default_rng(0)


def randomize(model) -> None:
    """Every float weight moved off its initial value, so a wrong load shows."""
    rng = np.random.default_rng(1)
    for w in model.trainable_weights:
        value = np.asarray(w.numpy())
        w.assign((value + rng.normal(scale=0.05, size=value.shape)).astype(value.dtype))


IMAGE = (8, 8, 1)
MODELS = {
    "glow": lambda: tfflows.Glow(IMAGE, num_levels=2, num_steps=2, hidden_channels=8, num_bits=5),
    "glow_classes": lambda: tfflows.Glow(
        IMAGE, num_levels=2, num_steps=2, hidden_channels=8, num_bits=5, num_classes=3
    ),
    "realnvp_context": lambda: tfflows.RealNVP(
        IMAGE, num_scales=2, num_blocks=1, hidden_channels=8, num_bits=5, context_dim=3
    ),
    "vector_realnvp": lambda: tfflows.VectorRealNVP(3, num_layers=3, hidden_units=8),
    "vector_glow": lambda: tfflows.VectorGlow(3, num_steps=2, hidden_units=8, num_classes=2),
    "vector_nsf": lambda: tfflows.VectorNSF(3, num_layers=2, hidden_units=8, num_bins=4),
    "vector_maf": lambda: tfflows.VectorMAF(3, num_layers=2, hidden_units=8, standardize=True),
    "jet": lambda: tfflows.Jet(
        (4, 4, 1), patch_size=2, num_couplings=2, width=8, depth=1, heads=2, mlp_ratio=2, num_bits=5
    ),
    "tarflow": lambda: tfflows.TarFlow(
        (4, 4, 1),
        patch_size=2,
        num_blocks=2,
        num_layers=1,
        width=8,
        heads=2,
        mlp_ratio=2,
        num_bits=5,
        num_classes=2,
    ),
}


def data_for(model, n: int = 4):
    if len(model.event_shape) == 3:
        x = (
            RNG.integers(0, 2**model.num_bits, (n, *model.event_shape))
            + RNG.uniform(size=(n, *model.event_shape))
        ).astype(np.float32)
    else:
        x = RNG.normal(size=(n, *model.event_shape)).astype(np.float32)
    if model.num_classes is not None:
        context = np.arange(n) % model.num_classes
    elif model.context_dim is not None:
        context = RNG.normal(size=(n, model.context_dim)).astype(np.float32)
    else:
        context = None
    return x, context


def main() -> None:
    for name, build in MODELS.items():
        model = build()
        x, context = data_for(model)
        model.initialize(x if context is None else (x, context))
        randomize(model)
        log_prob = model.log_prob(x, context).numpy()
        model.save(HERE / f"{name}.keras")
        arrays = {"x": x, "log_prob": log_prob}
        if context is not None:
            arrays["context"] = context
        np.savez(HERE / f"{name}.npz", **arrays)
        print(name, log_prob)


if __name__ == "__main__":
    main()
