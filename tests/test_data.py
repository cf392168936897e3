"""Tests for tfflows.data: IDX files, image sources, toy densities, pipelines."""

from __future__ import annotations

import gzip
import math
import os
import struct
import time

import numpy as np
import pytest
import tensorflow as tf

from tfflows.data import (
    DATA_DIR_ENV,
    DEBIAN_DATA_DIRS,
    IDX_FILE_NAMES,
    TOY_NAMES,
    dequantize,
    estimate_toy_entropy,
    load_images,
    make_dataset,
    num_bits_of,
    read_idx,
    sample_toy,
    toy_dataset,
    toy_entropy,
    toy_log_prob,
    write_idx,
)

FASHION_DIR = DEBIAN_DATA_DIRS["fashion_mnist"]
HAVE_FASHION = all(
    os.path.isfile(os.path.join(FASHION_DIR, stem + ".gz"))
    for stems in IDX_FILE_NAMES.values()
    for stem in stems
)
needs_fashion = pytest.mark.skipif(
    not HAVE_FASHION,
    reason=f"Fashion-MNIST IDX files not in {FASHION_DIR}: "
    "apt-get install -y dataset-fashion-mnist (CI installs it)",
)


@pytest.fixture(autouse=True)
def _no_user_data_dirs(monkeypatch, tmp_path):
    """Keeps a developer's TFFLOWS_DATA_DIR / prepared TFDS data out of the tests."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))


def _collect(ds: tf.data.Dataset) -> list:
    return list(ds.as_numpy_iterator())


# ----------------------------------------------------------------------------- IDX

IDX_CASES = {
    "uint8": (np.uint8, 0x08),
    "int8": (np.int8, 0x09),
    "int16": (np.int16, 0x0B),
    "int32": (np.int32, 0x0C),
    "float32": (np.float32, 0x0D),
    "float64": (np.float64, 0x0E),
}


def _example(dtype) -> np.ndarray:
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal((3, 4, 5)).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=(3, 4, 5), endpoint=True).astype(dtype)


@pytest.mark.parametrize("suffix", ["", ".gz"], ids=["plain", "gz"])
@pytest.mark.parametrize("dtype", list(IDX_CASES), ids=list(IDX_CASES))
def test_idx_round_trip(tmp_path, dtype, suffix):
    array = _example(IDX_CASES[dtype][0])
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("dtype", list(IDX_CASES), ids=list(IDX_CASES))
def test_read_idx_matches_hand_built_bytes(tmp_path, dtype):
    """The reader agrees with the format spec, not just with `write_idx`."""
    np_dtype, code = IDX_CASES[dtype]
    array = _example(np_dtype)
    payload = bytes([0, 0, code, 3]) + struct.pack(">3I", 3, 4, 5)
    payload += array.astype(np.dtype(np_dtype).newbyteorder(">")).tobytes()
    plain, zipped = tmp_path / "plain", tmp_path / "zipped-without-gz-suffix"
    plain.write_bytes(payload)
    zipped.write_bytes(gzip.compress(payload))
    for path in (plain, zipped):
        np.testing.assert_array_equal(read_idx(path), array)
        assert read_idx(path).dtype == np_dtype


def _valid_idx_bytes() -> bytes:
    return bytes([0, 0, 0x08, 2]) + struct.pack(">2I", 2, 3) + bytes(range(6))


@pytest.mark.parametrize(
    "payload, expected",
    [
        (b"\x01\x00\x08\x02" + _valid_idx_bytes()[4:], "magic"),
        (b"\x00\x00\x0a\x02" + _valid_idx_bytes()[4:], "magic"),
        (_valid_idx_bytes()[:-1], "truncated"),
        (_valid_idx_bytes()[:9], "truncated"),
        (_valid_idx_bytes() + b"\x00", "trailing"),
        (b"\x00\x00", "4-byte header"),
        (gzip.compress(_valid_idx_bytes())[:-6], "gzip"),
    ],
    ids=["bad-magic", "bad-dtype", "short-data", "short-header", "trailing", "tiny", "cut-gzip"],
)
def test_read_idx_rejects_bad_files(tmp_path, payload, expected):
    path = tmp_path / "bad-idx"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=expected) as info:
        read_idx(path)
    assert str(path) in str(info.value) and "expected" in str(info.value)


def test_write_idx_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, np.int64))


# ------------------------------------------------------------------- image sources


@pytest.fixture(scope="module")
def fashion_train():
    if not HAVE_FASHION:
        pytest.skip(f"Fashion-MNIST IDX files not in {FASHION_DIR}")
    return load_images("fashion_mnist", "train", with_labels=True)


@needs_fashion
def test_fashion_mnist_train_is_the_real_dataset(fashion_train):
    images, labels = fashion_train
    assert images.shape == (60000, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (60000,) and labels.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(labels), [6000] * 10)
    assert images.min() == 0 and images.max() == 255
    assert num_bits_of("fashion_mnist") == 8


@needs_fashion
def test_fashion_mnist_test_split():
    images, labels = load_images("fashion_mnist", "test", with_labels=True)
    assert images.shape == (10000, 28, 28, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(labels), [1000] * 10)
    unlabelled = load_images("fashion_mnist", "test")
    np.testing.assert_array_equal(unlabelled, images)


@needs_fashion
def test_fashion_mnist_pipeline_batch(fashion_train):
    images, labels = fashion_train
    ds = make_dataset(images[:512], labels[:512], batch_size=128, num_bits=5, seed=0)
    x, y = next(iter(ds))
    assert x.shape == (128, 28, 28, 1) and x.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) < 32.0
    assert y.dtype == tf.int32 and set(y.numpy()) <= set(range(10))


def test_digits_split_is_fixed_and_disjoint():
    train, train_labels = load_images("digits", "train", with_labels=True)
    test = load_images("digits", "test")
    assert train.shape == (1500, 8, 8, 1) and test.shape == (297, 8, 8, 1)
    assert train.dtype == np.uint8 and train_labels.dtype == np.int32
    assert train.max() == 16 and test.max() == 16 < 2 ** num_bits_of("digits")
    np.testing.assert_array_equal(load_images("digits", "train"), train)
    train_rows = {row.tobytes() for row in train}
    # The 8x8 digits contain a few exact duplicates, so allow a handful.
    assert sum(row.tobytes() in train_rows for row in test) < 5


def _write_split(folder, split, images, labels, gz=True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    image_stem, label_stem = IDX_FILE_NAMES[split]
    write_idx(folder / (image_stem + (".gz" if gz else "")), images)
    write_idx(folder / label_stem, labels)


def _tiny(value: int, n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n, 4, 4), value, np.uint8), np.arange(n, dtype=np.uint8)


def test_idx_files_found_in_data_dir_before_env(tmp_path, monkeypatch):
    _write_split(tmp_path / "given", "train", *_tiny(7))
    _write_split(tmp_path / "env" / "mnist", "train", *_tiny(9))
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    images, labels = load_images("mnist", data_dir=tmp_path / "given", with_labels=True)
    assert images.shape == (6, 4, 4, 1) and np.all(images == 7)
    np.testing.assert_array_equal(labels, np.arange(6))
    assert np.all(load_images("mnist") == 9)


def test_env_dir_serves_any_idx_dataset(tmp_path, monkeypatch):
    _write_split(tmp_path / "kmnist", "test", *_tiny(3), gz=False)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert np.all(load_images("kmnist", "test") == 3)


def test_missing_labels_file_is_named(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", _tiny(1)[0])
    assert load_images("mnist", data_dir=tmp_path).shape == (6, 4, 4, 1)
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte"):
        load_images("mnist", data_dir=tmp_path, with_labels=True)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "digits"])
def test_local_sources_reject_other_splits(name):
    with pytest.raises(ValueError, match="'validation'"):
        load_images(name, "validation")


def test_unknown_name_fails_fast_naming_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    (tmp_path / "given").mkdir()  # a missing data_dir is an error of its own (below)
    start = time.monotonic()
    # Default download=True: TFDS rejects the name before any network access.
    with pytest.raises(ValueError) as info:
        load_images("no_such_dataset_tfflows", data_dir=tmp_path / "given")
    assert time.monotonic() - start < 10.0
    message = str(info.value)
    assert str(tmp_path / "given") in message
    assert str(tmp_path / "env" / "no_such_dataset_tfflows") in message
    assert "DatasetNotFoundError" in message and "fashion_mnist" in message
    assert len(message) < 1500, "the list of every TFDS dataset should be left out"


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist", "digits"])
def test_missing_data_dir_is_an_error_not_a_fallback(tmp_path, name):
    """Fashion-MNIST would otherwise come from the Debian folder, silently."""
    with pytest.raises(ValueError, match=f"data_dir '{tmp_path}/nowhere' does not exist"):
        load_images(name, data_dir=tmp_path / "nowhere")


def test_tfds_fallback_without_local_files(tmp_path):
    """Offline, download=True would retry for minutes; download=False fails at once."""
    start = time.monotonic()
    with pytest.raises(ValueError) as info:
        load_images("mnist", data_dir=tmp_path, download=False)
    assert time.monotonic() - start < 10.0
    assert str(tmp_path) in str(info.value) and "TFDS" in str(info.value)
    assert "$TFFLOWS_DATA_DIR not set" in str(info.value)


# -------------------------------------------------------------------------- toys


@pytest.mark.parametrize("name", TOY_NAMES)
def test_toys_are_seeded_float32_points(name):
    x = sample_toy(name, 1000, seed=0)
    assert x.shape == (1000, 2) and x.dtype == np.float32 and np.all(np.isfinite(x))
    np.testing.assert_array_equal(x, sample_toy(name, 1000, seed=0))
    assert not np.array_equal(x, sample_toy(name, 1000, seed=1))
    assert sample_toy(name, 0, seed=0).shape == (0, 2)


def test_unknown_toy_lists_valid_names():
    for fn in (lambda: sample_toy("spiral", 10), lambda: toy_entropy("spiral")):
        with pytest.raises(ValueError, match=r"two_moons.*8gaussians.*checkerboard.*rings"):
            fn()
    with pytest.raises(ValueError, match="non-negative"):
        sample_toy("rings", -1)


def test_known_entropies():
    assert toy_entropy("8gaussians") == 2.833
    assert toy_entropy("checkerboard") == pytest.approx(3.4657, abs=1e-4)
    assert toy_entropy("two_moons") is None and toy_entropy("rings") is None


def test_8gaussians_exact_entropy_by_monte_carlo():
    # Standard error about 1e-3 nats with 10^6 samples.
    assert estimate_toy_entropy("8gaussians", n=1_000_000, seed=0) == pytest.approx(
        toy_entropy("8gaussians"), abs=0.01
    )


def test_8gaussians_density_integrates_to_one_and_matches_samples():
    grid = np.linspace(-5.0, 5.0, 801)
    xx, yy = np.meshgrid(grid, grid)
    density = np.exp(toy_log_prob("8gaussians", np.stack([xx.ravel(), yy.ravel()], 1)))
    assert density.sum() * (grid[1] - grid[0]) ** 2 == pytest.approx(1.0, abs=1e-3)
    # Samples from `sample_toy` have the same mean log-density as the estimate.
    x = sample_toy("8gaussians", 200_000, seed=3)
    assert -toy_log_prob("8gaussians", x).mean() == pytest.approx(2.833, abs=0.01)


def test_checkerboard_is_uniform_on_eight_squares():
    x = sample_toy("checkerboard", 80_000, seed=0)
    assert np.all(np.isfinite(toy_log_prob("checkerboard", x)))
    assert np.all((x >= -4.0) & (x < 4.0))
    cell = np.floor(x / 2.0).astype(int) + 2
    counts = np.zeros((4, 4), int)
    np.add.at(counts, (cell[:, 0], cell[:, 1]), 1)
    occupied = counts[(np.add.outer(np.arange(4), np.arange(4)) % 2) == 0]
    assert occupied.size == 8 and occupied.sum() == 80_000
    np.testing.assert_allclose(occupied, 10_000, rtol=0.05)
    assert estimate_toy_entropy("checkerboard", n=1000) == pytest.approx(math.log(32))
    assert toy_log_prob("checkerboard", np.array([[1.0, -1.0]]))[0] == -np.inf


def test_toy_log_prob_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[n, 2\]"):
        toy_log_prob("8gaussians", np.zeros((4, 3)))
    with pytest.raises(ValueError, match="8gaussians"):
        toy_log_prob("rings", np.zeros((4, 2)))


def test_toy_dataset_batches_all_points_once():
    ds = toy_dataset("two_moons", 1000, batch_size=256, seed=0)
    batches = _collect(ds)
    assert [len(b) for b in batches] == [256, 256, 256, 232]
    points = np.concatenate(batches)
    assert points.dtype == np.float32
    expected = sample_toy("two_moons", 1000, seed=0)
    np.testing.assert_array_equal(np.sort(points, axis=0), np.sort(expected, axis=0))
    repeated = toy_dataset("rings", 100, batch_size=64, seed=0, repeat=True)
    assert len(list(repeated.take(5))) == 5


# ----------------------------------------------------------------------- pipeline


def _random_images(n=64, shape=(6, 6, 3), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


@pytest.mark.parametrize("n_bits", [8, 5, 3, 1])
def test_dequantized_values_floor_to_reduced_integers(n_bits):
    images = _random_images()
    ds = make_dataset(images, batch_size=16, num_bits=n_bits, shuffle=False, seed=0)
    x = np.concatenate(_collect(ds))
    assert x.dtype == np.float32 and x.shape == images.shape
    assert x.min() >= 0.0 and x.max() < 2.0**n_bits
    reduced = images // 2 ** (8 - n_bits)
    np.testing.assert_array_equal(np.floor(x), reduced)
    assert np.ptp(x - reduced) > 0.9, "noise should spread over [0, 1)"
    plain_ds = make_dataset(images, num_bits=n_bits, shuffle=False, dequantize=False)
    plain = np.concatenate(_collect(plain_ds))
    np.testing.assert_array_equal(plain, reduced.astype(np.float32))


def test_top_value_never_rounds_up_to_two_to_the_n():
    """In float32, 255 + u is 256.0 for u > 1 - 2**-17: ~80 of these 10^7 pixels."""
    images = np.full((10_000, 32, 32, 1), 255, np.uint8)
    x = next(iter(make_dataset(images, batch_size=10_000, shuffle=False, seed=0)))
    assert float(tf.reduce_max(x)) < 256.0
    assert float(tf.reduce_min(tf.floor(x))) == 255.0


def test_fresh_noise_every_epoch_but_reproducible():
    images = _random_images(n=32)
    ds = make_dataset(images, batch_size=32, shuffle=False, seed=5)
    first, second = _collect(ds)[0], _collect(ds)[0]
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(np.floor(first), np.floor(second))
    again = make_dataset(images, batch_size=32, shuffle=False, seed=5)
    np.testing.assert_array_equal(_collect(again)[0], first)
    forever = make_dataset(images, batch_size=32, shuffle=False, repeat=True, seed=5)
    repeated = _collect(forever.take(2))
    assert not np.array_equal(repeated[0], repeated[1])


def test_labels_stay_with_their_images_through_shuffling():
    n = 200
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 2, 2, 1))
    labels = np.arange(n, dtype=np.int64)
    ds = make_dataset(images.copy(), labels, batch_size=64, seed=1)
    batches = _collect(ds)
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    assert y.dtype == np.int64 and not np.array_equal(y, labels), "should be shuffled"
    np.testing.assert_array_equal(np.sort(y), labels)
    np.testing.assert_array_equal(np.floor(x[:, 0, 0, 0]), y)


def test_batching_and_rank3_input():
    images = _random_images(n=10, shape=(5, 5))
    ds = make_dataset(images, batch_size=4, shuffle=False)
    assert [b.shape for b in _collect(ds)] == [(4, 5, 5, 1), (4, 5, 5, 1), (2, 5, 5, 1)]
    assert int(ds.cardinality()) == 3
    dropped = make_dataset(images, batch_size=4, drop_remainder=True)
    assert [len(b) for b in _collect(dropped)] == [4, 4]


def test_digits_keep_their_five_bits():
    images = load_images("digits", "test")
    x = np.concatenate(_collect(make_dataset(images, source_bits=5, num_bits=5, shuffle=False)))
    assert x.max() < 32.0
    np.testing.assert_array_equal(np.floor(x), images)
    with pytest.raises(ValueError, match="maximum of 16"):
        make_dataset(images, source_bits=4, num_bits=4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(images=np.zeros((4, 8, 8, 1), np.float32)), "uint8.*got float32"),
        (dict(images=np.zeros((4, 8), np.uint8)), r"got uint8 of shape \[4, 8\]"),
        (dict(images=np.zeros((4, 2, 2, 2, 1), np.uint8)), r"shape \[4, 2, 2, 2, 1\]"),
        (dict(images=np.zeros((0, 2, 2, 1), np.uint8)), "at least one"),
        (dict(images=np.zeros((4, 2, 2, 1), np.uint8), num_bits=9), "num_bits.*got 9"),
        (dict(images=np.zeros((4, 2, 2, 1), np.uint8), labels=np.zeros(3)), "4 rows.*got shape"),
        (dict(images=np.zeros((4, 2, 2, 1), np.uint8), batch_size=0), "batch_size"),
    ],
    ids=["float", "rank2", "rank5", "empty", "num_bits", "labels", "batch_size"],
)
def test_make_dataset_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_dataset(**kwargs)


def test_dequantize_helper_on_tensors():
    x = tf.constant(_random_images(n=8))
    y = dequantize(x, num_bits=4, seed=3)
    assert y.dtype == tf.float32 and y.shape == x.shape
    np.testing.assert_array_equal(np.floor(y.numpy()), x.numpy() // 16)
    np.testing.assert_array_equal(y, dequantize(x, num_bits=4, seed=3))
    compiled = tf.function(lambda t: dequantize(t, num_bits=4, seed=3))
    np.testing.assert_array_equal(compiled(x), y)
    assert not np.array_equal(dequantize(x), dequantize(x))
    with pytest.raises(ValueError, match="num_bits"):
        dequantize(x, num_bits=0)


def test_embedded_digits_equal_scikit_learns():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    digits = sklearn_datasets.load_digits()
    train, train_labels = load_images("digits", "train", with_labels=True)
    test, test_labels = load_images("digits", "test", with_labels=True)
    ours = np.concatenate([train, test])[..., 0]
    labels = np.concatenate([train_labels, test_labels])
    assert ours.shape == (1797, 8, 8)
    # Same multiset of (image, label) pairs as scikit-learn's copy.
    key = lambda imgs, labs: sorted(zip(labs.tolist(), imgs.reshape(len(imgs), -1).tolist()))
    assert key(ours, labels) == key(digits.images.astype(np.uint8), digits.target)


def test_digits_with_the_default_source_bits_are_refused_not_squashed():
    """0..16 digits stated as 8-bit data would become levels 0..2 at n_bits=5: an error says so."""
    images = load_images("digits", "test")
    with pytest.raises(ValueError, match=r"maximum of 16.*source_bits=5"):
        make_dataset(images, num_bits=5)
    inferred = np.concatenate(
        _collect(make_dataset(images, num_bits=5, source_bits=None, shuffle=False, dequantize=False))
    )
    np.testing.assert_array_equal(inferred, images.astype(np.float32))
    with pytest.raises(ValueError, match=r"num_bits must be in 1..source_bits=5"):
        make_dataset(images, num_bits=8, source_bits=None)


@pytest.mark.parametrize(
    "top, source_bits, ok",
    [
        (255, 8, True),
        (32, 8, True),
        (31, 8, False),
        (16, 5, True),
        (4, 5, True),
        (3, 5, False),
        (7, 3, True),
        (0, 3, True),
        (32, 5, False),
        (200, 7, False),
    ],
)
def test_source_range_rule(top, source_bits, ok):
    images = np.zeros((2, 2, 2, 1), np.uint8)
    images[0, 0, 0, 0] = top
    if ok:
        x = np.concatenate(
            _collect(
                make_dataset(images, num_bits=1, source_bits=source_bits, dequantize=False, shuffle=False)
            )
        )
        assert x.max() == top >> (source_bits - 1)
    else:
        with pytest.raises(ValueError, match=rf"maximum of {top}"):
            make_dataset(images, num_bits=1, source_bits=source_bits)


def test_tfds_name_not_downloaded_and_offline_fails_at_once(monkeypatch):
    """download=True with no prepared copy and no network: a one-line error, not minutes of retries."""
    # A closed local port stands for an unreachable download host (also on a machine with internet).
    monkeypatch.setenv("TFFLOWS_TFDS_PROBE", "127.0.0.1:9")
    with pytest.raises(ValueError) as info:
        load_images("cifar10")
    message = str(info.value)
    assert "'cifar10' is not downloaded" in message and "network is unreachable" in message
    assert "tfds build cifar10" in message and "\n" not in message


def test_unknown_tfds_name_lists_the_local_names():
    with pytest.raises(ValueError) as info:
        load_images("no_such_dataset_tfflows")
    message = str(info.value)
    assert "TFDS has no dataset 'no_such_dataset_tfflows'" in message
    assert "['digits', 'fashion_mnist', 'mnist']" in message and "\n" not in message


# -- repeating_batches: fit's arrays as one dataset ---------------------------------------------


@pytest.mark.parametrize("shuffle", [False, True], ids=["in_order", "shuffled"])
@pytest.mark.parametrize("rows,batch_size", [(57, 64), (130, 64), (128, 32), (5, 2)])
def test_full_batches_hold_every_row_once_per_pass_and_weight_the_filling_0(shuffle, rows, batch_size):
    from tfflows.data.pipeline import repeating_batches

    rng = np.random.default_rng(rows)
    x = {"a": rng.standard_normal((rows, 3)).astype("float32"), "b": np.arange(rows)}
    weights = rng.uniform(0.5, 1.5, rows).astype("float32")
    dataset, count = repeating_batches(
        x, None, weights, batch_size=batch_size, shuffle=shuffle, full_batches=True
    )
    size = min(batch_size, rows)
    assert count == math.ceil(rows / size)
    batches = iter(dataset)
    passes = []
    for _ in range(2):  # the dataset repeats: a second pass, in a new order if shuffled
        seen = []
        for k in range(count):
            bx, by, bw = next(batches)
            assert bx["a"].shape == (size, 3) and by.shape == bw.shape == (size,)
            assert not np.any(by.numpy())  # no y: a placeholder of zeros
            ids = bx["b"].numpy()
            real = min(size, rows - k * size)
            # the short last batch: its real rows, then repeats of its first row weighted 0
            np.testing.assert_array_equal(ids[real:], ids[0])
            np.testing.assert_array_equal(bw.numpy()[real:], 0.0)
            np.testing.assert_array_equal(bw.numpy()[:real], weights[ids[:real]])
            np.testing.assert_array_equal(bx["a"].numpy(), x["a"][ids])
            seen.extend(ids[:real])
        assert sorted(seen) == list(range(rows))
        passes.append(seen)
    if not shuffle:
        assert passes[0] == passes[1] == list(range(rows))
