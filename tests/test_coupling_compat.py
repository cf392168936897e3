"""Models saved before the generic ``Coupling`` load with the same log-densities.

tests/data/old_couplings holds tiny ``.keras`` files written by the code from
before the redesign (commit 935fcdb; see make_fixtures.py there): Glow
(affine with class context, and additive), RealNVP (checkerboard and channel
masks, tanh scales, ResNets), VectorRealNVP, VectorGlow (additive) and
VectorNSF (spline couplings), each with random weights, and the ``log_prob``
they gave on fixed inputs. Loading them now must give those numbers.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

import tfflows  # noqa: F401  (registers the model classes)

DATA = os.path.join(os.path.dirname(__file__), "data", "old_couplings")
NAMES = sorted(f[: -len(".keras")] for f in os.listdir(DATA) if f.endswith(".keras"))


@pytest.fixture(scope="module")
def expected():
    with np.load(os.path.join(DATA, "expected.npz")) as f:
        return dict(f)


def test_every_fixture_is_here():
    assert NAMES == sorted(
        [
            "glow_additive",
            "glow_affine_conditional",
            "realnvp",
            "vector_glow_additive",
            "vector_nsf",
            "vector_realnvp",
        ]
    )


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_old_keras_file_loads_with_the_same_log_prob(name, expected, assert_close):
    model = keras.models.load_model(os.path.join(DATA, f"{name}.keras"))
    x, want = expected[f"{name}/x"], expected[f"{name}/log_prob"]
    labels = expected.get(f"{name}/labels")
    got = model.log_prob(x, labels).numpy()
    assert np.ptp(want) > 1e-3  # the saved weights make the density depend on x
    # The same operations in the same order: equal to float32 round-off of a log-density.
    assert_close("old_keras_log_prob", got, want, atol=1e-5, rtol=1e-6)
