"""Writes the tiny ``.keras`` files that tests/test_coupling_compat.py loads.

Run once, with the code from before the generic ``Coupling`` (commit
935fcdb), from the repository root::

    PYTHONPATH=$PWD python tests/data/old_couplings/make_fixtures.py

Each model gets random non-trivial weights (a fresh coupling is the
identity, which would prove nothing), is saved as NAME.keras, and its
``log_prob`` on fixed inputs is stored in expected.npz beside the inputs.
"""

from __future__ import annotations

import os
import zipfile

import keras
import numpy as np

import tfflows
from tfflows.io import atomic_path

HERE = os.path.dirname(os.path.abspath(__file__))

MODELS = {
    "glow_affine_conditional": lambda: tfflows.Glow(
        (4, 4, 1), num_levels=2, num_steps=1, hidden_channels=4, num_bits=3, num_classes=2
    ),
    "glow_additive": lambda: tfflows.Glow(
        (4, 4, 1), num_levels=1, num_steps=2, hidden_channels=4, coupling="additive", num_bits=3
    ),
    "realnvp": lambda: tfflows.RealNVP((4, 4, 1), num_levels=2, num_blocks=1, hidden_channels=4, num_bits=3),
    "vector_realnvp": lambda: tfflows.VectorRealNVP(3, num_layers=2, hidden_units=4, num_hidden=1),
    "vector_glow_additive": lambda: tfflows.VectorGlow(
        3, num_steps=2, hidden_units=4, num_hidden=1, coupling="additive"
    ),
    "vector_nsf": lambda: tfflows.VectorNSF(3, num_layers=2, hidden_units=4, num_hidden=1, num_bins=4),
}


def randomize(model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for w in model.trainable_weights:
        w.assign((0.3 * rng.standard_normal(tuple(w.shape))).astype(w.dtype))


def inputs(model, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    rng = np.random.default_rng(seed)
    if len(model.event_shape) == 3:
        x = rng.uniform(0.0, 2.0**model.num_bits, (4, *model.event_shape))
    else:
        x = rng.standard_normal((4, *model.event_shape))
    labels = rng.integers(0, model.num_classes, 4).astype("int32") if model.num_classes else None
    return x.astype("float32"), labels


def recompress(path: str) -> None:
    """Rewrites a ``.keras`` zip with deflate: the HDF5 weights are mostly padding."""
    with zipfile.ZipFile(path) as z:
        items = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
            for filename, data in items:
                z.writestr(filename, data)


def main() -> None:
    arrays = {}
    for i, (name, make) in enumerate(MODELS.items()):
        keras.utils.set_random_seed(i)
        model = make()
        randomize(model, i)
        x, labels = inputs(model, 100 + i)
        arrays[f"{name}/x"] = x
        if labels is not None:
            arrays[f"{name}/labels"] = labels
        arrays[f"{name}/log_prob"] = model.log_prob(x, labels).numpy()
        path = os.path.join(HERE, f"{name}.keras")
        model.save(path)
        recompress(path)
    with atomic_path(os.path.join(HERE, "expected.npz")) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


if __name__ == "__main__":
    main()
