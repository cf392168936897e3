"""Keras saving and resuming: ``.keras`` round trips, ModelCheckpoint, BackupAndRestore.

Every run here uses fixed, already dequantized data in a fixed order (no
shuffling, no noise drawn during ``fit``) and ``keras.utils.set_random_seed``
before each model is built, so two runs that do the same steps must give the
same numbers. One fixture per model trains two ways once:

- "straight": 1 epoch, ``model.save``, then 1 more epoch on the same model
  object (what was saved is read off before it trains on);
- "resumed": ``keras.models.load_model`` (safe mode on) of that file, then
  1 more epoch on the loaded model;

and the tests read what each property needs from it. (The straight run is the
saved model trained on, not a third model: every new model traces its train
step again, which is most of this file's time.)
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfflows.layers.actnorm import ActNormLayer
from tfflows.training import make_optimizer

from helpers import CONDITIONED, registered_models

BATCH = 8
NUM_EXAMPLES = 16

# Every registered model (helpers.registered_models), and the first model of each data kind with
# each conditioning; tiny, so each fit traces in seconds.
MODELS = {**registered_models(), **registered_models(conditioning=CONDITIONED, first_per_kind=True)}


def make_data(model, seed: int = 0):
    """Fixed float data (pixel levels + fixed uniform noise, or Gaussian vectors) and its context."""
    rng = np.random.default_rng(seed)
    if model.spec.models_pixel_levels:
        levels = rng.integers(0, 2**model.num_bits, size=(NUM_EXAMPLES, *model.event_shape))
        x = (levels + rng.random(levels.shape)).astype("float32")
    else:
        x = (
            rng.normal(size=(NUM_EXAMPLES, model.num_dims)) * np.resize([1.0, 2.0, 0.5], model.num_dims)
        ).astype("float32")
    labels = None
    if model.num_classes is not None:
        labels = rng.integers(0, model.num_classes, size=NUM_EXAMPLES).astype("int32")
    elif model.context_dim is not None:
        labels = rng.normal(size=(NUM_EXAMPLES, model.context_dim)).astype("float32")
    return x, labels


def make_dataset(x, labels) -> tf.data.Dataset:
    items = x if labels is None else (x, labels)
    return tf.data.Dataset.from_tensor_slices(items).batch(BATCH)


def new_model(name: str):
    keras.utils.set_random_seed(0)
    model = MODELS[name]()
    model.compile(optimizer=make_optimizer(1e-3, warmup_steps=3, clipnorm=50.0), jit_compile=False)
    return model


def weights_of(model) -> list[np.ndarray]:
    return [np.array(w) for w in model.weights]


def actnorm_layers(model) -> list[ActNormLayer]:
    return [layer for layer in model.flow_layers if isinstance(layer, ActNormLayer)]


class InitializeCounter:
    """Counts ActNormLayer.initialize calls that really initialise (patched on the class)."""

    def __init__(self, monkeypatch) -> None:
        self.calls = 0
        original = ActNormLayer.initialize

        def counted(layer, x, force=False):
            done = original(layer, x, force=force)
            self.calls += int(done)
            return done

        monkeypatch.setattr(ActNormLayer, "initialize", counted)


@pytest.fixture(scope="module", params=list(MODELS), ids=list(MODELS))
def runs(request, tmp_path_factory):
    name = request.param
    straight = new_model(name)
    x, labels = make_data(straight)
    data = make_dataset(x, labels)

    first_losses = straight.fit(data, epochs=1, verbose=0, shuffle=False).history["loss"]
    path = os.path.join(str(tmp_path_factory.mktemp(name)), "model.keras")
    straight.save(path)
    at_save = {  # the saved model as it was saved (it trains on below)
        "weights": weights_of(straight),
        "optimizer": [np.array(v) for v in straight.optimizer.variables],
        "iterations": int(straight.optimizer.iterations.numpy()),
        "log_prob": straight.log_prob(x, labels).numpy(),
        "config": straight.get_config(),
        "actnorm_initialized": [float(layer.initialized.numpy()) for layer in actnorm_layers(straight)],
    }
    loaded = keras.models.load_model(path)  # safe_mode=True is the default
    at_load = {
        "weights": weights_of(loaded),
        "optimizer": [np.array(v) for v in loaded.optimizer.variables],
        "log_prob": loaded.log_prob(x, labels).numpy(),
    }
    straight_losses = first_losses + straight.fit(data, epochs=1, verbose=0, shuffle=False).history["loss"]
    monkeypatch = pytest.MonkeyPatch()
    counter = InitializeCounter(monkeypatch)
    try:
        second_losses = loaded.fit(data, epochs=1, verbose=0, shuffle=False).history["loss"]
    finally:
        monkeypatch.undo()
    return {
        "name": name,
        "x": x,
        "labels": labels,
        "path": path,
        "straight": straight,
        "straight_losses": straight_losses,
        "resumed": loaded,
        "resumed_losses": first_losses + second_losses,
        "at_save": at_save,
        "at_load": at_load,
        "initialize_calls_after_load": counter.calls,
    }


def test_load_gives_the_same_class_config_and_weights(runs):
    saved, at_save, at_load, loaded = runs["straight"], runs["at_save"], runs["at_load"], runs["resumed"]
    assert type(loaded) is type(saved)
    assert loaded.get_config() == at_save["config"] == saved.get_config()
    # Keras restores by structure (auto-named sub-layers get new numbers).
    assert [w.shape for w in loaded.weights] == [w.shape for w in saved.weights]
    assert len(at_load["weights"]) == len(at_save["weights"])
    for got, want in zip(at_load["weights"], at_save["weights"]):
        assert np.array_equal(got, want)


def test_loaded_log_prob_is_bit_identical(runs):
    want = runs["at_save"]["log_prob"]
    assert np.all(np.isfinite(want))
    assert np.array_equal(runs["at_load"]["log_prob"], want)


def test_loaded_samples_match_for_the_same_seed(tmp_path):
    # A fresh load (the fixture's loaded model has trained on since).
    model = new_model("glow-image-num_classes")
    x, labels = make_data(model)
    model.initialize((x, labels))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    context = np.array([0, 1, 2, 2], dtype="int32")
    want = model.sample(4, temperature=0.7, seed=11, context=context).numpy()
    got = loaded.sample(4, temperature=0.7, seed=11, context=context).numpy()
    assert np.array_equal(got, want)
    assert not np.array_equal(got, loaded.sample(4, temperature=0.7, seed=12, context=context).numpy())
    for name in ("glow-vector", "glow-image"):
        model = new_model(name)
        model.initialize(make_data(model)[0])
        model.save(path)
        loaded = keras.models.load_model(path)
        assert np.array_equal(loaded.sample(3, 0.9, seed=5).numpy(), model.sample(3, 0.9, seed=5).numpy())


def test_optimizer_state_survives_save_and_load(runs):
    at_save, at_load = runs["at_save"], runs["at_load"]
    want = at_save["optimizer"]
    assert at_save["iterations"] == NUM_EXAMPLES // BATCH
    assert len(at_load["optimizer"]) == len(want) > 1
    for got, w in zip(at_load["optimizer"], want):
        assert np.array_equal(got, w)
    moments = [v for v in want if v.ndim > 0]
    assert any(np.any(m != 0) for m in moments), "Adam's moments were never written"


def test_training_resumes_exactly_after_save_and_load(runs):
    np.testing.assert_allclose(runs["resumed_losses"], runs["straight_losses"], rtol=1e-6, atol=1e-6)
    assert runs["resumed_losses"][1] != runs["resumed_losses"][0]
    for got, want in zip(weights_of(runs["resumed"]), weights_of(runs["straight"])):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert int(runs["resumed"].optimizer.iterations.numpy()) == 2 * NUM_EXAMPLES // BATCH


def test_actnorm_is_not_reinitialised_after_loading(runs):
    loaded, saved = runs["resumed"], runs["straight"]
    layers = actnorm_layers(loaded)
    if not layers:
        pytest.skip(f"{runs['name']} has no ActNorm")
    assert loaded.is_initialized
    assert runs["initialize_calls_after_load"] == 0
    assert runs["at_save"]["actnorm_initialized"] == [1.0] * len(layers)
    for _layer, original in zip(actnorm_layers(saved), layers, strict=True):
        assert float(original.initialized.numpy()) == 1.0
        # The saved (data-dependent, then trained) values came back, not zeros.
        assert np.any(np.array(original.log_scale) != 0)
    data = runs["x"] if runs["labels"] is None else (runs["x"], runs["labels"])
    assert loaded.initialize(data) == 0  # a conditional model's data come with their contexts


def test_compile_builds_the_optimizer_so_every_save_holds_its_state(tmp_path, recwarn):
    """Without the build in compile, Keras skips the optimizer on load with a warning."""
    model = new_model("glow-vector")
    assert model.optimizer.built
    assert len(model.optimizer.variables) > 1
    model.save(tmp_path / "fresh.keras")
    model.save_weights(tmp_path / "fresh.weights.h5")
    loaded = keras.models.load_model(tmp_path / "fresh.keras")
    again = new_model("glow-vector")
    again.load_weights(tmp_path / "fresh.weights.h5")
    skipped = [w for w in recwarn if "Skipping variable loading" in str(w.message)]
    assert not skipped, [str(w.message) for w in skipped]
    assert loaded.optimizer.built and len(loaded.optimizer.variables) == len(model.optimizer.variables)
    assert loaded.get_compile_config() == model.get_compile_config()


@pytest.mark.slow  # two runs of four epochs each, one crashed and resumed
def test_checkpoint_and_backup_resume_the_loss_curve(tmp_path):
    """ModelCheckpoint files load bit for bit; BackupAndRestore after a crash gives the same curve."""
    name, epochs, crash_at = "glow-image", 4, 2
    x, labels = make_data(MODELS[name](), seed=1)
    data = make_dataset(x, labels)

    class Losses(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.values = []

        def on_epoch_end(self, epoch, logs=None):
            self.values.append(logs["loss"])

    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == crash_at:
                raise RuntimeError("simulated preemption")

    straight, straight_losses = new_model(name), Losses()
    checkpoints = tmp_path / "checkpoints"
    straight.fit(
        data,
        epochs=epochs,
        verbose=0,
        shuffle=False,
        callbacks=[
            straight_losses,
            keras.callbacks.ModelCheckpoint(str(checkpoints / "epoch_{epoch:02d}.keras")),
            keras.callbacks.ModelCheckpoint(
                str(checkpoints / "epoch_{epoch:02d}.weights.h5"), save_weights_only=True
            ),
        ],
    )
    assert sorted(os.listdir(checkpoints)) == sorted(
        [f"epoch_{e:02d}.keras" for e in range(1, epochs + 1)]
        + [f"epoch_{e:02d}.weights.h5" for e in range(1, epochs + 1)]
    )
    last = keras.models.load_model(str(checkpoints / f"epoch_{epochs:02d}.keras"))
    assert np.array_equal(last.log_prob(x).numpy(), straight.log_prob(x).numpy())
    assert int(last.optimizer.iterations.numpy()) == epochs * NUM_EXAMPLES // BATCH
    # A freshly compiled model takes the weights and the optimizer state from a weights file.
    from_weights = new_model(name)
    from_weights.load_weights(str(checkpoints / f"epoch_{epochs:02d}.weights.h5"))
    assert np.array_equal(from_weights.log_prob(x).numpy(), straight.log_prob(x).numpy())
    for got, want in zip(from_weights.optimizer.variables, straight.optimizer.variables):
        assert np.array_equal(np.array(got), np.array(want))

    backup = str(tmp_path / "backup")
    crashed, before = new_model(name), Losses()
    with pytest.raises(RuntimeError, match="simulated preemption"):
        crashed.fit(
            data,
            epochs=epochs,
            verbose=0,
            shuffle=False,
            callbacks=[keras.callbacks.BackupAndRestore(backup), before, Crash()],
        )
    assert len(before.values) == crash_at
    # A new process: a fresh model, the same backup folder.
    restarted, after = new_model(name), Losses()
    history = restarted.fit(
        data,
        epochs=epochs,
        verbose=0,
        shuffle=False,
        callbacks=[keras.callbacks.BackupAndRestore(backup), after],
    )
    assert len(history.history["loss"]) == epochs - crash_at
    np.testing.assert_allclose(before.values + after.values, straight_losses.values, rtol=1e-6, atol=1e-6)
    for got, want in zip(weights_of(restarted), weights_of(straight)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert int(restarted.optimizer.iterations.numpy()) == epochs * NUM_EXAMPLES // BATCH
    assert not os.path.exists(backup), "BackupAndRestore keeps its folder only until fit ends"
