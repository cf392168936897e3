"""Tabular density estimation: VectorMAF (affine and spline, MAF and IAF), Standardize, nats/dim, CSV.

The bijector-level properties of the MAF/IAF steps and Standardize (round
trips, log-det against the float64 Jacobian, gradients, XLA) run from the
registry in tests/bijector_cases.py; this file checks what the registry does
not: the autoregressive triangle, models, saving, the command line.
"""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfflows
from tfflows.cli import build_parser, main
from tfflows.data.tabular import load_csv, split_rows, split_table
from tfflows.layers import MaskedAutoregressiveLayer, StandardizeLayer
from tfflows.layers.made import MADE, make_ordering
from tfflows.models.vector import vector_defaults

LOG_2PI = math.log(2.0 * math.pi)


def randomize(model_or_layer, seed: int, scale: float = 0.3) -> None:
    """Non-trivial weights: a fresh MADE's zero output layer makes its step the identity."""
    rng = np.random.default_rng(seed)
    for w in model_or_layer.trainable_weights:
        w.assign(w + scale * rng.standard_normal(w.shape).astype(w.dtype))


def gaussian_table(n: int, seed: int = 0) -> np.ndarray:
    """Correlated 3-D Gaussian rows far from zero mean and unit scale."""
    rng = np.random.default_rng(seed)
    a = np.array([[1.0, 0.0, 0.0], [5.0, 10.0, 0.0], [0.0, 0.02, 0.1]])
    return (rng.standard_normal((n, 3)) @ a.T + [0.0, 100.0, 5.0]).astype("float32")


# -- the autoregressive property ------------------------------------------------------------


@pytest.mark.parametrize(  # IAF's spline pass runs once per dimension: its Jacobians are in the full suite
    "direction, transform",
    [
        ("maf", "affine"),
        ("iaf", "affine"),
        ("maf", "spline"),
        pytest.param("iaf", "spline", marks=pytest.mark.slow),
    ],
    ids=["maf-affine", "iaf-affine", "maf-spline", "iaf-spline"],
)
@pytest.mark.parametrize("ordering", ["natural", "reversed", "random"])
def test_forward_jacobian_is_triangular_in_the_ordering(direction, ordering, transform):
    dim = 5
    layer = MaskedAutoregressiveLayer(
        hidden_units=16,
        ordering=ordering,
        direction=direction,
        seed=3,
        transform=transform,
        num_bins=4,
        bound=3.0,
        dtype="float64",
    )
    layer.build((None, dim))
    randomize(layer, seed=1)
    degrees = np.array(layer.degrees)
    assert sorted(degrees) == list(range(1, dim + 1))
    x = tf.constant(np.random.default_rng(2).standard_normal((64, dim)))
    with tf.GradientTape() as tape:
        tape.watch(x)
        z, log_det = layer.bijector().forward_and_log_det(x)
    jac = tape.batch_jacobian(z, x).numpy()  # [batch, out i, in j]
    later = degrees[None, :] > degrees[:, None]  # input j after output i in the ordering
    assert np.all(jac[:, later] == 0.0), "an output depends on an input after it"
    # Not triangular by accident of zeros: every earlier input reaches its output
    # (for some example: a ReLU may be off for one).
    earlier = degrees[None, :] < degrees[:, None]
    assert np.all(np.abs(jac[:, earlier]).max(axis=0) > 0.0)
    diag = np.abs(np.diagonal(jac, axis1=1, axis2=2))
    np.testing.assert_allclose(log_det.numpy(), np.log(diag).sum(-1), atol=1e-12, rtol=1e-12)
    np.testing.assert_allclose(log_det.numpy(), np.linalg.slogdet(jac)[1], atol=1e-10, rtol=1e-10)


def test_made_outputs_ignore_later_inputs_and_context_reaches_all():
    made = MADE(make_ordering(4, "random", seed=7), hidden_units=12, num_hidden=2, dtype="float64")
    made.build((None, 4), (None, 2))
    randomize(made, seed=4)
    x = tf.constant(np.random.default_rng(0).standard_normal((3, 4)))
    c = tf.constant(np.random.default_rng(1).standard_normal((3, 2)))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, c])
        h = made(x, c)
    jx = tape.batch_jacobian(h, x).numpy()  # [batch, 2D, D]
    deg = np.tile(np.array(made.ordering), 2)
    allowed = np.array(made.ordering)[None, :] < deg[:, None]
    assert np.all(jx[:, ~allowed] == 0.0)
    assert np.all(np.abs(tape.batch_jacobian(h, c).numpy()).sum(-1) > 0)


def test_made_spline_outputs_are_parameter_major_and_autoregressive():
    # 3K − 1 = 11 parameters per feature (K = 4): unit p·D + i belongs to feature i.
    made = MADE(make_ordering(3, "reversed"), hidden_units=8, params_per_feature=11, dtype="float64")
    made.build((None, 3))
    randomize(made, seed=6)
    x = tf.constant(np.random.default_rng(0).standard_normal((4, 3)))
    with tf.GradientTape() as tape:
        tape.watch(x)
        h = made(x)
    assert h.shape == (4, 33)
    jx = tape.batch_jacobian(h, x).numpy()
    deg = np.tile(np.array(made.ordering), 11)
    assert np.all(jx[:, ~(np.array(made.ordering)[None, :] < deg[:, None])] == 0.0)
    assert made.get_config()["params_per_feature"] == 11


def test_spline_step_is_identity_at_start_and_outside_its_bound():
    layer = MaskedAutoregressiveLayer(
        hidden_units=8, transform="spline", num_bins=5, bound=2.0, dtype="float64"
    )
    layer.build((None, 3))
    x = tf.constant(np.random.default_rng(1).uniform(-6.0, 6.0, (50, 3)))
    z, log_det = layer.bijector().forward_and_log_det(x)  # zero output layer: equal bins, unit slopes
    np.testing.assert_allclose(z.numpy(), x.numpy(), atol=1e-12)
    np.testing.assert_allclose(log_det.numpy(), 0.0, atol=1e-12)
    randomize(layer, seed=2)
    x = tf.constant([[-0.5, 0.3, 0.1], [2.5, -3.0, 7.0]], tf.float64)
    z = layer.bijector().forward(x).numpy()
    assert np.all(np.abs(z[0] - x.numpy()[0]) > 1e-3)  # moved inside [−B, B]
    np.testing.assert_array_equal(z[1], x.numpy()[1])  # identity outside it


# -- VectorMAF ---------------------------------------------------------------------------------


MAF_VARIANTS = {
    "maf": ("maf", "affine"),
    "iaf": ("iaf", "affine"),
    "maf-spline": ("maf", "spline"),
    "iaf-spline": ("iaf", "spline"),
}


@pytest.fixture(scope="module")
def mafs():
    out = {}
    for key, (direction, transform) in MAF_VARIANTS.items():
        keras.utils.set_random_seed(0)
        model = tfflows.VectorMAF(
            3,
            num_steps=3,
            width=16,
            direction=direction,
            ordering="random",
            seed=2,
            standardize=True,
            transform=transform,
            num_bins=4,
            bound=3.0,
        )
        model.initialize(gaussian_table(256))
        randomize(model, seed=5, scale=0.1 if transform == "affine" else 0.3)
        out[key] = model
    return out


@pytest.mark.parametrize(
    "direction", [pytest.param(d, marks=pytest.mark.slow) if d == "maf-spline" else d for d in MAF_VARIANTS]
)
def test_sample_encode_and_log_prob_agree(mafs, direction):
    model = mafs[direction]
    x = model.sample(64, seed=3)
    eps = tf.random.stateless_normal((64, 3), seed=[3, 0])
    # The sample is the decoded base draw; encoding gives the draw back.
    np.testing.assert_allclose(model.encode(x).numpy(), eps.numpy(), atol=2e-3, rtol=1e-3)
    z, log_det = model.flow().forward_and_log_det(x)
    want = -0.5 * tf.reduce_sum(z**2, -1) - 1.5 * LOG_2PI + log_det
    np.testing.assert_allclose(model.log_prob(x).numpy(), want.numpy(), atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(
        model.distribution.log_prob(x).numpy(), model.log_prob(x).numpy(), atol=1e-3, rtol=1e-5
    )
    # Sampling traces into tf.function (the D-pass direction is a static loop).
    traced = tf.function(lambda: model.sample(8, seed=3))()
    np.testing.assert_allclose(traced.numpy(), x[:8].numpy(), atol=1e-3, rtol=1e-4)


def test_iaf_and_maf_directions_are_inverse_maps_of_the_same_steps():
    # The same MADE weights give IAF's latent → data map as MAF's data → latent one inverted.
    keras.utils.set_random_seed(1)
    maf = MaskedAutoregressiveLayer(hidden_units=8, direction="maf", dtype="float64")
    iaf = MaskedAutoregressiveLayer(hidden_units=8, direction="iaf", dtype="float64")
    maf.build((None, 4))
    iaf.build((None, 4))
    randomize(maf, seed=9)
    for a, b in zip(iaf.weights, maf.weights):
        a.assign(b)
    v = tf.constant(np.random.default_rng(3).standard_normal((5, 4)))
    y_maf, _ld_maf = maf.bijector().forward_and_log_det(tf.identity(v))
    y_iaf, _ld_iaf = iaf.bijector().forward_and_log_det(tf.identity(v))
    # MAF: z = (x − μ(x)) e^{−α(x)}; IAF: z solves x = z e^{α(z)} + μ(z) — both exact inverses:
    back, _ = iaf.bijector().inverse_and_log_det(y_iaf)
    np.testing.assert_allclose(back.numpy(), v.numpy(), atol=1e-12)
    back, _ = maf.bijector().inverse_and_log_det(y_maf)
    np.testing.assert_allclose(back.numpy(), v.numpy(), atol=1e-12)
    assert not np.allclose(y_maf.numpy(), y_iaf.numpy())


def test_spline_maf_config_and_keras_file_round_trip(mafs, tmp_path):
    model = mafs["maf-spline"]
    config = json.loads(json.dumps(model.get_config()))
    assert (config["transform"], config["num_bins"], config["bound"]) == ("spline", 4, 3.0)
    clone = tfflows.VectorMAF.from_config(config)
    x = gaussian_table(16, seed=4)
    clone.initialize(x)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone.log_prob(x).numpy(), model.log_prob(x).numpy(), rtol=1e-6)
    path = str(tmp_path / "spline.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_allclose(loaded.log_prob(x).numpy(), model.log_prob(x).numpy(), rtol=1e-6)
    # The spline transform is really in use: an affine MAF of the same shape has other weights.
    assert [w.shape for w in loaded.trainable_weights] != [
        w.shape for w in tfflows.VectorMAF(3, num_steps=3, width=16).trainable_weights
    ]


def test_vector_maf_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"ordering must be one of .*got 'sorted'"):
        tfflows.VectorMAF(3, ordering="sorted")
    with pytest.raises(ValueError, match=r"direction must be one of .*got 'both'"):
        tfflows.VectorMAF(3, direction="both")
    with pytest.raises(ValueError, match="num_steps must be a positive integer, got 0"):
        tfflows.VectorMAF(3, num_steps=0)
    with pytest.raises(ValueError, match=r"transform must be one of .*got 'cubic'"):
        tfflows.VectorMAF(3, transform="cubic")
    with pytest.raises(ValueError, match="num_bins must be an integer >= 2, got 1"):
        tfflows.VectorMAF(3, transform="spline", num_bins=1)
    with pytest.raises(ValueError, match="bound must be > 0, got 0"):
        tfflows.VectorMAF(3, transform="spline", bound=0.0)
    with pytest.raises(ValueError, match=r"expected x of shape \[batch, 3\], got shape \(2, 4\)"):
        tfflows.VectorMAF(3, num_steps=1, width=4).log_prob(np.zeros((2, 4), "float32"))


def test_conditional_maf_uses_its_context():
    keras.utils.set_random_seed(0)
    model = tfflows.VectorMAF(2, num_steps=2, width=8, num_classes=3)
    randomize(model, seed=2)
    x = np.random.default_rng(0).standard_normal((6, 2)).astype("float32")
    a, b = model.log_prob(x, np.zeros(6, "int32")), model.log_prob(x, np.full(6, 2, "int32"))
    assert np.all(np.abs(a.numpy() - b.numpy()) > 1e-4)
    assert model.sample(4, context=1, seed=0).shape == (4, 2)


# -- Standardize -----------------------------------------------------------------------------


def test_standardize_only_model_scores_the_fitted_gaussian_exactly():
    # A fresh MAF step is the identity (zero output layer): what remains is Standardize.
    x = gaussian_table(500, seed=1)
    model = tfflows.VectorMAF(3, num_steps=1, width=4, standardize=True)
    assert model.initialize(x) == 1 and model.is_initialized
    mean, std = x.astype(np.float64).mean(0), x.astype(np.float64).std(0)
    want = (-0.5 * ((x - mean) / std) ** 2 - 0.5 * LOG_2PI - np.log(std)).sum(-1)
    np.testing.assert_allclose(model.log_prob(x).numpy(), want, atol=2e-4, rtol=1e-5)
    # In data units: a scale of 10 costs log 10 nats against the standardised density.
    z = model.encode(x).numpy()
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-4)
    np.testing.assert_allclose(model.decode(z).numpy(), x, atol=1e-3, rtol=1e-5)


def test_standardize_layer_log_det_is_minus_sum_log_scale():
    layer = StandardizeLayer(dtype="float64")
    x = np.random.default_rng(0).normal([1.0, -2.0], [3.0, 0.5], size=(400, 2))
    assert layer.initialize(tf.constant(x)) is True
    assert layer.initialize(tf.constant(x + 7.0)) is False  # once only
    y, log_det = layer.bijector().forward_and_log_det(tf.constant(x))
    np.testing.assert_allclose(log_det.numpy(), -np.log(x.std(0)).sum() * np.ones(400), rtol=1e-12)
    np.testing.assert_allclose(y.numpy().mean(0), 0.0, atol=1e-12)
    assert layer.initialize(tf.constant(x + 7.0), force=True) is True
    np.testing.assert_allclose(layer.mean.numpy(), x.mean(0) + 7.0, rtol=1e-12)


def test_initialise_once_survives_save_and_load(tmp_path):
    x = gaussian_table(200)
    model = tfflows.VectorRealNVP(3, num_steps=2, width=8, standardize=True)
    model.initialize(x)
    randomize(model, seed=1, scale=0.1)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_config()["standardize"] is True and loaded.is_initialized
    before = loaded.log_prob(x).numpy()
    np.testing.assert_allclose(before, model.log_prob(x).numpy(), rtol=1e-6)
    # Neither initialize nor fit refits the statistics of a loaded model.
    assert loaded.initialize(x * 3.0 + 1.0) == 0
    loaded.compile(optimizer=keras.optimizers.SGD(0.0))
    loaded.fit(x * 3.0 + 1.0, epochs=1, batch_size=100, verbose=0)
    np.testing.assert_allclose(loaded.log_prob(x).numpy(), before, rtol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda: tfflows.VectorRealNVP(3, num_steps=2, width=8, standardize=True),
        lambda: tfflows.VectorGlow(3, num_steps=1, width=8, standardize=True),
        # The spline flows' steps cost a few times the affine ones': trained in the full suite.
        pytest.param(
            lambda: tfflows.VectorNSF(3, num_steps=1, width=8, standardize=True), marks=pytest.mark.slow
        ),
        lambda: tfflows.VectorMAF(3, num_steps=2, width=8, standardize=True),
        pytest.param(
            lambda: tfflows.VectorMAF(3, num_steps=2, width=8, standardize=True, transform="spline"),
            marks=pytest.mark.slow,
        ),
    ],
    ids=["realnvp", "glow", "nsf", "maf", "maf-spline"],
)
def test_vector_models_train_and_report_nats_per_dim(make):
    keras.utils.set_random_seed(0)
    model = make()
    x = gaussian_table(256)
    model.initialize(x)
    initial = {w.path: w.numpy().copy() for w in model.trainable_weights}
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(x, epochs=2, batch_size=64, validation_data=(x[:64],), verbose=0).history
    assert "nats_per_dim" in history and "bits_per_dim" not in history
    assert "val_nats_per_dim" in history
    np.testing.assert_allclose(history["nats_per_dim"], np.array(history["loss"]) / 3, rtol=1e-6)
    assert all(np.any(w.numpy() != initial[w.path]) for w in model.trainable_weights)
    # Standardized data units: the fitted model is near the data's Gaussian entropy, not off by
    # log(scale) terms (entropy of gaussian_table: log|det A| + 1.5 log(2πe) ≈ 4.26 nats).
    assert abs(history["val_loss"][-1] - 4.257) < 0.5


def test_image_models_keep_bits_per_dim():
    model = tfflows.Glow((4, 4, 1), num_levels=1, num_steps=1, width=4, num_bits=3)
    assert model.per_dim_metric == "bits_per_dim"
    assert tfflows.VectorMAF(2, num_steps=1, width=4).per_dim_metric == "nats_per_dim"


# -- CSV files and the command line -----------------------------------------------------------


def write_csv(path, rows, header="a,b,c,label"):
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


@pytest.fixture
def table_csv(tmp_path):
    x = gaussian_table(150, seed=2)
    return write_csv(tmp_path / "table.csv", [(*r, f"id{i}") for i, r in enumerate(x)]), x


def test_load_csv_selects_columns_and_splits_reproducibly(table_csv):
    path, x = table_csv
    values, names = load_csv(path, ["c", "a"])
    assert names == ["c", "a"] and values.shape == (150, 2)
    np.testing.assert_allclose(values, x[:, [2, 0]], rtol=1e-6)
    train, val = split_rows(150, 0.2, seed=4)
    assert len(val) == 30 and len(set(train) | set(val)) == 150 and not set(train) & set(val)
    np.testing.assert_array_equal(split_rows(150, 0.2, seed=4)[1], val)


@pytest.mark.parametrize(
    "cell, message",
    [
        ("abc", r"column 'b', row 3: expected a number, got 'abc'"),
        ("", r"column 'b', row 3: expected a number, got a missing value"),
        ("nan", r"column 'b', row 3: expected a finite number, got 'nan'"),
    ],
    ids=["text", "missing", "nan"],
)
def test_csv_errors_name_column_and_row(tmp_path, capsys, cell, message):
    rows = [(1, 2, 3, "x"), (4, 5, 6, "y"), (7, cell, 9, "z")]
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(ValueError, match=message):
        load_csv(path, ["a", "b"])
    code = main(
        [
            "train",
            "--dataset",
            str(path),
            "--columns",
            "a,b",
            "--model",
            "maf",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 2
    assert "column 'b', row 3" in capsys.readouterr().err


def test_csv_unknown_column_and_non_numeric_default(table_csv):
    path, _ = table_csv
    with pytest.raises(
        ValueError,
        match=r"expected columns from \['a', 'b', 'c', 'label'\], "
        r"got unknown \['d'\]",
    ):
        load_csv(path, ["a", "d"])
    with pytest.raises(ValueError, match="column 'label', row 1: expected a number, got 'id0'"):
        load_csv(path)


@pytest.mark.slow
def test_cli_trains_maf_on_a_csv_end_to_end(table_csv, tmp_path, capsys):
    path, x = table_csv
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--dataset",
            str(path),
            "--columns",
            "a,b,c",
            "--model",
            "maf",
            "--steps",
            "1",
            "--levels",
            "2",
            "--width",
            "16",
            "--epochs",
            "4",
            "--batch-size",
            "32",
            "--lr",
            "3e-3",
            "--warmup",
            "10",
            "--patience",
            "2",
            "--out",
            str(out),
            "--verbose",
            "0",
        ]
    )
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "results.json").read_text())
    assert result["model"] == "VectorMAF" and "test_bits_per_dim" not in result
    assert result["test_nats_per_dim"] == pytest.approx(result["test_loss_nats"] / 3, rel=1e-6)
    # Three parts that share no row: the test figure comes from rows early stopping never saw.
    assert result["examples"] == {"train": 90, "validation": 30, "test": 30}
    assert result["test_split"].startswith("test rows of the CSV file")
    # --batch-size, --warmup and --width were given; the dropout comes from the table's size.
    assert result["chosen_from_data"] == {"dropout": vector_defaults(90, 3)["dropout"]}
    model = keras.models.load_model(out / "model.keras")
    assert isinstance(model, tfflows.VectorMAF) and model.standardize and model.is_initialized
    # Standardize was fitted on exactly the training rows of the seeded split.
    train_rows = split_table(150, 0.2, 0.2, seed=0)["train"]
    mean = next(w for w in model.weights if w.path.endswith("standardize/mean")).numpy()
    np.testing.assert_allclose(mean, x[train_rows].mean(0), rtol=1e-5)
    # Data units: within reach of the Gaussian's entropy (4.26 nats), not of a standardised one.
    assert 3.5 < result["test_loss_nats"] < 6.0
    capsys.readouterr()
    assert main(["evaluate", str(out / "model.keras")]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["examples"] == 30
    assert evaluated["loss"] == pytest.approx(result["test_loss_nats"], rel=1e-5)
    assert evaluated["nats_per_dim"] == pytest.approx(result["test_nats_per_dim"], rel=1e-5)
    # Early stopping restored the best epoch: on the validation rows, the best validation loss.
    assert main(["evaluate", str(out / "model.keras"), "--split", "validation"]) == 0
    validated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert validated["loss"] == pytest.approx(min(result["val_loss_per_epoch"]), rel=1e-5)
    assert validated["loss"] != pytest.approx(result["test_loss_nats"], rel=1e-6)


def test_split_table_parts_share_no_row_and_keep_the_training_minimum():
    parts = split_table(150, 0.2, 0.1, seed=4)
    assert {k: len(v) for k, v in parts.items()} == {"test": 15, "validation": 30, "train": 105}
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(150))
    again = split_table(150, 0.2, 0.1, seed=4)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    assert not np.array_equal(parts["test"], split_table(150, 0.2, 0.1, seed=5)["test"])
    # No test fraction: no test rows (the two-way split of runs recorded before the three-way one).
    assert len(split_table(20, 0.2, 0.0, seed=0)["test"]) == 0
    with pytest.raises(
        ValueError,
        match=r"expected at least 16 rows for a split with 10 training rows, "
        r"validation fraction 0\.2 and test fraction 0\.2; got 12 rows \(8 would train\)",
    ):
        split_table(12, 0.2, 0.2, seed=0)
    with pytest.raises(ValueError, match=r"val_fraction \+ test_fraction must leave training rows"):
        split_table(100, 0.5, 0.5, seed=0)
    with pytest.raises(ValueError, match=r"test_fraction must be in \[0, 1\), got -0\.1"):
        split_table(100, 0.2, -0.1, seed=0)


def test_batch_size_and_warmup_follow_the_data(capsys):
    from tfflows.cli.common import apply_data_defaults, batch_size_for, warmup_for

    assert batch_size_for(60_000, vector=False) == 64
    assert [batch_size_for(n, vector=True) for n in (10, 107, 341, 600, 1078, 50_000)] == [
        16,
        16,
        16,
        32,
        64,
        64,
    ]
    assert warmup_for(10_000, None) == (200, None) and warmup_for(300, None) == (30, None)
    kept, warning = warmup_for(300, 500)
    assert kept == 500 and "--warmup 500 is not shorter than the run's 300 planned steps" in warning
    args = build_parser().parse_args(["train", "--dataset", "t.csv", "--epochs", "10"])
    assert apply_data_defaults(args, 107, vector=True) == {"batch_size": 16, "warmup": 6}
    assert (args.batch_size, args.warmup) == (16, 6)
    args = build_parser().parse_args(["train", "--epochs", "2", "--warmup", "400", "--batch-size", "64"])
    assert apply_data_defaults(args, 6400, vector=False) == {}
    assert "--warmup 400 is not shorter than the run's 200 planned steps" in capsys.readouterr().err


@pytest.mark.slow  # a tfflows train run
def test_cli_builds_a_spline_maf(table_csv, tmp_path, capsys):
    path, _ = table_csv
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--dataset",
            str(path),
            "--columns",
            "a,b,c",
            "--model",
            "maf-spline",
            "--steps",
            "1",
            "--levels",
            "1",
            "--width",
            "8",
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--out",
            str(out),
            "--verbose",
            "0",
        ]
    )
    assert code == 0, capsys.readouterr().err
    config = keras.models.load_model(out / "model.keras").get_config()
    assert (config["transform"], config["num_bins"], config["bound"]) == ("spline", 8, 5.0)
    assert json.loads((out / "results.json").read_text())["model"] == "VectorMAF"


def test_cli_rejects_maf_on_images(tmp_path, capsys):
    code = main(["train", "--model", "maf", "--max-train", "8", "--out", str(tmp_path / "r")])
    assert code == 2
    assert "--model maf is a vector flow" in capsys.readouterr().err
