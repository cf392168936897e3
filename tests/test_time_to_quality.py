"""Time to quality: the XLA probe, test figures at set training times, the time breakdown.

Tiny models (a 2-D RealNVP, an 8×8 Glow) so each test takes seconds.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfflows
import tfflows.cli
import tfflows.cli.common
import tfflows.cli.train
from tfflows.callbacks import TimeLimit
from tfflows.clock import TestAt, TrainingClock
from tfflows.training import probe_jit

from helpers import CliError, cli

POINTS = np.random.default_rng(0).normal(size=(256, 2)).astype("float32")


def _vector_model() -> tfflows.VectorRealNVP:
    keras.utils.set_random_seed(0)
    model = tfflows.VectorRealNVP(2, num_steps=2, width=8, depth=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


def _batches() -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(POINTS).batch(32)


@pytest.mark.slow
def test_probe_jit_keeps_the_faster_compiled_step_and_its_steps_train():
    model = _vector_model()
    before = [w.numpy().copy() for w in model.trainable_weights]
    report = probe_jit(model, _batches(), steps=2, rounds=2)
    times = report["seconds_per_step"]
    assert report["jit_compile"] is (times["on"] < times["off"])
    assert model.jit_compile is report["jit_compile"]
    # 2 rounds × 2 settings × (2 timed + 1 untimed) batches, all real updates.
    assert report["steps"] == 12 == int(model.optimizer.iterations.numpy())
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))
    kept = model.train_function
    model.fit(_batches(), epochs=1, verbose=0)
    assert model.train_function is kept  # fit used the probed step: no second trace


@pytest.mark.slow
def test_probe_jit_does_not_try_xla_when_its_compilation_would_cost_too_much():
    model = _vector_model()
    report = probe_jit(model, _batches(), steps=2, rounds=2, max_compile_seconds=1e-6)
    assert report["jit_compile"] is False and model.jit_compile is False
    assert report["xla_skipped"].startswith("the plain step's first call took")
    assert report["seconds_per_step"]["on"] is None and report["first_step_seconds"]["on"] is None
    assert report["steps"] == 6 == int(model.optimizer.iterations.numpy())  # 2 plain windows
    # A generous limit changes nothing.
    assert (
        probe_jit(_vector_model(), _batches(), steps=2, rounds=1, max_compile_seconds=1e6)["xla_skipped"]
        is None
    )


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(steps=0), "steps must be a positive integer"),
        (dict(rounds=True), "rounds must be a positive integer"),
        (dict(max_compile_seconds=0), "max_compile_seconds must be a number > 0 or None"),
        (dict(max_compile_seconds="60"), "max_compile_seconds must be a number > 0 or None"),
    ],
    ids=["zero_steps", "bool_rounds", "zero_compile", "string_compile"],
)
def test_probe_jit_refuses_bad_arguments(kwargs, expected):
    with pytest.raises(ValueError, match=expected):
        probe_jit(_vector_model(), _batches(), **kwargs)


def test_probe_jit_refuses_an_uncompiled_model():
    with pytest.raises(ValueError, match="expected a compiled model"):
        probe_jit(tfflows.VectorRealNVP(2, num_steps=2, width=8), _batches())


@pytest.mark.slow
def test_test_at_pauses_the_clock_and_leaves_training_unchanged():
    plain, tested = _vector_model(), _vector_model()
    history = plain.fit(_batches(), epochs=2, verbose=0)
    limit, clock = TimeLimit(3600.0), TrainingClock()
    test = tf.data.Dataset.from_tensor_slices(POINTS[:64]).batch(64)
    at = TestAt(test, [1e-9, 2e-9], time_limit=limit, clock=clock)
    tested_history = tested.fit(_batches(), epochs=2, verbose=0, callbacks=clock.around([limit, at]))
    # The evaluations neither trained the model nor changed the logged running means.
    assert tested_history.history["loss"] == history.history["loss"]
    for a, b in zip(plain.weights, tested.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert [r["train_steps"] for r in at.results] == [1, 2]
    assert limit.paused == pytest.approx(sum(r["eval_seconds"] for r in at.results), abs=0.2)
    parts = clock.breakdown()
    assert parts["steps_timed"] == 16 - 2  # 16 batches in all, each epoch's first booked apart
    assert parts["test_at"] > 0
    booked = sum(v for k, v in parts.items() if k not in ("total", "steps_timed", "seconds_per_step"))
    assert booked == pytest.approx(parts["total"], abs=0.05)


def test_test_at_refuses_marks_that_are_not_positive():
    with pytest.raises(ValueError, match="expected seconds of training > 0"):
        TestAt(_batches(), [0.0])


@pytest.mark.slow
def test_train_probes_xla_and_tests_at_set_minutes(tmp_path, data_dir, monkeypatch):
    # The probe pays only for long runs; here it runs on a tiny one.
    monkeypatch.setattr(tfflows.cli.train, "PROBE_MIN_STEPS", 1)
    monkeypatch.setattr(tfflows.cli.train, "PROBE_MIN_MINUTES", 0.0)
    out = tmp_path / "run"
    printed = cli(
        "train",
        "--dataset",
        "tiny_idx_tfflows",
        "--data-dir",
        str(data_dir),
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "16",
        "--width",
        "8",
        "--steps",
        "1",
        "--levels",
        "2",
        "--time-limit",
        "0.0001",
        "--test-at",
        "0.0001",
        "--out",
        str(out),
        "--verbose",
        "0",
    )
    results = json.loads((out / "results.json").read_text())
    probe = results["jit"]["probe"]
    # XLA may cost a tenth of --time-limit (0.6 ms here): the plain step's tracing is far
    # over that, so XLA is not tried.
    assert probe["xla_skipped"] and results["jit"]["jit_compile"] is False
    assert probe["seconds_per_step"]["on"] is None and probe["seconds_per_step"]["off"] > 0
    assert "--jit auto: XLA off, not tried: the plain step's first call took" in printed
    # The probe's steps trained the model and used up the budget: one more step, then the end.
    assert results["train_steps"] == probe["steps"] + 1
    (last,) = results["test_at"]  # the mark at the time limit is the final test figure
    assert last["minutes"] == 0.0001 and last["train_steps"] == results["train_steps"]
    assert last["bits_per_dim"] == results["test_bits_per_dim"] > 0
    assert results["time_breakdown_s"]["jit_probe"] == probe["probe_seconds"]


def test_train_says_when_xla_could_not_compile_the_step():
    """The line tfflows train prints for a probe whose XLA step failed to compile (no training:
    tfflows train prints exactly ``probe_line`` of its probe's report)."""
    report = {
        "xla_skipped": None,
        "xla_error": "InvalidArgumentError: dynamic shape",
        "seconds_per_step": {"off": 0.01, "on": None},
    }
    printed = tfflows.cli.train.probe_line(report, jit_compile=False)
    assert "--jit auto: XLA off, it could not compile the step: InvalidArgumentError" in printed
    timed = {**report, "xla_error": None, "seconds_per_step": {"off": 0.02, "on": 0.01}}
    measured = tfflows.cli.train.probe_line(timed, jit_compile=True)
    assert measured == "tfflows: --jit auto: XLA on (measured 20.000 ms/step without, 10.000 ms/step with)"


def test_train_refuses_a_test_time_past_the_time_limit(tmp_path, data_dir):
    with pytest.raises(CliError, match="--test-at: expected minutes up to --time-limit 1, got 5"):
        cli(
            "train",
            "--dataset",
            "tiny_idx_tfflows",
            "--data-dir",
            str(data_dir),
            "--time-limit",
            "1",
            "--test-at",
            "5",
            "--out",
            str(tmp_path / "run"),
        )


def test_every_pipeline_tfflows_builds_runs_without_the_autotuner(tmp_path):
    """tf.data's autotuner made each new epoch wait for its background thread
    (tens of seconds per epoch in a 10-minute run); tfflows' pipelines turn it off."""
    from PIL import Image

    from tfflows.ood.background import perturbed_dataset

    images = np.random.default_rng(0).integers(0, 256, size=(10, 8, 8, 1), dtype=np.uint8)
    for i in range(3):
        Image.fromarray(images[i, ..., 0]).save(tmp_path / f"{i}.png")
    built = {
        "make_dataset": tfflows.data.make_dataset(images, batch_size=4, seed=0),
        "make_dataset from a Dataset": tfflows.data.make_dataset(
            tf.data.Dataset.from_tensor_slices(images), batch_size=4
        ),
        "toy_dataset": tfflows.data.toy_dataset("two_moons", 16, batch_size=4, seed=0),
        "image_folder": tfflows.data.image_folder(tmp_path, size=8, channels=1, batch_size=2),
        "perturbed_dataset": perturbed_dataset(images, 0.2, batch_size=4, seed=0),
        "CLI toy points": tfflows.cli.common.pipeline(POINTS, None, None, None, 32, True, 0),
    }
    for name, ds in built.items():
        assert ds.options().autotune.enabled is False, name
        assert next(iter(ds)) is not None, name  # and it still yields
    # A user's own pipeline keeps its options; steady only turns the autotuner off.
    user = tf.data.Dataset.range(4)
    assert tfflows.data.steady(user).options().autotune.enabled is False
    assert list(tfflows.data.steady(user).as_numpy_iterator()) == [0, 1, 2, 3]
