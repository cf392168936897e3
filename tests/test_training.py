"""Training the flow models: fit, ActNorm initialisation, the non-finite guard, evaluate, multi-replica."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfflows import Glow, VectorGlow, VectorRealNVP
from tfflows.bijectors import ActNorm, FactorOut

from helpers import CONDITIONED, TWO_CPUS, registered_models, run_script

ROOT = Path(__file__).resolve().parents[1]
IMAGE = (8, 8, 1)


def structured_images(n: int, seed: int = 0, shape=IMAGE, num_bits: int = 8) -> np.ndarray:
    """Dequantized images of stripes with random phase (levels in [0, 2**num_bits)): much to learn."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    img = 128 + 100 * np.sin(0.8 * xx[None] + phase) * np.cos(0.4 * yy[None])
    levels = np.clip(np.round(img + 4 * rng.standard_normal(img.shape)), 0, 255) // 2 ** (8 - num_bits)
    levels = np.repeat(levels[..., None], shape[2], axis=-1)
    return (levels + rng.uniform(size=levels.shape)).astype(np.float32)


def blobs(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[2.0] * dim, [-2.0] * dim])
    return (centres[rng.integers(0, 2, n)] + 0.4 * rng.standard_normal((n, dim))).astype(np.float32)


def weights(model) -> list[np.ndarray]:
    return [v.numpy().copy() for v in model.trainable_variables]


def all_weights(model) -> list[np.ndarray]:
    return [np.asarray(v.numpy()).copy() for v in model.weights]


def training_state(model) -> list[np.ndarray]:
    """Every weight a training step may touch: the model's and the optimizer's."""
    return [np.asarray(v.numpy()).copy() for v in [*model.trainable_variables, *model.optimizer.variables]]


# -- 5. fit trains every weight ---------------------------------------------

# Every registered model (helpers.registered_models), unconditioned, and the first model of
# each data kind with each conditioning. Fitting traces a train step per model, so the fast tier
# fits two: the first image model with class labels and the first vector model with a context
# vector; the others are slow.
FIT_FAST = {
    **registered_models("image", ["num_classes"], first_per_kind=True),
    **registered_models("vector", ["context_dim"], first_per_kind=True),
}
FIT_CASES = {**registered_models(conditioning=CONDITIONED, first_per_kind=True), **registered_models()}


def fit_data(model) -> tuple[np.ndarray, Any, float]:
    """(data, its context or None, learning rate) for ``model``: stripes or two blobs."""
    if model.spec.models_pixel_levels:
        x, lr = structured_images(64, shape=model.event_shape, num_bits=model.num_bits), 1e-3
    else:
        x, lr = blobs(256, model.num_dims), 1e-2
    n = len(x)
    if model.num_classes is not None:
        return x, np.arange(n) % model.num_classes, lr
    if model.context_dim is not None:
        return x, np.random.default_rng(1).standard_normal((n, model.context_dim)).astype(np.float32), lr
    return x, None, lr


# Two epochs of fit trace and run the whole step: the fast tier keeps FIT_FAST's vector flows, the
# image flows (a few times the cost) run in the full suite.
@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=() if n in FIT_FAST and "vector" in n else pytest.mark.slow) for n in FIT_CASES],
)
def test_fit_lowers_the_loss_and_changes_every_weight(name):
    keras.utils.set_random_seed(0)
    model = FIT_CASES[name]()
    x, context, lr = fit_data(model)
    model.initialize(x if context is None else (x, context))
    loss_before = float(-tf.reduce_mean(model.log_prob(x, context)))
    before = weights(model)
    model.compile(optimizer=keras.optimizers.Adam(lr))
    history = model.fit(x, context, batch_size=x.shape[0] // 4, epochs=2, shuffle=False, verbose=0)
    loss_after = float(-tf.reduce_mean(model.log_prob(x, context)))
    assert loss_after < loss_before - 1e-3 * abs(loss_before), (loss_before, loss_after)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.optimizer.iterations.numpy() == 8
    unchanged = [v.path for v, b in zip(model.trainable_variables, before) if np.array_equal(v.numpy(), b)]
    assert not unchanged, f"weights untouched by fit: {unchanged}"
    assert len(model.trainable_variables) > 10


# -- 8. ActNorm initialisation ----------------------------------------------


def test_fit_initializes_actnorm_once():
    keras.utils.set_random_seed(1)
    model = VectorGlow(2, num_steps=2, width=16)
    calls = []
    initialize = model.initialize

    def counting(*args, **kwargs):
        calls.append(args)
        return initialize(*args, **kwargs)

    model.initialize = counting
    assert not model.is_initialized
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = blobs(128, 2)
    model.fit(x, batch_size=32, epochs=1, verbose=0)
    assert model.is_initialized and len(calls) == 1
    model.fit(x, batch_size=32, epochs=1, verbose=0)
    assert len(calls) == 1


@pytest.mark.slow
def test_initialize_standardises_every_actnorm_input_and_runs_once():
    keras.utils.set_random_seed(2)
    model = Glow(IMAGE, num_levels=2, num_steps=2, width=8)
    x = structured_images(32, seed=3)
    assert not model.is_initialized
    assert model.initialize(x) == 4  # two levels × two steps
    assert model.is_initialized

    # Walk the data through the flow: every ActNorm's output has zero mean and
    # unit variance per channel on the batch it was initialised from.
    outputs = []

    def run(steps, h):
        for step in steps:
            if isinstance(step, FactorOut):
                run(step.inner.steps, h[..., : h.shape[-1] - step.factored_shape[-1]])
                return
            h = step.forward(tf.identity(h))
            if isinstance(step, ActNorm):
                outputs.append(h.numpy().reshape(-1, h.shape[-1]))

    run(model.flow().steps, tf.constant(x))
    assert len(outputs) == 4
    for out in outputs:
        np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-4)
        np.testing.assert_allclose(out.std(0), 1.0, atol=1e-3)

    after_first = all_weights(model)
    assert model.initialize(structured_images(32, seed=4)) == 0
    for a, b in zip(after_first, all_weights(model)):
        np.testing.assert_array_equal(a, b)
    assert model.initialize(structured_images(32, seed=4), force=True) == 4
    changed = [not np.array_equal(a, b) for a, b in zip(after_first, all_weights(model))]
    assert any(changed)


def test_initialize_from_a_dataset_of_labelled_batches():
    keras.utils.set_random_seed(3)
    model = VectorGlow(2, num_steps=2, width=16, num_classes=2)
    x = blobs(64, 2)
    data = tf.data.Dataset.from_tensor_slices((x, np.arange(64) % 2)).batch(16)
    assert model.initialize(data, num_batches=2) == 2
    first = model.flow([0] * 32).steps[0].forward(x[:32]).numpy()
    np.testing.assert_allclose(first.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(first.std(0), 1.0, atol=1e-3)


# -- 9. the non-finite guard ----------------------------------------------


class WeightLog(keras.callbacks.Callback):
    """Records the weights at the start of every batch."""

    def __init__(self):
        super().__init__()
        self.at_batch_begin = []

    def on_train_batch_begin(self, batch, logs=None):
        self.at_batch_begin.append(training_state(self.model))


def test_non_finite_batch_is_skipped_and_stops_fit():
    keras.utils.set_random_seed(4)
    model = VectorGlow(2, num_steps=2, width=16)
    x = blobs(96, 2)
    model.initialize(x)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    bad = x.copy()
    bad[40, 1] = np.inf  # in the second batch of 32
    log = WeightLog()
    with pytest.warns(RuntimeWarning, match="stopped training at batch 1.*not finite"):
        history = model.fit(bad, batch_size=32, epochs=5, shuffle=False, verbose=0, callbacks=[log])
    assert model.stopped_on_nonfinite
    assert int(model.nonfinite_steps.numpy()) == 1
    assert len(history.history["loss"]) == 1 and len(log.at_batch_begin) == 2
    assert int(model.optimizer.iterations.numpy()) == 1  # the first step only
    for before, after in zip(log.at_batch_begin[1], training_state(model)):
        np.testing.assert_array_equal(after, before)
    assert all(np.all(np.isfinite(w)) for w in all_weights(model))
    # The next clean fit resets the guard and trains on.
    model.fit(x, batch_size=32, epochs=1, verbose=0)
    assert not model.stopped_on_nonfinite and int(model.nonfinite_steps.numpy()) == 0
    assert int(model.optimizer.iterations.numpy()) == 4


def test_huge_learning_rate_keeps_weights_finite():
    keras.utils.set_random_seed(5)
    model = VectorRealNVP(2, num_steps=2, width=16)
    x = blobs(256, 2)
    model.compile(optimizer=keras.optimizers.SGD(1e30))
    log = WeightLog()
    with pytest.warns(RuntimeWarning, match="not finite"):
        model.fit(x, batch_size=32, epochs=3, shuffle=False, verbose=0, callbacks=[log])
    assert model.stopped_on_nonfinite
    assert len(log.at_batch_begin) < 24
    final = training_state(model)
    assert all(np.all(np.isfinite(w)) for w in final)
    for before, after in zip(log.at_batch_begin[-1], final):
        np.testing.assert_array_equal(after, before)


def test_fit_refuses_to_initialize_actnorm_from_non_finite_data():
    model = VectorGlow(2, num_steps=1, width=8)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = blobs(32, 2)
    x[3, 0] = np.nan
    with pytest.raises(ValueError, match="initialize got data with inf or NaN"):
        model.fit(x, batch_size=32, epochs=1, verbose=0)
    assert not model.is_initialized
    assert all(np.all(np.isfinite(w)) for w in all_weights(model))


# -- 11. evaluate and predict -----------------------------------------------


@pytest.mark.parametrize("conditional", [False, True], ids=["glow", "vector_realnvp_classes"])
def test_evaluate_matches_log_prob(conditional):
    keras.utils.set_random_seed(6)
    if conditional:
        model = VectorRealNVP(2, num_steps=3, width=16, num_classes=3)
        x, context = blobs(96, 2), np.arange(96) % 3
    else:
        model = Glow(IMAGE, num_levels=2, num_steps=1, width=8)
        x, context = structured_images(32), None
    model.initialize(x if context is None else (x, context))
    for v in model.trainable_variables:  # non-trivial couplings
        v.assign(v + 0.05 * np.random.default_rng(0).standard_normal(v.shape).astype("float32"))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    log_prob = model.log_prob(x, context).numpy().astype(np.float64)
    result = model.evaluate(x, context, batch_size=x.shape[0] // 4, verbose=0, return_dict=True)
    # Pixel levels are scored in bits/dim, continuous vectors in nats/dim.
    per_dim, unit = ("nats_per_dim", 1.0) if conditional else ("bits_per_dim", math.log(2.0))
    assert set(result) == {"loss", per_dim}
    loss = -log_prob.mean()
    np.testing.assert_allclose(result["loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(result[per_dim], loss / (model.num_dims * unit), rtol=1e-5)
    np.testing.assert_allclose(
        model.predict(x if context is None else (x, context), batch_size=16, verbose=0),
        log_prob,
        rtol=1e-5,
        atol=1e-4,
    )


# -- 7. MirroredStrategy on two logical CPUs ----------------------------------

# Two logical CPUs, and a model beside its MirroredStrategy twin with the same perturbed weights.
MIRRORED_SCRIPT = TWO_CPUS + textwrap.dedent("""
    from tfflows import VectorGlow

    def make():
        return VectorGlow(4, num_steps=2, width=16, seed=3)

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((16, 4)) * [1.0, 2.0, 0.5, 1.0] + 1.0).astype("float32")
    single, mirrored, strategy, start = twins(make, rng, 0.05)
    h1 = single.fit(x, batch_size=16, epochs=1, shuffle=False, verbose=0)
    h2 = mirrored.fit(x, batch_size=16, epochs=1, shuffle=False, verbose=0)

    def max_diff(a, b):
        return max(float(np.max(np.abs(np.asarray(u, np.float64) - v))) for u, v in zip(a, b))

    replicas_equal, actnorm_vars = True, 0
    for v in mirrored.weights:
        values = [np.asarray(t) for t in strategy.experimental_local_results(v.value)]
        replicas_equal &= len(values) == 2 and all(np.array_equal(values[0], t) for t in values[1:])
        actnorm_vars += "actnorm" in v.path
    out = {
        "replicas": strategy.num_replicas_in_sync,
        "loss_single": h1.history["loss"][0], "loss_mirrored": h2.history["loss"][0],
        "weights_diff": max_diff(single.get_weights(), mirrored.get_weights()),
        "moved": max_diff(start, mirrored.get_weights()),
        "initialized": bool(mirrored.is_initialized), "replicas_equal": bool(replicas_equal),
        "actnorm_vars": actnorm_vars,
    }
    trained = [v.numpy().copy() for v in mirrored.trainable_variables]
    bad = x.copy()
    bad[3, 2] = np.inf
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mirrored.fit(bad, batch_size=16, epochs=2, verbose=0)
    out["skipped_steps"] = int(mirrored.nonfinite_steps.numpy())
    out["skip_warned"] = any(issubclass(w.category, RuntimeWarning) for w in caught)
    out["skip_diff"] = max_diff(trained, [v.numpy() for v in mirrored.trainable_variables])
    # Finite loss and gradients, but w - 3e38 g overflows: the update is undone on both replicas.
    with strategy.scope():
        mirrored.compile(optimizer=keras.optimizers.SGD(3e38))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        mirrored.fit(x * 100.0, batch_size=16, epochs=2, verbose=0)
    out["undone_steps"] = int(mirrored.nonfinite_steps.numpy())
    out["undone_iterations"] = int(mirrored.optimizer.iterations.numpy())
    out["undone_diff"] = max_diff(trained, [v.numpy() for v in mirrored.trainable_variables])
    out["undone_replicas_equal"] = all(
        all(np.array_equal(np.asarray(values[0]), np.asarray(t)) for t in values[1:])
        for values in (strategy.experimental_local_results(v.value) for v in mirrored.weights))
    print("RESULT " + json.dumps(out))
""")


@pytest.mark.slow
def test_mirrored_strategy_matches_single_device():
    out = run_script(MIRRORED_SCRIPT)
    assert out["replicas"] == 2
    assert out["initialized"] and out["actnorm_vars"] == 6 and out["replicas_equal"]
    np.testing.assert_allclose(out["loss_mirrored"], out["loss_single"], rtol=1e-5)
    assert out["moved"] > 1e-3  # the step did something ...
    assert out["weights_diff"] < 1e-5  # ... and the same thing on both
    assert out["skipped_steps"] == 1 and out["skip_warned"] and out["skip_diff"] == 0.0
    assert out["undone_steps"] == 1 and out["undone_iterations"] == 0
    assert out["undone_diff"] == 0.0 and out["undone_replicas_equal"]


UNEVEN_SCRIPT = TWO_CPUS + textwrap.dedent("""
    from tfflows import Glow

    def make():
        return Glow((8, 8, 1), num_levels=2, num_steps=1, width=8, num_bits=5, seed=3)

    rng = np.random.default_rng(0)
    out = {}
    # 129 = 2 * 64 + 1: the last global batch of 1 leaves one replica no example;
    # 131: its last batch of 3 splits 2 / 1, where a mean per replica is not the batch mean.
    for n in (129, 131):
        x = rng.uniform(0, 32, (n, 8, 8, 1)).astype("float32")
        single, mirrored, strategy, start = twins(make, rng, 0.01)
        h1 = single.fit(x, batch_size=64, epochs=1, shuffle=False, verbose=0)
        h2 = mirrored.fit(x, batch_size=64, epochs=1, shuffle=False, verbose=0,
                          validation_data=(x[:65],))
        weights = mirrored.get_weights()
        out[n] = {
            "loss_single": h1.history["loss"][0], "loss_mirrored": h2.history["loss"][0],
            "val_loss": h2.history["val_loss"][0],
            "val_want": float(-np.mean(single.log_prob(x[:65]).numpy().astype(np.float64))),
            "diff": max(float(np.max(np.abs(a - b))) for a, b in zip(single.get_weights(), weights)),
            "moved": max(float(np.max(np.abs(a - b))) for a, b in zip(start, weights)),
            "finite": all(bool(np.all(np.isfinite(w))) for w in weights),
            "skipped": int(mirrored.nonfinite_steps.numpy()),
        }
    print("RESULT " + json.dumps(out))
""")


@pytest.mark.slow
def test_mirrored_strategy_trains_on_uneven_and_empty_replica_batches():
    """A last batch smaller than the replica count trains: the step is that of the global mean."""
    for n, out in run_script(UNEVEN_SCRIPT).items():
        assert out["finite"] and out["skipped"] == 0, (n, out)
        assert out["moved"] > 1e-2, (n, out)
        # Same updates as one device on the same batches: the loss is the global-batch mean.
        assert out["diff"] < 1e-5, (n, out)
        np.testing.assert_allclose(out["loss_mirrored"], out["loss_single"], rtol=1e-5)
        # Validation weighs batches by their examples: the mean over all 65.
        np.testing.assert_allclose(out["val_loss"], out["val_want"], rtol=1e-5)
