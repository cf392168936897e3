"""Keras training conventions: warmup with ReduceLROnPlateau, TensorBoard samples, PNG grids, names.

Models are tiny (an 8×8 Glow with one step, a 2-D RealNVP with two couplings);
every test reads back what was written (event files, PNGs, saved optimizers).
"""

from __future__ import annotations

import json
import math
import os
import warnings
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import tfflows
from tfflows import data
from tfflows.backup import ResumableBackup
from tfflows.callbacks import SampleGrid, TensorBoardSamples, samples_picture, save_samples_picture
from tfflows.cli import build_parser
from tfflows.images import grid_picture, save_grid, text_mask, to_uint8
from tfflows.training import ScheduledAdam, WarmupSchedule, make_optimizer

from helpers import CliError, cli

RNG = np.random.default_rng(0)
POINTS = (RNG.normal(size=(64, 2)) * [1.0, 0.5]).astype("float32")
PIXELS = (RNG.integers(0, 32, size=(32, 8, 8, 1)) + RNG.random((32, 8, 8, 1))).astype("float32")


def vector_model(optimizer=None):
    keras.utils.set_random_seed(0)
    model = tfflows.VectorRealNVP(2, num_steps=2, width=8)
    model.compile(optimizer=optimizer or make_optimizer(1e-2, warmup_steps=4), jit_compile=False)
    return model


def glow(**kw):
    keras.utils.set_random_seed(0)
    model = tfflows.Glow((8, 8, 1), num_levels=1, num_steps=1, width=8, num_bits=5, **kw)
    model.compile(optimizer=make_optimizer(1e-3, warmup_steps=2), jit_compile=False)
    return model


def plateau(**kw) -> keras.callbacks.ReduceLROnPlateau:
    # min_delta larger than any change of the loss: every epoch counts as a plateau.
    return keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e6, **kw)


# -- 1. warmup and ReduceLROnPlateau ---------------------------------------------------------


def rates(optimizer, steps) -> np.ndarray:
    out = []
    for step in steps:
        optimizer.iterations.assign(step)
        out.append(float(optimizer.learning_rate))
    return np.array(out)


def test_make_optimizer_keeps_the_warmup_curve_of_tfflows_train():
    """The CLI's optimizer (lr 1e-3, 200 warmup steps): (t + 1)/200 · 1e-3, then 1e-3 (CosineDecay)."""
    opt = make_optimizer(1e-3, 200)
    assert isinstance(opt, ScheduledAdam) and float(opt.learning_rate_scale) == 1.0
    assert isinstance(opt.schedule.schedule, keras.optimizers.schedules.CosineDecay)
    steps = [0, 1, 49, 99, 198, 199, 200, 5000]
    want = np.array([np.float32(1e-3) * np.float32(min(1.0, (t + 1) / 200)) for t in steps])
    np.testing.assert_allclose(rates(opt, steps), want, rtol=1e-6)
    schedule = WarmupSchedule(1e-3, 200)  # the schedule it replaced, kept for saved models
    np.testing.assert_allclose(rates(opt, steps), [float(schedule(t)) for t in steps], rtol=1e-6)


def test_make_optimizer_keeps_the_cosine_decay_curve():
    opt = make_optimizer(2e-3, warmup_steps=10, decay_steps=100)
    steps = [0, 9, 10, 35, 60, 110, 500]
    want = [
        2e-3 * (t + 1) / 10 if t < 10 else 2e-3 * 0.5 * (1 + math.cos(math.pi * min(1.0, (t - 9) / 100)))
        for t in steps
    ]
    np.testing.assert_allclose(rates(opt, steps), want, rtol=1e-6, atol=1e-12)


def test_a_learning_rate_write_scales_the_schedule_that_follows():
    """Setting the rate at step t sets s = η / schedule(t); every later step is s · schedule."""
    opt = make_optimizer(1e-2, warmup_steps=10, clipnorm=None)
    w = keras.Variable([1.0, -2.0])
    opt.build([w])
    opt.learning_rate = 5e-4  # step 0: the schedule says 1e-3
    np.testing.assert_allclose(float(opt.learning_rate_scale), 0.5, rtol=1e-6)
    moves = []
    for _ in range(3):
        before = w.numpy().copy()
        opt.apply([tf.constant([1.0, -1.0])], [w])
        moves.append(np.abs(w.numpy() - before))
    # Adam's step with a constant gradient is the rate itself (m̂ / √v̂ = ±1), up to epsilon.
    np.testing.assert_allclose(np.array(moves)[:, 0], [5e-4, 1e-3, 1.5e-3], rtol=1e-4)
    with pytest.raises(ValueError, match=r"learning_rate must be a finite number >= 0, got nan"):
        opt.learning_rate = float("nan")


@pytest.fixture(scope="module")
def plateau_run(tmp_path_factory):
    """``vector_model()`` (``make_optimizer(1e-2, warmup_steps=4)``) fitted 3 epochs of 4 steps
    with ``plateau()`` and a ResumableBackup that keeps its checkpoint: (model, history, backup).

    Shared by the tests that only read this run (a new model traces its train step again);
    they must not train it further.
    """
    model = vector_model()
    backup = str(tmp_path_factory.mktemp("plateau") / "backup")
    history = model.fit(
        POINTS,
        batch_size=16,
        epochs=3,
        verbose=0,
        callbacks=[plateau(), ResumableBackup(backup, delete_checkpoint=False)],
    ).history
    return model, history, backup


@pytest.mark.slow
@pytest.mark.parametrize("warmup", [0, 4], ids=["default", "warmup"])
def test_reduce_lr_on_plateau_with_make_optimizer(warmup, request):
    """The rate in the history halves every plateau; with warmup it is the schedule, scaled."""
    if warmup:
        model, history, _ = request.getfixturevalue("plateau_run")  # make_optimizer(1e-2, warmup_steps=4)
        opt = model.optimizer
    else:
        opt = make_optimizer()
        model = vector_model(opt)
        history = model.fit(POINTS, batch_size=16, epochs=3, callbacks=[plateau()], verbose=0).history
    peak = 1e-3 if not warmup else 1e-2
    # Epoch 1 sets the best loss; epochs 2 and 3 are plateaus (4 steps each: warmup is over).
    # The callback logs the rate an epoch trained with, then lowers it.
    np.testing.assert_allclose(history["learning_rate"], [peak, peak, peak / 2], rtol=1e-6)
    np.testing.assert_allclose(float(opt.learning_rate), peak / 4, rtol=1e-6)
    if warmup:
        assert int(opt.iterations) == 12 > warmup
        np.testing.assert_allclose(float(opt.learning_rate_scale), 0.25, rtol=1e-6)


@pytest.mark.slow
def test_a_reduction_during_warmup_keeps_warming_up():
    opt = make_optimizer(1e-2, warmup_steps=100)
    model = vector_model(opt)
    history = model.fit(POINTS, batch_size=16, epochs=3, callbacks=[plateau()], verbose=0).history
    # The history has the rate after each epoch's 4 steps, before that epoch's reduction:
    # schedule(4k) · scale, the scale halved after epochs 2 and 3.
    want = [1e-2 * 5 / 100 * 1.0, 1e-2 * 9 / 100 * 1.0, 1e-2 * 13 / 100 * 0.5]
    np.testing.assert_allclose(history["learning_rate"], want, rtol=1e-5)
    np.testing.assert_allclose(float(opt.learning_rate), 1e-2 * 13 / 100 * 0.25, rtol=1e-5)
    opt.iterations.assign(50)  # still warming up, at a quarter of the rate
    np.testing.assert_allclose(float(opt.learning_rate), 1e-2 * 51 / 100 * 0.25, rtol=1e-5)


@pytest.mark.slow
def test_the_scale_is_saved_and_resumed(tmp_path, plateau_run):
    model, _, backup = plateau_run
    assert float(model.optimizer.learning_rate_scale) == pytest.approx(0.25)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, ScheduledAdam)
    assert float(loaded.optimizer.learning_rate_scale) == pytest.approx(0.25)
    assert float(loaded.optimizer.learning_rate) == pytest.approx(float(model.optimizer.learning_rate))

    fresh = vector_model()
    resume = ResumableBackup(backup)
    history = fresh.fit(POINTS, batch_size=16, epochs=4, verbose=0, callbacks=[resume]).history
    assert resume.initial_epoch == 3 and len(history["loss"]) == 1
    assert float(fresh.optimizer.learning_rate_scale) == pytest.approx(0.25)
    assert int(fresh.optimizer.iterations) == 16


@pytest.mark.slow
def test_optimizer_state_saved_by_the_old_make_optimizer_still_loads(tmp_path):
    """Adam on a WarmupSchedule (no scale variable): load_model, and load_weights into a ScheduledAdam."""
    old = vector_model(keras.optimizers.Adam(WarmupSchedule(1e-2, 4), global_clipnorm=50.0))
    old.fit(POINTS, batch_size=16, epochs=1, verbose=0)
    old.save(tmp_path / "old.keras")
    loaded = keras.models.load_model(tmp_path / "old.keras")
    assert float(loaded.optimizer.learning_rate) == pytest.approx(float(old.optimizer.learning_rate))

    new = vector_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Keras warns "Skipping variable loading" on a mismatch
        new.load_weights(tmp_path / "old.keras")
    assert int(new.optimizer.iterations) == 4 and float(new.optimizer.learning_rate_scale) == 1.0
    moments = [v for v in new.optimizer.variables if "momentum" in v.path or "velocity" in v.path]
    old_moments = [v for v in old.optimizer.variables if "momentum" in v.path or "velocity" in v.path]
    assert moments and len(moments) == len(old_moments)
    for a, b in zip(moments, old_moments):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# -- 2. TensorBoard ---------------------------------------------------------------------------


def events(folder: Path) -> list:
    found = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                found.append((value.tag, event.step, value))
    return found


@pytest.fixture(scope="module")
def glow_run(tmp_path_factory):
    """``glow()`` fitted 2 epochs of 4 batches with TensorBoard, TensorBoardSamples and SampleGrid:
    (model, history, folder). One fit (one trace of the train step) for the tests of those callbacks,
    which read what it wrote and must not train the model further.
    """
    model = glow()
    folder = tmp_path_factory.mktemp("glow_run")
    history = model.fit(
        PIXELS,
        batch_size=8,
        epochs=2,
        verbose=0,
        callbacks=[
            keras.callbacks.TensorBoard(str(folder / "tb"), update_freq=1),
            TensorBoardSamples(str(folder / "tb"), temperatures=(0.5, 1.0), per_row=3, num_bits=5),
            SampleGrid(str(folder / "samples"), (1.0,), per_row=2, num_bits=5, value_range=(0, 16)),
        ],
    ).history
    return model, history, folder


@pytest.mark.slow
def test_tensorboard_gets_step_scalars_and_a_sample_grid_per_epoch(glow_run):
    model, _, folder = glow_run
    log_dir = folder / "tb"
    scalars = events(log_dir / "train")
    steps = {tag: sorted(step for t, step, _ in scalars if t == tag) for tag, _, _ in scalars}
    assert steps["batch_loss"] == list(range(1, 9))  # 2 epochs × 4 batches
    assert steps["batch_bits_per_dim"] == list(range(1, 9))
    losses = [float(tf.make_ndarray(v.tensor)) for t, _, v in scalars if t == "batch_bits_per_dim"]
    assert all(np.isfinite(losses)) and min(losses) > 0
    images = [(step, v) for t, step, v in events(log_dir / "samples") if t == "samples"]
    assert [step for step, _ in images] == [0, 1]
    want = samples_picture(model, (0.5, 1.0), per_row=3, num_bits=5)
    for _, value in images:
        width, height, png = tf.make_ndarray(value.tensor)
        picture = tf.io.decode_png(png).numpy()
        assert (int(width), int(height)) == (want.shape[1], want.shape[0])
        assert picture.shape == want.shape
        assert (picture[:, :40] == 0).any()  # the labels' ink


# -- 3. PNG grids -----------------------------------------------------------------------------


def test_to_uint8_maps_the_top_level_to_white():
    assert to_uint8(np.full((1, 2, 2, 1), 31.5), num_bits=5).max() == 255
    assert to_uint8(np.full((1, 2, 2, 1), 0.2), num_bits=5).max() == 0
    digits_top = to_uint8(np.array([0.5, 8.5, 16.5, 20.0]), num_bits=5, value_range=(0, 16))
    np.testing.assert_array_equal(digits_top, [0, 128, 255, 255])
    with pytest.raises(ValueError, match=r"low < high, got \(3, 3\)"):
        to_uint8(np.zeros(2), value_range=(3, 3))


def test_the_digits_fill_the_grey_range():
    """Levels 0..16 of 5 bits: their top level is white, not the grey 16/31·255 = 132 of before."""
    from tfflows.cli.common import pixel_range

    images = data.load_images("digits", "train")
    assert pixel_range(images, 5, 5) == [0, 16]
    assert pixel_range(images, 3, 5) == [0, 4]
    assert to_uint8(np.array([16.5]), 5).item() == 132  # what the default range draws
    assert to_uint8(np.array([16.5]), 5, value_range=pixel_range(images, 5, 5)).item() == 255


def test_sample_png_has_labelled_rows_and_the_expected_size(tmp_path):
    model = glow()
    path = tmp_path / "samples.png"
    save_samples_picture(model, str(path), [0.5, 0.85], per_row=10, num_bits=5)
    picture = np.array(Image.open(path))
    # 8×8 images drawn 8× (64 // 8): rows (8 + 2)·8 = 80 high; text a third of that, at most
    # 24 pixels, in Pillow's own font, with a margin of half the text size on either side.
    masks = {text: text_mask(text, 24) for text in ("T=0.50", "T=0.85")}
    label = max(m.shape[1] for m in masks.values()) + 2 * 12
    assert picture.shape == (2 * 80, label + (10 * 9 + 1) * 8)

    def ink(mask):
        ys, xs = np.nonzero(mask)
        return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]

    for row, text in enumerate(masks):
        band = picture[row * 80 : (row + 1) * 80, :label] == 0
        np.testing.assert_array_equal(ink(band), ink(masks[text]))
    assert picture[:, label:].max() > 0


def test_a_grid_of_the_top_level_is_white_and_labels_are_checked(tmp_path):
    top = to_uint8(np.full((3, 4, 4, 1), 2**5 - 0.5), num_bits=5)
    bottom = to_uint8(np.zeros((3, 4, 4, 1)), num_bits=5)
    path = tmp_path / "g.png"
    save_grid(str(path), [top, bottom], scale=2, labels=["T=1.00", "T=0.50"])
    picture = np.array(Image.open(path))
    cells = picture[:, -(3 * 5 + 1) * 2 :]  # three 4-pixel images a pixel apart, drawn 2×
    assert cells[2:10, 2:10].min() == 255  # the first image of the top row, inside its pad
    assert cells[12 + 2 : 12 + 10, 2:10].max() == 0
    with pytest.raises(ValueError, match=r"one label per row \(2\), got 1 labels"):
        grid_picture([top, bottom], labels=["T=1.00"])
    with pytest.raises(ValueError, match=r"one line of text, got 'a\\nb'"):
        text_mask("a\nb")
    with pytest.raises(ValueError, match=r"size must be a positive integer, got 0"):
        text_mask("1", 0)
    assert text_mask("Ankle boot", 12).any() and text_mask("", 12).shape == (12, 0)
    with pytest.raises(ValueError, match=r"one column label per image of a row \(3\), got 2"):
        grid_picture([top, bottom], column_labels=["a", "b"])


def test_grids_name_the_epoch_and_each_class(tmp_path):
    """A conditional model's grid: its title says the epoch and bits/dim, its columns the classes."""
    from tfflows.callbacks import epoch_title

    assert epoch_title(2, {"bits_per_dim": 3.14159, "val_bits_per_dim": 2.5}) == (
        "epoch 3 · 2.500 bits/dim (validation)"
    )
    assert epoch_title(0, {"nats_per_dim": 1.25}) == "epoch 1 · 1.250 nats/dim (training)"
    assert epoch_title(4, None) == "epoch 5"
    model = tfflows.Glow((8, 8, 1), num_levels=2, num_steps=1, width=8, num_bits=5, num_classes=3)
    plain = samples_picture(model, [1.0], num_bits=5, labels=True)
    named = samples_picture(model, [1.0], num_bits=5, title="epoch 3", class_names=["Coat", "Bag", "Shirt"])
    assert named.shape[1] == plain.shape[1] and named.shape[0] > plain.shape[0]  # a title band on top
    titled = samples_picture(model, [1.0], num_bits=5, title="epoch 3")
    assert not np.array_equal(named, titled)  # the class names differ from the class numbers
    np.testing.assert_array_equal(named[-80:], plain[-80:])  # the samples themselves are the same


def test_sample_grid_callback_writes_a_png_per_epoch_with_the_data_range(glow_run):
    from tfflows.callbacks import epoch_title

    model, history, folder = glow_run
    folder = folder / "samples"
    assert sorted(os.listdir(folder)) == ["samples_epoch_001.png", "samples_epoch_002.png"]
    picture = np.array(Image.open(folder / "samples_epoch_002.png"))
    last = {key: values[-1] for key, values in history.items()}
    title = epoch_title(1, last)
    assert title.startswith("epoch 2 · ") and title.endswith(" bits/dim (training)")
    want = samples_picture(model, (1.0,), per_row=2, num_bits=5, value_range=(0, 16), title=title)
    np.testing.assert_array_equal(picture, want[..., 0])


# -- 4. one name per idea ---------------------------------------------------------------------


def test_realnvp_num_scales_is_a_deprecated_alias_of_num_levels():
    kw = dict(depth=1, width=4, num_bits=5)
    new = tfflows.RealNVP((8, 8, 1), num_levels=3, **kw)
    with pytest.warns(DeprecationWarning, match="num_scales is deprecated.*use num_levels"):
        old = tfflows.RealNVP((8, 8, 1), num_scales=3, **kw)
    assert old.num_levels == new.num_levels == 3
    assert old.get_config() == {**new.get_config(), "name": old.name}
    assert "num_scales" not in new.get_config()
    assert [w.shape for w in old.weights] == [w.shape for w in new.weights]
    assert tfflows.RealNVP((8, 8, 1), **kw).num_levels == 2  # the default is unchanged
    with pytest.raises(
        ValueError,
        match="expected num_levels or its deprecated old name num_scales, "
        "not both; got num_levels=2 and num_scales=3",
    ):
        tfflows.RealNVP((8, 8, 1), num_levels=2, num_scales=3, **kw)


def test_a_keras_file_saved_with_num_scales_still_loads(tmp_path):
    model = tfflows.RealNVP((8, 8, 1), num_levels=1, depth=1, width=4, num_bits=5)
    for v in model.trainable_variables:  # away from the identity start, so weights matter
        v.assign(v + 0.05 * RNG.standard_normal(v.shape).astype("float32"))
    model.save(tmp_path / "new.keras")
    # The same file as the version before the rename wrote it: num_scales in the config.
    with zipfile.ZipFile(tmp_path / "new.keras") as src, zipfile.ZipFile(tmp_path / "old.keras", "w") as dst:
        for item in src.infolist():
            content = src.read(item)
            if item.filename == "config.json":
                config = json.loads(content)
                config["config"]["num_scales"] = config["config"].pop("num_levels")
                content = json.dumps(config).encode()
            dst.writestr(item, content)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # a saved file is not the user's code
        loaded = keras.models.load_model(tmp_path / "old.keras")
    assert loaded.num_levels == 1
    np.testing.assert_allclose(loaded.log_prob(PIXELS).numpy(), model.log_prob(PIXELS).numpy(), rtol=1e-6)


def test_make_dataset_n_bits_is_a_deprecated_alias_of_num_bits():
    images = data.load_images("digits", "test")[:16]
    new = data.make_dataset(images, batch_size=16, num_bits=3, source_bits=5, seed=1)
    with pytest.warns(DeprecationWarning, match="make_dataset: the argument n_bits is deprecated"):
        old = data.make_dataset(images, batch_size=16, n_bits=3, source_bits=5, seed=1)
    np.testing.assert_array_equal(next(iter(old)).numpy(), next(iter(new)).numpy())
    assert next(iter(new)).numpy().max() < 8  # 3 bits
    with pytest.raises(ValueError, match="expected num_bits or its deprecated old name n_bits, not both"):
        data.make_dataset(images, num_bits=3, n_bits=3, source_bits=5)
    with pytest.raises(ValueError, match=r"num_bits must be in 1..source_bits=5"):
        data.make_dataset(images, num_bits=6, source_bits=5)


@pytest.mark.slow
def test_cli_num_bits_and_its_old_spelling(tmp_path):
    with pytest.raises(CliError, match="not allowed with argument"):
        cli("train", "--num-bits", "4", "--n-bits", "4", "--out", str(tmp_path / "x"))
    out = tmp_path / "run"
    cli(
        "train",
        "--n-bits",
        "4",
        "--epochs",
        "1",
        "--max-train",
        "32",
        "--levels",
        "1",
        "--steps",
        "1",
        "--width",
        "8",
        "--batch-size",
        "16",
        "--log-every",
        "1",
        "--out",
        str(out),
        "--verbose",
        "0",
    )
    results = json.loads((out / "results.json").read_text())
    assert results["num_bits"] == results["n_bits"] == 4
    assert results["pixel_range"] == [0, 8]  # digits 0..16 at 4 of their 5 bits
    assert [t for t, _, _ in events(out / "tensorboard" / "samples")] == ["samples"]
    assert {"batch_loss", "batch_bits_per_dim"} <= {t for t, _, _ in events(out / "tensorboard" / "train")}
    picture = np.array(Image.open(out / "samples" / "samples_epoch_001.png"))
    assert picture.ndim == 2 and (picture == 0).any()


def test_dense_coupling_conditioners_take_hidden_units_and_num_hidden():
    """Couplings with an MLP say hidden_units / num_hidden as the vector models do; old names warn."""
    from tfflows.layers import CouplingLayer, SplineCouplingLayer

    for make in (
        lambda **kw: CouplingLayer(mask="half", dtype="float64", **kw),
        lambda **kw: SplineCouplingLayer(mask="half", num_bins=3, dtype="float64", **kw),
    ):
        new = make(hidden_units=6, num_hidden=3)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            old = make(hidden_channels=6, num_blocks=3)
        said = [str(w.message) for w in caught if w.category is DeprecationWarning]
        assert any("hidden_channels is deprecated" in s and "use hidden_units" in s for s in said), said
        assert any("num_blocks is deprecated" in s and "use num_hidden" in s for s in said), said
        config = new.get_config()
        assert config["hidden_units"] == 6 and config["num_hidden"] == 3
        assert "hidden_channels" not in config and "num_blocks" not in config
        assert {**old.get_config(), "name": None} == {**config, "name": None}
        for layer in (new, old):
            layer.build((None, 4))
        assert [w.shape for w in old.weights] == [w.shape for w in new.weights]
        # 2 of the 4 features condition; 3 hidden layers of 6 units.
        assert [tuple(dense.kernel.shape) for dense in new.conditioner.hidden] == [(2, 6), (6, 6), (6, 6)]
        saved = {**config, "hidden_channels": 6, "num_blocks": 3}  # as configs were saved before
        del saved["hidden_units"], saved["num_hidden"]
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            assert type(new).from_config(saved).get_config()["hidden_units"] == 6
        with pytest.raises(
            ValueError, match="hidden_units or its deprecated old name hidden_channels, not both"
        ):
            make(hidden_units=6, hidden_channels=6)
    conv = CouplingLayer(mask="channel", conditioner="convnet", hidden_channels=8)
    assert conv.get_config()["hidden_channels"] == 8 and "hidden_units" not in conv.get_config()
    with pytest.raises(
        ValueError,
        match=r"hidden_units sizes a dense \('mlp'\) conditioner; expected "
        r"hidden_channels and num_blocks for this one, got hidden_units=8",
    ):
        CouplingLayer(mask="channel", conditioner="convnet", hidden_units=8)


def test_density_pictures_show_standardized_features_the_user_names():
    """Vector data in any units fill the picture; --plot-dims picks the pair; bad pairs are refused."""
    from tfflows.callbacks import density_array

    rng = np.random.default_rng(0)
    points = rng.normal(size=(5000, 3)) * [1.0, 1000.0, 0.001] + [0.0, 5e4, -7.0]
    picture = density_array(points, bins=50, dims=(1, 2)) < 255  # ink where samples fell
    rows, cols = np.nonzero(picture)
    # Standardized: ±3σ of each feature spans most of [-4.5, 4.5], centred on the picture.
    assert abs(rows.mean() - 50) < 5 and abs(cols.mean() - 50) < 5 and np.ptp(cols) > 50
    raw = density_array(points, bins=50, dims=(1, 2), standardize=False) < 255
    assert raw.sum() < picture.sum() / 10  # in raw units almost every sample falls off the picture
    assert not np.array_equal(picture, density_array(points, bins=50) < 255)
    with pytest.raises(ValueError, match=r"dims must be two distinct features in 0\.\.2, got \(0, 3\)"):
        density_array(points, dims=(0, 3))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--plot-dims", "1,1"])
