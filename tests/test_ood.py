"""tfflows.ood: detection metrics, the OOD scores, the typicality test, bad inputs and ``tfflows score``."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfflows
from tfflows import cli, ood
from tfflows.data import dequantize
from tfflows.ood import ImageDensity

SHAPE = (8, 8, 1)


def tiny_glow(shape=SHAPE, seed: int = 0) -> tfflows.Glow:
    keras.utils.set_random_seed(seed)
    return tfflows.Glow(shape, num_levels=2, num_steps=1, width=8, num_bits=5, seed=seed)


def toy_density(offset: float = 0.0, weight: float = 1.0) -> ImageDensity:
    """log p(x) = offset − weight · mean pixel: a density with known values, no network."""

    def log_prob(images):
        x = tf.cast(images, tf.float32)
        return offset - weight * tf.reduce_mean(x, axis=[1, 2, 3])

    return ImageDensity(log_prob, SHAPE, 8, "toy")


# -- metrics ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "in_scores, ood_scores, want",
    [
        ([0.1, 0.4], [0.35, 0.8], (0.75, 0.5 + 0.5 * 2 / 3, 0.5)),
        ([0.0, 1.0], [1.0, 2.0], (3.5 / 4, 0.5 + 0.5 * 2 / 3, 0.5)),  # one tie counts ½
        ([1.0, 1.0], [1.0, 1.0], (0.5, 0.5, 1.0)),  # all tied
        ([0.0, 1.0, 2.0], [3.0, 4.0], (1.0, 1.0, 0.0)),  # separated
        ([3.0, 4.0], [0.0, 1.0, 2.0], (0.0, (1 / 3 + 1 / 2 + 3 / 5) / 3, 1.0)),  # reversed
    ],
    ids=["classic", "tie", "all_tied", "separated", "reversed"],
)
def test_metrics_against_hand_computed_values(in_scores, ood_scores, want):
    got = ood.detection_metrics(in_scores, ood_scores)
    np.testing.assert_allclose([got["auroc"], got["aupr"], got["fpr95"]], want, rtol=0, atol=1e-12)


def test_fpr_at_tpr_takes_the_highest_threshold_that_reaches_the_rate():
    in_scores = np.arange(10.0)  # 0..9
    ood_scores = np.arange(20.0) + 5.0  # 5..24: TPR 0.95 needs the threshold 6 (19 of 20)
    assert ood.fpr_at_tpr(in_scores, ood_scores, 0.95) == pytest.approx(0.4)  # 6, 7, 8, 9 of 10
    assert ood.fpr_at_tpr(in_scores, ood_scores, 1.0) == pytest.approx(0.5)  # 5..9


def test_metrics_match_sklearn_with_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = rng.integers(0, 6, rng.integers(1, 30)).astype(float)
        b = rng.integers(2, 8, rng.integers(1, 30)).astype(float)
        y, s = np.r_[np.zeros(len(a)), np.ones(len(b))], np.r_[a, b]
        fpr, tpr, _ = metrics.roc_curve(y, s, drop_intermediate=False)
        assert ood.auroc(a, b) == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)
        assert ood.aupr(a, b) == pytest.approx(metrics.average_precision_score(y, s), abs=1e-12)
        assert ood.fpr_at_tpr(a, b) == pytest.approx(fpr[np.argmax(tpr >= 0.95 - 1e-12)], abs=1e-12)


@pytest.mark.parametrize(
    "a, b, match",
    [([], [1.0], "non-empty 1-D"), ([[1.0]], [1.0], "non-empty 1-D"), ([np.nan], [1.0], "1 NaN")],
)
def test_metrics_refuse_bad_scores(a, b, match):
    with pytest.raises(ValueError, match=match):
        ood.auroc(a, b)


# -- the scores -------------------------------------------------------------------


def test_complexity_of_a_constant_image_is_far_below_noise():
    rng = np.random.default_rng(0)
    constant = np.full((3, 28, 28, 1), 117, np.uint8)
    noise = rng.integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    c_const = ood.complexity_bits_per_dim(constant).numpy()
    c_noise = ood.complexity_bits_per_dim(noise).numpy()
    assert np.all(c_const < 1.0) and np.all(c_noise > 8.0), (c_const, c_noise)
    # fewer bits: the compressor sees the reduced image, so noise costs about 5 bits/dim
    c5 = ood.complexity_bits_per_dim(noise, num_bits=5).numpy()
    assert np.all((c5 > 5.0) & (c5 < c_noise - 2.0)), c5
    # plain TF ops: the same numbers inside a graph
    graph = tf.function(lambda x: ood.complexity_bits_per_dim(x))(tf.constant(noise)).numpy()
    np.testing.assert_array_equal(graph, c_noise)


def test_score_gives_every_method_with_known_values():
    images = np.random.default_rng(1).integers(0, 256, (5, *SHAPE), dtype=np.uint8)
    out = ood.score(toy_density(), images, background=toy_density(3.0, 0.5), train_mean_nll=10.0)
    mean = images.reshape(5, -1).mean(axis=1)
    np.testing.assert_allclose(out["nll"], mean, rtol=1e-6)
    np.testing.assert_allclose(out["bits_per_dim"], mean / (64 * np.log(2.0)), rtol=1e-6)
    np.testing.assert_allclose(
        out["complexity_corrected"], out["bits_per_dim"] - out["complexity_bits_per_dim"], rtol=1e-6
    )
    np.testing.assert_allclose(out["likelihood_ratio"], (3.0 - 0.5 * mean) - (-mean), rtol=1e-5)
    np.testing.assert_allclose(out["typicality"], np.abs(mean - 10.0), rtol=1e-5)


def test_likelihood_ratio_is_invariant_to_a_constant_added_to_both_models():
    images = np.random.default_rng(2).integers(0, 256, (7, *SHAPE), dtype=np.uint8)
    plain = ood.score(toy_density(0.0, 1.0), images, background=toy_density(0.0, 0.3))
    shifted = ood.score(toy_density(512.25, 1.0), images, background=toy_density(512.25, 0.3))
    np.testing.assert_allclose(shifted["likelihood_ratio"], plain["likelihood_ratio"], atol=1e-3)
    assert not np.allclose(shifted["nll"], plain["nll"])  # the constant did change the likelihoods
    lp, bg = np.array([-3.0, -9.0]), np.array([-4.0, -2.0])
    np.testing.assert_array_equal(ood.likelihood_ratio(lp + 1e3, bg + 1e3), ood.likelihood_ratio(lp, bg))


def test_scoring_streams_a_dataset_in_batches():
    sizes = []

    def log_prob(images):
        sizes.append(int(images.shape[0]))
        return -tf.reduce_mean(tf.cast(images, tf.float32), axis=[1, 2, 3])

    density = ImageDensity(log_prob, SHAPE, 8, "counting")
    images = np.random.default_rng(3).integers(0, 256, (600, *SHAPE), dtype=np.uint8)
    from_array = ood.score(density, images, batch_size=256)
    assert sizes == [256, 256, 88]
    sizes.clear()
    # a generator never holds the whole set: the scorer pulls one batch at a time
    pulled = []

    def generate():
        for i in range(600):
            pulled.append(i)
            yield images[i]

    ds = tf.data.Dataset.from_generator(generate, output_signature=tf.TensorSpec(SHAPE, tf.uint8))
    from_stream = ood.score(density, ds, batch_size=256)
    assert sizes == [256, 256, 88]
    np.testing.assert_allclose(from_stream["nll"], from_array["nll"])
    sizes.clear()
    ood.score(density, tf.data.Dataset.from_tensor_slices(images).batch(100))
    assert sizes == [100] * 6


@pytest.mark.slow  # exports and loads a SavedModel
def test_a_flow_model_and_its_saved_model_score_alike(tmp_path):
    model = tiny_glow()
    images = np.random.default_rng(4).integers(0, 256, (6, *SHAPE), dtype=np.uint8)
    model.initialize(dequantize(images, num_bits=5, seed=0))
    got = ood.score(model, images)
    levels = np.floor(images / 8.0) + 0.5
    np.testing.assert_allclose(got["nll"], -model.log_prob(levels.astype("float32")).numpy(), rtol=1e-5)
    path = tfflows.export_saved_model(model, tmp_path / "glow" / "1")
    served = tf.saved_model.load(path).signatures["score"](images=tf.constant(images))
    np.testing.assert_allclose(served["score"].numpy(), got["complexity_corrected"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ood.score(path, images)["nll"], got["nll"], rtol=1e-5)


# -- the typicality test ---------------------------------------------------------


def test_typicality_passes_in_distribution_batches_and_flags_shifted_ones():
    rng = np.random.default_rng(5)
    train, held = rng.normal(100.0, 5.0, 5000), rng.normal(100.0, 5.0, 2000)
    test = ood.TypicalityTest.fit(train, held, batch_size=25, fpr=0.05, num_bootstrap=2000, seed=0)
    assert test.train_mean == pytest.approx(100.0, abs=0.3)
    # |mean of 25 − μ| has scale 5/√25 = 1: the 95% quantile is about 1.96
    assert test.threshold == pytest.approx(1.96, abs=0.2)
    assert test.flag_rate(rng.normal(100.0, 5.0, 5000)) < 0.12
    assert test.flag_rate(rng.normal(95.0, 5.0, 5000)) > 0.95  # more likely than typical
    assert test.flag_rate(rng.normal(105.0, 5.0, 5000)) > 0.95
    assert not test.is_ood(np.full(25, 100.5)) and test.is_ood(np.full(25, 96.0))
    with pytest.raises(ValueError, match="expected 25 NLLs"):
        test.is_ood(np.zeros(10))
    with pytest.raises(ValueError, match="fpr: expected a rate in"):
        ood.TypicalityTest.fit(train, batch_size=5, fpr=1.5)


# -- perturbation and the background model --------------------------------------


def test_perturb_replaces_pixels_at_the_rate():
    images = tf.zeros((200, 28, 28, 1), tf.uint8)
    seed = tf.constant([1, 2], tf.int64)
    assert np.array_equal(ood.perturb(images, 0.0, seed).numpy(), images.numpy())
    changed = np.mean(ood.perturb(images, 0.3, seed).numpy() != 0)
    assert changed == pytest.approx(0.3 * 255 / 256, abs=0.01)
    full = ood.perturb(images, 1.0, seed).numpy()
    assert full.mean() == pytest.approx(127.5, abs=2.0) and full.max() == 255
    np.testing.assert_array_equal(ood.perturb(images, 0.3, seed), ood.perturb(images, 0.3, seed))
    with pytest.raises(ValueError, match=r"rate: expected a replacement probability in \[0, 1\], got 1.5"):
        ood.perturb(images, 1.5, seed)


@pytest.mark.slow  # the module's trained models
def test_train_background_learns_the_perturbed_data(trained_models):
    """The background model is the module's (``trained_models``: rate 0.3, 3 epochs), not one more fit."""
    x, bg = trained_models["x"], trained_models["bg"]
    batch = next(iter(ood.perturbed_dataset(x, 0.2, batch_size=256, num_bits=5, seed=3)))
    assert float(tf.reduce_max(batch)) < 32.0 and float(tf.reduce_min(batch)) >= 0.0
    assert np.all(np.isfinite(ood.score(bg, x[:16])["nll"]))
    with pytest.raises(ValueError, match=r"images: expected \[N, 8, 8, 1\]"):
        ood.train_background(tiny_glow(), np.zeros((4, 16, 16, 1), np.uint8))


# -- data and bad inputs ------------------------------------------------------------


def test_ood_sets_are_resized_and_rescaled():
    native = ood.load_ood_images("digits", SHAPE, max_examples=10)  # 0..16 → 0..255
    assert (
        native.dtype == np.uint8
        and native.max() == 255
        and np.all(np.isin(native, np.round(np.arange(17) * 255 / 16)))
    )
    digits = ood.load_ood_images("digits", (28, 28, 1), max_examples=10)
    assert digits.shape == (10, 28, 28, 1) and digits.dtype == np.uint8 and digits.max() >= 240
    const = ood.load_ood_images("constant", SHAPE, max_examples=4)
    assert all(len(np.unique(im)) == 1 for im in const)
    assert ood.load_ood_images("noise", (4, 4, 3), max_examples=3).shape == (3, 4, 4, 3)
    assert ood.parse_spec("fashion_mnist:class=3") == ("fashion_mnist", "class", 3)
    with pytest.raises(ValueError, match="NAME:class=K"):
        ood.parse_spec("fashion_mnist:klass=3")


@pytest.mark.parametrize(
    "images, match",
    [
        (np.zeros((2, 8, 8, 3), np.uint8), r"shape \[N, 8, 8, 1\], got \[2, 8, 8, 3\] \(channel count 3"),
        (np.zeros((2, 16, 16, 1), np.uint8), r"shape \[N, 8, 8, 1\], got \[2, 16, 16, 1\]"),
        (np.zeros((8, 8, 1), np.uint8), r"shape \[N, 8, 8, 1\], got \[8, 8, 1\]"),
        (
            np.full((2, 8, 8, 1), 0.5, np.float32),
            r"expected uint8 pixels 0..255, got float32 values from 0.5",
        ),
        (np.full((2, 8, 8, 1), 300, np.int32), r"expected uint8 pixels 0..255, got int32 values from 300"),
    ],
    ids=["channels", "size", "rank", "float_scale", "int_range"],
)
def test_bad_images_are_refused(images, match):
    with pytest.raises(ValueError, match=match):
        ood.score(toy_density(), images)


def test_bad_models_and_datasets_are_refused():
    images = np.zeros((2, *SHAPE), np.uint8)
    with pytest.raises(
        ValueError,
        match=r"background: expected a model of the same image shape "
        r"\[8, 8, 1\], got \[16, 16, 1\]",
    ):
        ood.score(tiny_glow(), images, background=tiny_glow((16, 16, 1)))
    with pytest.raises(ValueError, match=r"uint8 pixels 0..255, got float32"):
        ood.score(toy_density(), tf.data.Dataset.from_tensor_slices(images.astype("float32")))
    with pytest.raises(ValueError, match="is conditional"):
        ood.score(tfflows.Glow(SHAPE, num_levels=1, num_steps=1, width=4, num_bits=5, num_classes=2), images)
    with pytest.raises(ValueError, match="image models"):
        ood.score(tfflows.VectorRealNVP(3, num_steps=2, width=4), images)
    with pytest.raises(ValueError, match="SavedModel folder"):
        ood.score("/nonexistent/model", images)


# -- the command line ------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_models() -> dict:
    """A tiny Glow on the digits and a background model (``ood.train_background``), trained briefly.

    Tests read them and must not change them.
    """
    x = ood.load_ood_images("digits", SHAPE, split="train")
    model = ood.train_background(tiny_glow(seed=0), x, rate=0.0, epochs=3, batch_size=64)
    bg = ood.train_background(tiny_glow(seed=1), x, rate=0.3, epochs=3, batch_size=64)
    return {"x": x, "model": model, "bg": bg}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, trained_models):
    """``trained_models`` saved as .keras files (``model.keras``, ``bg.keras``) in one folder."""
    root = tmp_path_factory.mktemp("ood")
    trained_models["model"].save(root / "model.keras")
    trained_models["bg"].save(root / "bg.keras")
    return root


def test_cli_score_prints_and_writes_the_table(trained, capsys):
    out = trained / "table.json"
    code = cli.main(
        [
            "score",
            str(trained / "model.keras"),
            "--in-dataset",
            "digits",
            "--ood-dataset",
            "noise",
            "constant",
            "--background",
            str(trained / "bg.keras"),
            "--max-examples",
            "200",
            "--train-examples",
            "300",
            "--json-out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    table = json.loads(out.read_text())
    assert table["methods"] == ["nll", "complexity_corrected", "likelihood_ratio", "typicality"]
    assert table["in_examples"] == 200 and table["ood"]["noise"]["examples"] == 200
    test = table["typicality_test"]
    assert test["batch_size"] == 10 and test["fpr"] == 0.01 and test["threshold_nats"] > 0
    assert 0.0 <= test["in_flagged"] <= 0.2 and set(test["ood_flagged"]) == {"noise", "constant"}
    assert "typicality test, batches of 10" in printed
    for name in ("noise", "constant"):
        for method in table["methods"]:
            assert f"{name:<24}" in printed and method in printed
            metrics = table["ood"][name]["metrics"][method]
            assert all(0.0 <= metrics[k] <= 1.0 for k in ("auroc", "aupr", "fpr95"))
    # Even these barely trained models (bits/dim near uniform's 5) tell what each score is for:
    # the background (trained on 30% noise) explains noise better than the digits model does,
    # and constant images compress to almost nothing, so their corrected score is the highest.
    assert table["ood"]["noise"]["metrics"]["likelihood_ratio"]["auroc"] > 0.9
    assert table["ood"]["constant"]["metrics"]["complexity_corrected"]["auroc"] > 0.95


def test_cli_score_refuses_a_background_of_another_shape(tmp_path, capsys):
    """Refusals before any scoring: an untrained model is enough (the trained ones are not needed)."""
    model = tiny_glow()
    model(np.zeros((1, *SHAPE), "float32"))
    model.save(tmp_path / "model.keras")
    other = tiny_glow((16, 16, 1))
    other(np.zeros((1, 16, 16, 1), "float32"))
    other.save(tmp_path / "other.keras")
    code = cli.main(
        [
            "score",
            str(tmp_path / "model.keras"),
            "--in-dataset",
            "digits",
            "--ood-dataset",
            "noise",
            "--background",
            str(tmp_path / "other.keras"),
            "--max-examples",
            "8",
            "--train-examples",
            "0",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert (
        "tfflows score: background: expected a model of the same image shape [8, 8, 1], got [16, 16, 1]"
        in err
    )
    code = cli.main(
        [
            "score",
            str(tmp_path / "model.keras"),
            "--in-dataset",
            "digits",
            "--ood-dataset",
            "fashion_mnist:color=2",
        ]
    )
    assert code == 2 and "NAME:class=K" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_train_perturb_trains_a_background_model(tmp_path, capsys):
    out = tmp_path / "bg"
    code = cli.main(
        [
            "train",
            "--dataset",
            "digits",
            "--levels",
            "1",
            "--steps",
            "1",
            "--width",
            "8",
            "--epochs",
            "1",
            "--max-train",
            "64",
            "--perturb",
            "0.2",
            "--out",
            str(out),
            "--verbose",
            "0",
        ]
    )
    assert code == 0
    result = json.loads((out / "results.json").read_text())
    assert result["args"]["perturb"] == 0.2 and result["epochs_run"] == 1
    assert (out / "model.keras").exists()
    code = cli.main(
        [
            "train",
            "--dataset",
            "two_moons",
            "--model",
            "nsf",
            "--epochs",
            "1",
            "--perturb",
            "0.2",
            "--out",
            str(tmp_path / "toy"),
            "--verbose",
            "0",
        ]
    )
    assert code == 2 and "--perturb is for unconditional image models" in capsys.readouterr().err
