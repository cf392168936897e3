"""Data as TF users hold it: uint8 pixels, TFDS dict batches, image folders, mis-scaled data.

Covers ``fit`` / ``evaluate`` / ``predict`` / ``log_prob`` on integer pixels
(the SavedModel's bin-centre rule, noise in training), TFDS-style dicts,
``make_dataset`` on a Dataset, :func:`tfflows.data.image_folder`, and the
first-batch checks of ``fit``.
"""

from __future__ import annotations

import math
import os
import textwrap
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfflows import Glow, RealNVP, VectorRealNVP
from tfflows.data import bin_centres, image_folder, integer_pixel_bits, make_dataset, pixel_levels
from tfflows.io import atomic_path
from tfflows.training.step import step_seed

from helpers import registered_models, run_script

SHAPE = (8, 8, 1)


def stripes(n: int, seed: int = 0, shape=SHAPE) -> np.ndarray:
    """uint8 images of stripes with random phase and noise: something a flow can learn."""
    rng = np.random.default_rng(seed)
    h, w, c = shape
    yy, xx = np.mgrid[0:h, 0:w]
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    img = 128 + 100 * np.sin(0.8 * xx[None] + phase) * np.cos(0.4 * yy[None])
    img = img[..., None] + 6 * rng.standard_normal((n, h, w, c))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def glow(**kw) -> Glow:
    return Glow(SHAPE, num_levels=2, num_steps=1, width=8, **kw)


def realnvp(**kw) -> RealNVP:
    return RealNVP(SHAPE, num_levels=2, depth=1, width=8, **kw)


# Every registered image model (helpers.registered_models), at its own size and bit depth.
MODELS = registered_models("image")


def compiled(make, jit: bool = False, **kw):
    keras.utils.set_random_seed(0)
    model = make(**kw)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), jit_compile=jit)
    return model


def ours(caught) -> list[str]:
    """Messages of the warnings tfflows gave about the data."""
    return [str(w.message) for w in caught if "first training batch" in str(w.message)]


# -- integer pixels in fit, evaluate, predict, log_prob --------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_fit_on_a_uint8_pipeline_lowers_the_loss(name):
    model = compiled(MODELS[name])
    shape = model.event_shape
    images = stripes(64, shape=shape)
    ds = tf.data.Dataset.from_tensor_slices(images).shuffle(64, seed=0).batch(16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(ds, epochs=4, verbose=0).history
    assert not ours(caught)
    assert all(math.isfinite(v) for v in history["loss"])
    assert history["loss"][-1] < history["loss"][0] - 1.0, history["loss"]
    # The held-out score (bin centres, no noise) went down too.
    held = stripes(32, seed=1, shape=shape)
    trained = float(-tf.reduce_mean(model.log_prob(held)))
    untrained = compiled(MODELS[name])
    untrained.initialize(images[:64])
    assert trained < float(-tf.reduce_mean(untrained.log_prob(held))) - 1.0


@pytest.mark.slow
def test_fit_on_uint8_with_xla():
    # The smallest Glow: compiling a train step with XLA on a CPU takes long.
    keras.utils.set_random_seed(0)
    model = Glow((4, 4, 1), num_levels=1, num_steps=1, width=8, num_bits=5)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    images = stripes(32, shape=(4, 4, 1))
    before = [w.numpy().copy() for w in model.trainable_variables]
    history = model.fit(images, batch_size=16, epochs=2, verbose=0).history
    assert all(math.isfinite(v) for v in history["loss"]) and model.nonfinite_steps.numpy() == 0
    assert all(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_variables))


@pytest.mark.slow
def test_training_noise_is_uniform_fresh_every_step_and_floors_to_the_levels():
    model = compiled(glow, num_bits=5)
    x = tf.constant(stripes(16))
    levels = (x.numpy() // 8).astype(np.float32)

    @tf.function(jit_compile=True)
    def noisy(x):
        return model.spec.check_x(x, values=False, seed=step_seed(model))

    first = noisy(x).numpy()
    again = noisy(x).numpy()
    model.optimizer.iterations.assign_add(1)
    later = noisy(x).numpy()
    np.testing.assert_array_equal(np.floor(first), levels)
    np.testing.assert_array_equal(np.floor(later), levels)
    np.testing.assert_array_equal(first, again)  # stateless: keyed by the step count
    assert np.mean(first != later) > 0.99
    # A skipped (non-finite) step leaves the step count alone: the next batch still gets new noise.
    model.nonfinite_steps.assign_add(1)
    after_skip = noisy(x).numpy()
    np.testing.assert_array_equal(np.floor(after_skip), levels)
    assert np.mean(after_skip != later) > 0.99
    u = (first - levels).ravel()
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.05 and abs(u.var() - 1 / 12) < 0.01


def test_evaluate_on_uint8_equals_evaluate_on_bin_centred_floats():
    model = compiled(glow, num_bits=5)
    images = stripes(48, seed=2)
    model.initialize(images)
    centres = bin_centres(images, 5).numpy()
    np.testing.assert_array_equal(centres, images // 8 + 0.5)
    by_uint8 = model.evaluate(images, batch_size=16, verbose=0, return_dict=True)
    by_float = model.evaluate(centres, batch_size=16, verbose=0, return_dict=True)
    assert by_uint8 == by_float
    # A TFDS-style dict Dataset of the same images gives the same numbers.
    ds = tf.data.Dataset.from_tensor_slices({"image": images, "label": np.zeros(48, np.int64)})
    assert model.evaluate(ds.batch(16), verbose=0, return_dict=True) == by_float


@pytest.mark.slow  # exports and loads a SavedModel
def test_predict_on_uint8_equals_log_prob_at_bin_centres_and_the_saved_model(tmp_path, assert_close):
    from tfflows.export import export_saved_model

    model = compiled(realnvp, num_bits=5)
    images = stripes(20, seed=3)
    model.initialize(images)
    want = model.log_prob(images // 8 + 0.5).numpy()
    assert_close("predict uint8", model.predict(images, batch_size=8, verbose=0), want, atol=1e-4, rtol=1e-5)
    np.testing.assert_array_equal(model.log_prob(images).numpy(), want)
    served = tf.saved_model.load(export_saved_model(model, str(tmp_path / "1")))
    out = served.signatures["log_prob"](images=tf.constant(images))
    assert_close("saved model uint8", out["log_prob"].numpy(), want, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize(
    "dtype, scale, num_bits",
    [(np.uint8, 1, 5), (np.int32, 1, 5), (np.int64, 1, 8), (np.uint16, 257, 5), (np.uint16, 64, 10)],
    ids=["uint8", "int32", "int64", "uint16_8bit_content", "uint16_to_10_bits"],
)
def test_log_prob_reads_integer_pixels_by_their_bit_depth(dtype, scale, num_bits):
    keras.utils.set_random_seed(0)
    model = Glow(SHAPE, num_levels=1, num_steps=1, width=8, num_bits=num_bits)
    pixels = stripes(4, seed=4).astype(np.int64) * scale
    bits = 16 if dtype == np.uint16 or num_bits > 8 else 8
    assert integer_pixel_bits(dtype, num_bits) == bits
    levels = (pixels >> (bits - num_bits)) + 0.5
    np.testing.assert_array_equal(
        model.log_prob(pixels.astype(dtype)).numpy(), model.log_prob(levels.astype(np.float32)).numpy()
    )


def test_integer_pixels_out_of_their_range_or_too_few_bits_are_refused():
    model = glow(num_bits=5)
    with pytest.raises(ValueError, match=r"8-bit pixels in 0\.\.255.*got values from -3 to 7"):
        model.log_prob(np.full((1, *SHAPE), 7, np.int32) - np.eye(8, dtype=np.int32)[None, ..., None] * 10)
    # fit checks its first batch eagerly (predict and evaluate run in a graph, unchecked).
    with pytest.raises(ValueError, match=r"8-bit pixels in 0\.\.255.*got values from 0 to 300"):
        model.fit(np.full((2, *SHAPE), 300, np.int64) * np.arange(2).reshape(2, 1, 1, 1), epochs=0, verbose=0)
    ten = Glow(SHAPE, num_levels=1, num_steps=1, width=8, num_bits=10)
    with pytest.raises(ValueError, match=r"uint8 pixels hold 8 bits, fewer than the model's num_bits=10"):
        ten.log_prob(stripes(1))
    with pytest.raises(ValueError, match="must be float32 or float64, got int32"):
        VectorRealNVP(2, num_steps=1, width=4).log_prob(np.zeros((1, 2), np.int32))
    with pytest.raises(ValueError, match=r"integer pixels must have an integer dtype; got float32"):
        pixel_levels(np.zeros(3, np.float32), 8)


# -- TFDS dict batches -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("conditional", [False, True], ids=["plain", "class_conditional"])
def test_fit_on_a_tfds_style_dict_dataset_lowers_the_loss(conditional):
    # Class c has stripes of phase near c: the label says something about the image.
    n = 96
    labels = np.arange(n) % 3
    images = stripes(n, seed=5)
    ds = tf.data.Dataset.from_tensor_slices(
        {"image": images, "label": labels.astype(np.int64), "id": np.arange(n)}
    ).batch(16)
    model = compiled(glow, num_bits=5, num_classes=3 if conditional else None)
    history = model.fit(ds, epochs=4, verbose=0).history
    assert history["loss"][-1] < history["loss"][0] - 1.0, history["loss"]
    # Scoring reads the label too: predict on the dicts equals log_prob with the labels.
    context = labels[:16] if conditional else None
    np.testing.assert_allclose(
        model.predict(ds.take(1), verbose=0),
        model.log_prob(images[:16], context).numpy(),
        rtol=1e-5,
        atol=1e-3,
    )
    if conditional:
        # A different label gives a different density: the label is the context.
        other = (labels[:16] + 1) % 3
        assert not np.allclose(model.log_prob(images[:16], other), model.log_prob(images[:16], context))
        with pytest.raises(ValueError, match=r"conditional; pass context="):
            model.evaluate(tf.data.Dataset.from_tensor_slices({"image": images}).batch(16), verbose=0)


@pytest.mark.slow
def test_fit_on_a_dict_of_arrays():
    images = stripes(32, seed=6)
    model = compiled(glow, num_bits=5, num_classes=2)
    history = model.fit(
        {"image": images, "label": np.arange(32) % 2}, batch_size=16, epochs=3, verbose=0
    ).history
    assert history["loss"][-1] < history["loss"][0]


def test_a_dict_without_images_names_the_keys():
    model = compiled(glow, num_bits=5)
    ds = tf.data.Dataset.from_tensor_slices({"picture": stripes(4), "label": np.zeros(4)}).batch(2)
    with pytest.raises(ValueError, match=r"'image', 'images', 'x'.*got the keys \['label', 'picture'\]"):
        model.fit(ds, verbose=0)


# -- make_dataset on a Dataset or a dict ------------------------------------------------


def _batches(ds):
    return list(ds.as_numpy_iterator())


@pytest.mark.parametrize("form", ["images", "batched", "tuples", "dicts", "rank2", "dict_of_arrays"])
def test_make_dataset_takes_a_dataset_or_dict_in_every_form(form):
    images = stripes(10, seed=7)
    labels = np.arange(10, dtype=np.int64)
    source = {
        "images": lambda: tf.data.Dataset.from_tensor_slices(images),
        "batched": lambda: tf.data.Dataset.from_tensor_slices(images).batch(3),
        "tuples": lambda: tf.data.Dataset.from_tensor_slices((images, labels)),
        "dicts": lambda: tf.data.Dataset.from_tensor_slices({"image": images, "label": labels}),
        "rank2": lambda: tf.data.Dataset.from_tensor_slices(images[..., 0]),
        "dict_of_arrays": lambda: {"image": images, "label": labels},
    }[form]()
    with_labels = form in ("tuples", "dicts", "dict_of_arrays")
    got = _batches(make_dataset(source, batch_size=4, num_bits=5, shuffle=False))
    assert [len(b[0] if with_labels else b) for b in got] == [4, 4, 2]
    x = np.concatenate([b[0] if with_labels else b for b in got])
    assert x.dtype == np.float32 and x.shape == (10, *SHAPE)
    np.testing.assert_array_equal(np.floor(x), images // 8)
    assert np.mean(x != np.floor(x)) > 0.99  # dequantized
    if with_labels:
        np.testing.assert_array_equal(np.concatenate([b[1] for b in got]), labels)
    # Shuffled, every image still comes once per epoch, with its own label.
    mixed = _batches(make_dataset(source, batch_size=4, num_bits=5, seed=1, dequantize=False))
    xs = np.concatenate([b[0] if with_labels else b for b in mixed])
    assert sorted(map(bytes, xs.astype(np.uint8))) == sorted(map(bytes, (images // 8)))
    if with_labels:
        ys = np.concatenate([b[1] for b in mixed])
        np.testing.assert_array_equal(xs, images[ys] // 8)


def test_make_dataset_refuses_datasets_it_cannot_read():
    floats = tf.data.Dataset.from_tensor_slices(np.zeros((2, *SHAPE), np.float32))
    with pytest.raises(ValueError, match=r"integer pixels \(uint8\).*got float32"):
        make_dataset(floats)
    with pytest.raises(ValueError, match="brings its own labels"):
        make_dataset(tf.data.Dataset.from_tensor_slices(stripes(2)), labels=np.zeros(2))
    with pytest.raises(ValueError, match=r"got the keys \['label', 'pixels'\]"):
        make_dataset(tf.data.Dataset.from_tensor_slices({"pixels": stripes(2), "label": [0, 1]}))
    with pytest.raises(ValueError, match="tuples of 3 items"):
        make_dataset(tf.data.Dataset.from_tensor_slices((stripes(2), [0, 1], [0, 1])))
    with pytest.raises(ValueError, match="shuffle_buffer must be a positive integer"):
        make_dataset(stripes(2), shuffle_buffer=0)
    # Values are checked as they stream: digits-like 0..40 stated as 5-bit data.
    wide = tf.data.Dataset.from_tensor_slices(np.full((2, *SHAPE), 40, np.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"pixels must lie in \[0, 32\)"):
        _batches(make_dataset(wide, num_bits=5, source_bits=5))


# -- image folders -------------------------------------------------------------------


def write_image(path, image: np.ndarray) -> None:
    encoded = tf.io.encode_png(image) if str(path).endswith(".png") else tf.io.encode_jpeg(image, quality=95)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(encoded.numpy())


def celeb_like(n: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Smooth 218×178 images (CelebA's size) that JPEG keeps close to the original."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:218, 0:178]
    out = []
    for _ in range(n):
        a, b = rng.uniform(0.01, 0.05, 2)
        img = np.stack([127 + 100 * np.sin(a * yy + k) * np.cos(b * xx) for k in range(channels)], -1)
        out.append(np.clip(np.round(img), 0, 255).astype(np.uint8))
    return np.stack(out)


@pytest.fixture
def celeb_folder(tmp_path):
    rgb, gray = celeb_like(3), celeb_like(2, channels=1, seed=1)
    for i, image in enumerate(rgb):
        write_image(tmp_path / f"rgb_{i}.png", image)
    write_image(tmp_path / "rgb_3.jpg", rgb[0])
    for i, image in enumerate(gray):
        write_image(tmp_path / f"gray_{i}.png", image)
    write_image(tmp_path / "rgba_0.png", np.concatenate([rgb[1], np.full((218, 178, 1), 9, np.uint8)], -1))
    return tmp_path, rgb, gray


def test_image_folder_streams_celeb_a_sized_png_and_jpeg_in_any_channels(celeb_folder):
    path, rgb, gray = celeb_folder
    for channels in (3, 1):
        ds = image_folder(path, size=(64, 64), channels=channels, batch_size=4)
        batches = _batches(ds)
        assert [b.shape for b in batches] == [(4, 64, 64, channels), (3, 64, 64, channels)]
        assert all(b.dtype == np.uint8 for b in batches)
    # Sorted names: gray_0, gray_1, rgb_0, rgb_1, rgb_2, rgb_3.jpg, rgba_0. At size 178 the
    # centre crop (rows 20..197) comes through without resampling: exact for PNG.
    exact = _batches(image_folder(path, size=178, channels=3))
    np.testing.assert_array_equal(exact[2], rgb[0][20:198])
    np.testing.assert_array_equal(exact[0], np.repeat(gray[0][20:198], 3, axis=-1))
    np.testing.assert_array_equal(exact[6], rgb[1][20:198])  # alpha dropped
    assert np.mean(np.abs(exact[5].astype(int) - rgb[0][20:198])) < 2.0  # JPEG, lossy
    # A resized image is the crop's average look, not the whole frame squashed.
    small = _batches(image_folder(path, size=8, channels=3))[2].astype(float)
    assert small.shape == (8, 8, 3)
    np.testing.assert_allclose(small.mean(), rgb[0][20:198].mean(), atol=3.0)
    # crop="none" keeps the whole frame, squashed.
    squashed = _batches(image_folder(path, size=(109, 89), crop="none"))[2]
    assert squashed.shape == (109, 89, 3)
    np.testing.assert_allclose(squashed.mean(), rgb[0].mean(), atol=2.0)
    # size=None takes the first image's size.
    assert _batches(image_folder(path))[0].shape == (218, 178, 3)


def test_image_folder_reads_files_as_it_streams(tmp_path):
    write_image(tmp_path / "a.png", np.zeros((16, 16, 1), np.uint8))
    ds = image_folder(tmp_path, channels=1)
    # Replaced after the dataset was made: the stream reads it at iteration time.
    write_image(tmp_path / "a.png", np.full((16, 16, 1), 200, np.uint8))
    assert int(_batches(ds)[0].min()) == 200
    assert int(ds.cardinality()) == 1


def test_image_folder_recursive_and_shuffled(tmp_path):
    os.makedirs(tmp_path / "sub")
    for i in range(4):
        write_image(tmp_path / "sub" / f"{i}.png", np.full((8, 8, 1), 10 * i, np.uint8))
    write_image(tmp_path / "top.png", np.full((8, 8, 1), 99, np.uint8))
    assert len(_batches(image_folder(tmp_path, channels=1))) == 1
    ds = image_folder(tmp_path, channels=1, recursive=True, shuffle=True, seed=0)
    epochs = [[int(b[0, 0, 0]) for b in _batches(ds)] for _ in range(3)]
    assert all(sorted(e) == [0, 10, 20, 30, 99] for e in epochs)
    assert len({tuple(e) for e in epochs}) > 1  # a fresh order each epoch


@pytest.mark.slow
def test_fit_on_an_image_folder(celeb_folder):
    path = celeb_folder[0]
    ds = image_folder(path, size=8, channels=1, batch_size=4, num_levels=2)
    model = compiled(glow, num_bits=5)
    history = model.fit(ds, epochs=2, verbose=0).history
    assert all(math.isfinite(v) for v in history["loss"])
    assert model.is_initialized


def test_image_folder_errors_name_the_problem(tmp_path, celeb_folder):
    with pytest.raises(ValueError, match=r"no folder at '.*missing'"):
        image_folder(tmp_path / "missing")
    empty = tmp_path / "empty"
    os.makedirs(empty / "inner")
    with atomic_path(empty / "notes.txt") as tmp, open(tmp, "w") as f:
        f.write("not an image")
    with pytest.raises(
        ValueError,
        match=r"no png/jpg/jpeg files in .*1 other files, e.g. 'notes.txt'"
        r".*recursive=True.*inner",
    ):
        image_folder(empty)
    with pytest.raises(ValueError, match=r"is a file"):
        image_folder(empty / "notes.txt")
    broken = tmp_path / "broken"
    os.makedirs(broken)
    write_image(broken / "good.png", np.zeros((8, 8, 3), np.uint8))
    with atomic_path(broken / "bad.png") as tmp, open(tmp, "wb") as f:
        f.write(b"GIF89a not a png at all")
    with pytest.raises(ValueError, match=r"bad\.png' is not a PNG or JPEG image"):
        image_folder(broken)
    path = celeb_folder[0]
    with pytest.raises(
        ValueError,
        match=r"num_levels=3.*divisible by 8; got size 218x178\. "
        r"Pass size=\(216, 176\)",
    ):
        image_folder(path, size=(218, 178), num_levels=3)
    with pytest.raises(ValueError, match="channels must be 1 \\(grayscale\\) or 3"):
        image_folder(path, channels=4)
    with pytest.raises(ValueError, match="crop must be one of"):
        image_folder(path, crop="top")
    with pytest.raises(ValueError, match="size must be a positive int"):
        image_folder(path, size=(0, 8))


# -- mis-scaled data at the first batch --------------------------------------------------


def _fit(model, data):
    """The warnings of ``fit``'s first-batch checks (they run before training: epochs=0 suffices)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(data, batch_size=16, epochs=0, verbose=0)
    assert model.is_initialized  # initialised from that same batch
    return ours(caught)


def test_images_scaled_to_unit_range_are_refused():
    model = compiled(glow, num_bits=8)
    scaled = stripes(32).astype(np.float32) / 255.0
    with pytest.raises(
        ValueError,
        match=r"expected pixel levels in \[0, 256\) for num_bits=8.*"
        r"values in \[0\.\d+, 0\.\d+\].*Multiply by 255 and pass uint8",
    ):
        model.fit(scaled, batch_size=16, epochs=1, verbose=0)
    # Also after initialisation (a loaded model) and from a Dataset.
    model.initialize(stripes(32).astype(np.float32) + 0.5)
    with pytest.raises(ValueError, match=r"scaled to \[0, 1\]"):
        model.fit(tf.data.Dataset.from_tensor_slices(scaled).batch(16), epochs=1, verbose=0)


@pytest.mark.parametrize(
    "data, match",
    [
        (
            lambda x: x.astype(np.float32) / 127.5 - 1.0,
            r"values from -0\.\d+ to 0\.\d+ \(images scaled to \[-1, 1\]\? pass the uint8 pixels",
        ),
        (
            lambda x: x.astype(np.float32) + 0.5,
            r"levels in \[0, 32\).*8-bit pixels given to a model of fewer",
        ),
    ],
    ids=["minus_one_to_one", "8bit_levels_to_5bit_model"],
)
def test_levels_out_of_range_are_refused(data, match):
    model = compiled(glow, num_bits=5)
    with pytest.raises(ValueError, match=match):
        model.fit(data(stripes(32)), batch_size=16, epochs=1, verbose=0)


@pytest.mark.parametrize(
    "shift, kind", [(0.0, "an integer"), (0.5, "a level plus 0.5")], ids=["integers", "bin_centres"]
)
def test_levels_without_noise_warn(shift, kind):
    model = compiled(glow, num_bits=5)
    levels = (stripes(32) // 8).astype(np.float32) + shift
    messages = _fit(model, levels)
    assert len(messages) == 1 and f"every value is {kind}" in messages[0]
    assert "overestimate the likelihood" in messages[0] and "uint8" in messages[0]


def test_dark_integer_pixels_warn():
    model = compiled(glow, num_bits=5)
    levels = (stripes(32) // 8).astype(np.uint8)  # 5-bit levels passed as uint8
    messages = _fit(model, levels)
    high = int(levels[:16].max())  # the first batch of 16
    assert len(messages) == 1 and 24 <= high < 32
    assert f"pixels up to {high}" in messages[0] and "fill only 4 of the model's 32 levels" in messages[0]
    assert "multiply them by 8" in messages[0]


@pytest.mark.parametrize("form", ["dequantized_floats", "uint8", "uint8_dataset", "dark_but_noised"])
def test_correct_data_is_not_flagged(form):
    images = stripes(32)
    rng = np.random.default_rng(0)
    data = {
        "dequantized_floats": lambda: (images // 8 + rng.uniform(size=images.shape)).astype(np.float32),
        "uint8": lambda: images,
        "uint8_dataset": lambda: tf.data.Dataset.from_tensor_slices(images).batch(16),
        # Levels all below 1 are fine for a 1-bit model's dark images... at 5 bits, noise in [0, 2).
        "dark_but_noised": lambda: rng.uniform(0, 2, images.shape).astype(np.float32),
    }[form]()
    model = compiled(glow, num_bits=5)
    assert _fit(model, data) == []


def test_vector_models_are_not_checked_for_pixel_scales():
    model = compiled(lambda: VectorRealNVP(2, num_steps=1, width=4))
    unit = np.random.default_rng(0).uniform(size=(32, 2)).astype(np.float32)
    assert _fit(model, unit) == []
    assert _fit(model, np.round(unit)) == []


def test_a_dataset_given_again_is_not_pulled_again():
    model = compiled(glow, num_bits=5)
    pulls = []

    def count(x):
        tf.py_function(lambda: pulls.append(1), [], [])
        return x

    ds = tf.data.Dataset.from_tensor_slices(stripes(32)).batch(16).map(count)
    model.fit(ds, epochs=0, verbose=0)
    assert len(pulls) == 1  # the first batch: checked, and ActNorm initialised from it
    model.fit(ds, epochs=0, verbose=0)
    assert len(pulls) == 1
    model.fit(ds.map(lambda x: x), epochs=0, verbose=0)
    assert len(pulls) == 2  # another Dataset is checked again


# -- MirroredStrategy: every replica gets its own noise ----------------------------------

MIRRORED_NOISE = textwrap.dedent("""
    import json
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from tfflows import Glow
    from tfflows.training.step import step_seed

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = np.clip(rng.normal(128, 40, (64, 8, 8, 1)), 0, 255).astype(np.uint8)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = Glow((8, 8, 1), num_levels=2, num_steps=1, width=8, num_bits=5)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    start = [w.copy() for w in model.get_weights()]
    ds = tf.data.Dataset.from_tensor_slices(x).batch(16)
    history = model.fit(ds, epochs=2, verbose=0).history
    same = tf.constant(x[:8])
    noisy = strategy.run(tf.function(lambda: model.spec.check_x(same, values=False, seed=step_seed(model))))
    a, b = [t.numpy() for t in strategy.experimental_local_results(noisy)]
    print("RESULT " + json.dumps({
        "loss": history["loss"], "skipped": int(model.nonfinite_steps.numpy()),
        "moved": max(float(np.max(np.abs(u - v))) for u, v in zip(start, model.get_weights())),
        "floors": bool(np.array_equal(np.floor(a), x[:8] // 8) and np.array_equal(np.floor(b), x[:8] // 8)),
        "replicas_differ": float(np.mean(a != b)),
    }))
""")


@pytest.mark.slow
def test_mirrored_strategy_fits_uint8_with_noise_per_replica():
    out = run_script(MIRRORED_NOISE)
    assert out["skipped"] == 0 and all(math.isfinite(v) for v in out["loss"])
    assert out["moved"] > 1e-4 and out["floors"]
    assert out["replicas_differ"] > 0.99
