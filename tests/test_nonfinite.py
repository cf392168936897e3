"""No run saves or exports a non-finite model: the step guard, the sample check, export and the CLI."""

from __future__ import annotations

import itertools
import json
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfflows
from tfflows import Glow, VectorRealNVP
from tfflows.callbacks import FiniteCheckpoint, SampleCheck
from tfflows.guard import NonFiniteWeightsError, nonfinite_weights, update_stays_finite
from tfflows.layers.actnorm import ActNormLayer
from tfflows.training import ScheduledAdam, adam_update, make_optimizer, warmup_cosine

# Every training test runs eagerly, in a tf.function and compiled with XLA.
MODES = {"eager": {"run_eagerly": True}, "function": {"jit_compile": False}, "jit": {"jit_compile": True}}


def points(n: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 2)).astype(np.float32)


def busy_vector_flow(seed: int = 0, num_steps: int = 2) -> VectorRealNVP:
    """A small flow with non-zero couplings, so that every weight gets a gradient."""
    keras.utils.set_random_seed(seed)
    model = VectorRealNVP(2, num_steps=num_steps, width=8)
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        v.assign(v + 0.1 * rng.standard_normal(v.shape).astype("float32"))
    return model


def state(model) -> list[np.ndarray]:
    """The trainable weights and the optimizer's variables."""
    return [np.asarray(v.numpy()).copy() for v in [*model.trainable_variables, *model.optimizer.variables]]


def all_finite(model) -> bool:
    return not nonfinite_weights(model) and all(
        np.all(np.isfinite(v.numpy())) for v in model.optimizer.variables
    )


def overflowing_glow() -> Glow:
    """A Glow whose finite weights decode most draws at temperature 1 to inf or NaN.

    The first ActNorm scales the data by exp(-86): its inverse multiplies by
    e^86 ≈ 2e37, which overflows float32 for latents beyond about ±1.
    """
    model = Glow((8, 8, 1), num_levels=2, num_steps=1, width=8, num_bits=5, seed=0)
    model.initialize(np.random.default_rng(0).uniform(0, 32, (16, 8, 8, 1)).astype("float32"))
    actnorm = next(layer for layer in model.flow_layers if isinstance(layer, ActNormLayer))
    actnorm.log_scale.assign(actnorm.log_scale - 86.0)
    return model


def nonfinite_fraction(x) -> float:
    x = np.asarray(x).reshape(len(x), -1)
    return float(np.mean(~np.isfinite(x).all(axis=1)))


# -- the step guard ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(MODES))
def test_gradients_whose_squares_overflow_are_clipped_to_the_clip_norm(mode):
    # Points at 1e10 give a finite loss (~5e20) and finite gradients up to ~6e20, whose
    # squares overflow float32: Keras' own global-norm clip then scales the update by NaN.
    model = busy_vector_flow()
    x = points() * 1e10
    model.compile(optimizer=keras.optimizers.SGD(0.01, global_clipnorm=50.0), **MODES[mode])
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(model.log_prob(x))
    grads = tape.gradient(loss, model.trainable_variables)
    assert math.isfinite(float(loss)) and all(np.all(np.isfinite(g)) for g in grads)
    assert not math.isfinite(float(tf.linalg.global_norm(grads)))
    before = [v.numpy().astype(np.float64) for v in model.trainable_variables]
    model.fit(x, batch_size=32, epochs=1, shuffle=False, verbose=0)
    assert all_finite(model)
    assert int(model.nonfinite_steps.numpy()) == 0 and not model.stopped_on_nonfinite
    assert int(model.optimizer.iterations.numpy()) == 1
    # SGD moves the weights by lr · g · clip / |g|: a step of length lr · clip.
    step = math.sqrt(sum(np.sum((v.numpy() - b) ** 2) for v, b in zip(model.trainable_variables, before)))
    assert step == pytest.approx(0.01 * 50.0, rel=1e-4)


@pytest.mark.slow
def test_make_optimizer_at_a_high_learning_rate_keeps_huge_gradients_finite():
    """The lr-0.1 Fashion-MNIST report: a finite step that make_optimizer's clip turned into NaN."""
    model = busy_vector_flow(1)
    model.compile(optimizer=make_optimizer(0.1, warmup_steps=0))
    model.fit(points(64, 1) * 1e10, batch_size=32, epochs=1, shuffle=False, verbose=0)
    assert all_finite(model)
    assert int(model.optimizer.iterations.numpy()) == 2 and int(model.nonfinite_steps.numpy()) == 0


@pytest.mark.parametrize("mode", list(MODES))
def test_an_update_that_overflows_is_undone_before_the_next_step(mode):
    # Loss and gradients are finite; w - 3e38 · g is not. The update must not land.
    model = busy_vector_flow(2)
    x = points(64, 2) * 100.0  # gradients well above 1
    model.compile(optimizer=keras.optimizers.SGD(3e38), **MODES[mode])
    before = state(model)
    with pytest.warns(RuntimeWarning, match="stopped training at batch 0"):
        history = model.fit(x, batch_size=32, epochs=3, shuffle=False, verbose=0)
    assert model.stopped_on_nonfinite and int(model.nonfinite_steps.numpy()) == 1
    assert int(model.optimizer.iterations.numpy()) == 0
    for a, b in zip(state(model), before):
        np.testing.assert_array_equal(a, b)
    # No step was applied: the epoch's loss is unknown, not 0.0.
    assert len(history.history["loss"]) == 1
    assert math.isnan(history.history["loss"][0]) and math.isnan(history.history["nats_per_dim"][0])


def test_adam_moments_that_overflow_are_undone():
    # Without clipping, Adam squares gradients of ~1e21: its second moment becomes inf
    # while the weights stay finite. That state is not kept either.
    model = busy_vector_flow(3)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = state(model)
    with pytest.warns(RuntimeWarning, match="not finite"):
        model.fit(points(32, 3) * 1e10, batch_size=32, epochs=1, verbose=0)
    assert int(model.nonfinite_steps.numpy()) == 1 and all_finite(model)
    for a, b in zip(state(model), before):
        np.testing.assert_array_equal(a, b)


# -- the bound that lets the guard skip its copy of the training state --------------------

BOUNDED = {
    "adam": lambda rate: keras.optimizers.Adam(rate),  # the fused kernel (adam_update)
    # clipvalue (far above every gradient here) leaves the update to Keras's update_step.
    "adam_keras": lambda rate: keras.optimizers.Adam(rate, clipvalue=1e30),
    "adam_amsgrad": lambda rate: keras.optimizers.Adam(rate, amsgrad=True),
    "adamw": lambda rate: keras.optimizers.AdamW(rate, weight_decay=0.5),
    "scheduled_adam": lambda rate: make_optimizer(rate, warmup_steps=0, clipnorm=None),
    "sgd": lambda rate: keras.optimizers.SGD(rate),
    "sgd_momentum": lambda rate: keras.optimizers.SGD(rate, momentum=0.9),
    "sgd_nesterov": lambda rate: keras.optimizers.SGD(rate, momentum=0.9, nesterov=True),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(BOUNDED))
def test_the_update_bound_says_finite_only_where_the_update_is_finite(kind):
    said_finite = said_not = 0
    for rate in [1e-3, 1.0, 1e25, 3e38]:
        # One optimizer per rate, its whole state set anew before each case as a fresh one's
        # would be (a new optimizer per case tripled the test's time): the step count back to
        # 0, the moments to the case's slot, the learning rate to its value.
        variable = keras.Variable(np.zeros(3, "float32"))
        optimizer = BOUNDED[kind](rate)
        optimizer.build([variable])
        moments = [
            *getattr(optimizer, "_momentums", []),
            *getattr(optimizer, "momentums", []),
            *getattr(optimizer, "_velocities", []),
            *getattr(optimizer, "_velocity_hats", []),
        ]
        rates = [v for v in optimizer.variables if v.path.endswith("/learning_rate")]
        reset = {id(v) for v in [optimizer.iterations, *moments, *rates]}
        assert {id(v) for v in optimizer.variables} == reset, [v.path for v in optimizer.variables]
        fresh_rates = [v.numpy().copy() for v in rates]
        for grad, slot, weight in itertools.product(
            [1.0, 1e17, 1e19, 1e20], [0.0, 1.0, 1e29, 1e31, 1e37], [1.0, 1e36, 3e37, 3e38]
        ):
            variable.assign(np.array([weight, -weight, 0.5], "float32"))
            optimizer.iterations.assign(0)
            for v, value in zip(rates, fresh_rates):
                v.assign(value)
            for moment in moments:
                signs = np.array([1.0, -1.0, 1.0]) if "momentum" in moment.path else 1.0
                moment.assign((slot * signs * np.ones(3)).astype("float32"))
            grads = [tf.constant([grad, -grad, 1.0], tf.float32)]
            safe = update_stays_finite(optimizer, grads, [variable])
            if adam_update(optimizer, grads, [variable]) is None:  # as the training step does
                optimizer.apply(grads, [variable])
            finite = all(np.all(np.isfinite(v.numpy())) for v in [variable, *optimizer.variables])
            if bool(safe):
                said_finite += 1
                assert finite, (kind, grad, slot, weight, rate)
            else:
                said_not += 1
    # Not vacuous: ordinary sizes pass, and the extremes are caught.
    assert said_finite >= 20 and said_not >= 20, (said_finite, said_not)


def test_the_update_bound_refuses_optimizers_it_cannot_bound():
    class MyAdam(keras.optimizers.Adam):
        pass

    variable = keras.Variable(np.ones(3, "float32"))
    grads = [tf.ones(3)]
    for optimizer in [
        keras.optimizers.RMSprop(1e-3),
        keras.optimizers.Adam(1e-3, use_ema=True),
        keras.optimizers.Adam(1e-3, gradient_accumulation_steps=2),
        keras.optimizers.Adam(1e-3, epsilon=0.0),
        MyAdam(1e-3),
        keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3)),
    ]:
        optimizer.build([variable])
        assert update_stays_finite(optimizer, grads, [variable]) is None, optimizer
    negative = keras.optimizers.Adam(1e-3)
    negative.build([variable])
    negative._velocities[0].assign(-np.ones(3, "float32"))  # a corrupt checkpoint's state
    assert not bool(update_stays_finite(negative, grads, [variable]))


def test_the_update_bound_refuses_clip_norms_whose_clipping_overflows():
    # Keras clips again inside apply, squaring gradients that the train step left as they
    # were: with a clip norm of 1e20, gradients of 9e17 pass the step's clip and overflow there.
    variable = keras.Variable(np.zeros(1000, "float32"))
    grads = [tf.fill([1000], 9e17)]
    for clip in ({"global_clipnorm": 1e20}, {"clipnorm": 1e21}):
        optimizer = keras.optimizers.Adam(1e-3, **clip)
        optimizer.build([variable])
        assert update_stays_finite(optimizer, grads, [variable]) is None, clip
    optimizer = keras.optimizers.Adam(1e-3, global_clipnorm=50.0)
    optimizer.build([variable])
    assert bool(update_stays_finite(optimizer, [tf.ones([1000])], [variable]))


@pytest.mark.parametrize("compiled", [None, False, True], ids=["eager", "function", "xla"])
def test_the_update_bound_fails_on_a_nan_even_where_reduce_max_skips_it(compiled):
    variable = keras.Variable(np.ones(4, "float32"))
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build([variable])
    grads = [tf.ones(4)]

    def bound():
        return update_stays_finite(optimizer, grads, [variable])

    run = bound if compiled is None else tf.function(bound, jit_compile=compiled)
    assert bool(run())
    for moment in (optimizer._momentums[0], optimizer._velocities[0]):
        moment.assign([np.nan, 0.0, 0.0, 0.0])
        assert not bool(run()), moment.path
        moment.assign(np.zeros(4, "float32"))
    variable.assign([1.0, np.nan, 1.0, 1.0])
    assert not bool(run())


@pytest.mark.parametrize("mode", list(MODES))
def test_the_guard_copies_the_state_only_for_an_update_it_cannot_prove_finite(mode, monkeypatch):
    # Counted when the copying branch runs, not when it is traced (both branches of a cond are).
    copies = tf.Variable(0)
    import tfflows.training.step as step

    real = step._apply_with_copies

    def counting(model, grads, variables, *args):
        copies.assign_add(1)
        return real(model, grads, variables, *args)

    monkeypatch.setattr(step, "_apply_with_copies", counting)
    trained = {}
    for path in ("proved", "copied"):
        if path == "copied":  # the same training, every update through the copying guard
            monkeypatch.setattr(step, "update_stays_finite", lambda *a: None)
        model = busy_vector_flow(5, num_steps=1)  # one coupling: a third less to trace and compile
        model.compile(optimizer=keras.optimizers.Adam(1e-2), **MODES[mode])
        copies.assign(0)
        model.fit(points(96, 5), batch_size=32, epochs=2, shuffle=False, verbose=0)
        trained[path] = (state(model), int(copies.numpy()))
    assert trained["proved"][1] == 0 and trained["copied"][1] == 6  # 2 epochs of 3 steps
    # The proved path makes Adam's update with TensorFlow's fused kernel, the copying path with
    # Keras's update_step: the same arithmetic, rounded in another order.
    for a, b in zip(trained["proved"][0], trained["copied"][0]):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


FUSED = {
    "adam": lambda: keras.optimizers.Adam(1e-2),
    "scheduled": lambda: ScheduledAdam(warmup_cosine(1e-2, 3, 10), beta_1=0.8, epsilon=1e-5),
}


def _adam_step(optimizer, variables, fused: bool):
    """One update of ``variables`` by Keras's ``apply`` or by ``adam_update`` (a closure, not
    defaults: tf.function would trace default arguments as inputs)."""

    def step(grads):
        if fused:
            assert adam_update(optimizer, grads, variables) is not None
        else:
            optimizer.apply(grads, variables)

    return step


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "function"])
@pytest.mark.parametrize("kind", list(FUSED))
def test_the_fused_adam_update_is_keras_adams(kind, compiled):
    dtype = "float32"
    rng = np.random.default_rng(0)
    start = [rng.standard_normal(shape).astype(dtype) for shape in [(3, 4), (4,), ()]]
    runs = {}
    for how in ("keras", "fused"):
        variables = [keras.Variable(v, dtype=dtype, name=f"w{i}") for i, v in enumerate(start)]
        optimizer = FUSED[kind]()
        optimizer.build(variables)

        step = _adam_step(optimizer, variables, fused=how == "fused")
        run = tf.function(step) if compiled else step
        for t in range(6):
            grads = [tf.constant(np.random.default_rng(t).standard_normal(v.shape), dtype) for v in start]
            run(grads)
        runs[how] = [np.asarray(v.numpy()) for v in [*variables, *optimizer.variables]]
    assert int(runs["fused"][len(start)]) == 6  # the step count
    for a, b in zip(runs["keras"], runs["fused"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_the_fused_adam_update_leaves_every_other_setting_to_keras():
    class MyAdam(keras.optimizers.Adam):
        pass

    grads = [tf.ones(3)]
    cases = {
        "amsgrad": (keras.optimizers.Adam(1e-3, amsgrad=True), None),
        "weight decay": (keras.optimizers.Adam(1e-3, weight_decay=0.1), None),
        "adamw": (keras.optimizers.AdamW(1e-3), None),
        "ema": (keras.optimizers.Adam(1e-3, use_ema=True), None),
        "accumulation": (keras.optimizers.Adam(1e-3, gradient_accumulation_steps=2), None),
        "clipvalue": (keras.optimizers.Adam(1e-3, clipvalue=1.0), None),
        "subclass": (MyAdam(1e-3), None),
        "sgd": (keras.optimizers.SGD(1e-3), None),
        "loss scale": (keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3)), None),
        "constraint": (keras.optimizers.Adam(1e-3), keras.constraints.NonNeg()),
        "no gradient": (keras.optimizers.Adam(1e-3), None),
        "float64": (keras.optimizers.Adam(1e-3), None),
    }
    for name, (optimizer, constraint) in cases.items():
        dtype = "float64" if name == "float64" else "float32"
        variable = keras.Variable(np.ones(3, dtype))
        variable.constraint = constraint  # keras.Variable(constraint=...) does not keep it
        optimizer.build([variable])
        given = [None] if name == "no gradient" else [tf.ones(3, dtype)]
        assert adam_update(optimizer, given, [variable]) is None, name
        assert int(optimizer.iterations.numpy()) == 0 and np.all(variable.numpy() == 1.0), name
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        variable = keras.Variable(np.ones(3, "float32"))
        optimizer = keras.optimizers.Adam(1e-3)
        optimizer.build([variable])
        assert adam_update(optimizer, grads, [variable]) is None


def test_a_skipped_batch_does_not_count_as_a_loss_of_zero():
    model = busy_vector_flow(4)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = points(32, 4)
    x[5, 0] = np.nan
    with pytest.warns(RuntimeWarning, match="not finite"):
        history = model.fit(x, batch_size=32, epochs=2, verbose=0)
    assert math.isnan(history.history["loss"][0])
    # And a clean fit afterwards reports its real mean loss.
    history = model.fit(points(32, 4), batch_size=32, epochs=1, verbose=0)
    assert 0.0 < history.history["loss"][0] < 10.0


# -- samples that overflow -----------------------------------------------------------------


@pytest.mark.slow
def test_sample_check_puts_the_fraction_of_non_finite_samples_in_the_history():
    x = np.random.default_rng(1).uniform(0, 32, (32, 8, 8, 1)).astype("float32")
    fractions = {}
    for name, model in (
        ("healthy", Glow((8, 8, 1), num_levels=2, num_steps=1, width=8, num_bits=5, seed=0)),
        ("overflowing", overflowing_glow()),
    ):
        model.initialize(x)
        model.compile(optimizer=keras.optimizers.SGD(1e-9))
        history = model.fit(x, batch_size=16, epochs=2, verbose=0, callbacks=[SampleCheck(64)])
        fractions[name] = history.history[SampleCheck.key]
    assert fractions == {"healthy": [0.0, 0.0], "overflowing": [1.0, 1.0]}


def test_clip_latent_draws_finite_samples_where_plain_ones_overflow():
    model = overflowing_glow()
    with pytest.warns(RuntimeWarning, match="have inf or NaN values"):
        plain = model.sample(64, seed=0)
    clipped = model.sample(64, seed=0, clip_latent=0.1)
    assert nonfinite_fraction(plain) == 1.0 and nonfinite_fraction(clipped) == 0.0
    # Latents inside the clip are left alone: at a small temperature it changes nothing.
    np.testing.assert_array_equal(
        model.sample(8, temperature=0.01, seed=1, clip_latent=10.0), model.sample(8, temperature=0.01, seed=1)
    )


def test_clip_output_clamps_every_pixel_into_the_data_range():
    model = overflowing_glow()
    with pytest.warns(RuntimeWarning, match=r"64 of 64 samples .* clip_output clamped them"):
        x = model.sample(64, seed=0, clip_output=True).numpy()
    assert np.isfinite(x).all() and x.min() >= 0.0 and x.max() < 2.0**model.num_bits
    # Samples inside the range come back unchanged.
    healthy = Glow((8, 8, 1), num_levels=2, num_steps=1, width=8, num_bits=5, seed=0)
    inside = healthy.sample(8, temperature=0.05, seed=1).numpy()
    assert inside.min() >= 0.0 and inside.max() < 32.0
    np.testing.assert_array_equal(healthy.sample(8, temperature=0.05, seed=1, clip_output=True), inside)
    with pytest.raises(ValueError, match="clip_output is for image models"):
        tfflows.VectorRealNVP(2, num_steps=2, width=8).sample(2, clip_output=True)


# -- export ------------------------------------------------------------------------------


def test_export_refuses_a_model_with_a_nan_weight(tmp_path):
    model = Glow((8, 8, 1), num_levels=2, num_steps=1, width=8, num_bits=5, seed=0)
    weight = model.trainable_variables[3]
    weight.assign(tf.fill(weight.shape, math.nan))
    with pytest.raises(NonFiniteWeightsError, match=r"refusing to export .*" + weight.path):
        tfflows.export_saved_model(model, tmp_path / "1")
    assert not (tmp_path / "1").exists()


@pytest.mark.slow  # exports and loads a SavedModel
def test_served_samples_say_which_ones_overflowed(tmp_path):
    model = overflowing_glow()
    path = tfflows.export_saved_model(model, tmp_path / "1")
    served = tf.saved_model.load(path)
    card = json.load(open(os.path.join(path, "assets.extra", "model_card.json")))
    for name in ("sample", "decode"):
        assert card["signatures"][name]["outputs"]["finite"]["dtype"] == "bool"
    hot = served.signatures["sample"](
        num_samples=tf.constant(16), temperature=tf.constant(1.0), seed=tf.constant(0, tf.int64)
    )
    cold = served.signatures["sample"](
        num_samples=tf.constant(16), temperature=tf.constant(0.01), seed=tf.constant(0, tf.int64)
    )
    assert hot["images"].dtype == tf.uint8
    np.testing.assert_array_equal(hot["finite"], np.isfinite(hot["images_float"]).reshape(16, -1).all(1))
    assert not np.any(hot["finite"]) and np.all(cold["finite"])
    z = np.zeros((2, 64), np.float32)
    z[1] = 30.0
    decoded = served.signatures["decode"](latents=tf.constant(z))
    assert decoded["finite"].numpy().tolist() == [True, False]


# -- checkpoints and the command line ---------------------------------------------------


def test_checkpoint_warns_instead_of_ending_training_on_a_nan_model(tmp_path):
    model = VectorRealNVP(2, num_steps=2, width=8)
    weight = model.trainable_variables[-1]
    weight.assign(tf.fill(weight.shape, math.nan))
    checkpoint = FiniteCheckpoint(str(tmp_path / "epoch_{epoch:03d}.keras"))
    checkpoint.set_model(model)
    with pytest.warns(RuntimeWarning, match="no checkpoint at epoch 1: .*non-finite weights"):
        checkpoint.on_epoch_end(0, {"loss": 1.0})
    assert checkpoint.last_good is None and os.listdir(tmp_path) == []


def _strict_json(path) -> dict:
    def refuse(name):
        raise ValueError(f"{path} holds {name}")

    with open(path) as f:
        return json.load(f, parse_constant=refuse)


@pytest.mark.slow
def test_cli_train_that_diverges_exits_non_zero_naming_the_last_good_checkpoint(tmp_path, capsys):
    from tfflows.cli import main

    out = tmp_path / "run"
    # Adam's first step moves every weight by about lr: epoch 1 ends with finite weights of
    # ~1e20, and the first step of epoch 2 has an inf loss. (At lr 1e30 the guard's bound
    # could not prove the first update finite, and it would stop in epoch 1.)
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "train",
                "--dataset",
                "digits",
                "--epochs",
                "3",
                "--steps-per-epoch",
                "1",
                "--batch-size",
                "16",
                "--width",
                "8",
                "--steps",
                "1",
                "--levels",
                "1",
                "--lr",
                "1e20",
                "--warmup",
                "0",
                "--out",
                str(out),
                "--verbose",
                "0",
                "--extras-share",
                "1",
            ]
        )  # a checkpoint after every epoch
    message = str(exit_.value.code)
    assert exit_.value.code not in (0, None)
    good = os.path.join(str(out), "checkpoints", "epoch_001.keras")
    assert "stopped on non-finite values" in message and f"last good checkpoint is {good}" in message
    assert os.listdir(out / "checkpoints") == ["epoch_001.keras"]
    assert not (out / "model.keras").exists()
    results = _strict_json(out / "results.json")
    assert results["stopped_on_nonfinite"] is True and results["nonfinite_steps"] == 1
    assert results["last_good_checkpoint"] == good and results["epochs_run"] == 2
    assert results["nonfinite_sample_fraction"] == 1.0
    assert not nonfinite_weights(keras.models.load_model(good))


@pytest.mark.slow
def test_cli_train_reports_the_sample_check(trained_run):
    out = trained_run  # tfflows train --dataset digits --epochs 2 --steps-per-epoch 2 ... (conftest.py)
    results = _strict_json(out / "results.json")
    assert results["stopped_on_nonfinite"] is False and results["last_good_checkpoint"].endswith(
        "epoch_002.keras"
    )
    assert results["nonfinite_sample_fraction_per_epoch"] == [0.0, 0.0]
    assert (out / "model.keras").exists()
