"""Conditioner dropout of the vector models: on in training steps only, saved, refused where it cannot be."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfflows
from tfflows.layers import MADE, MLP

VECTOR_MODELS = {
    "realnvp": lambda **kw: tfflows.VectorRealNVP(4, num_steps=2, width=16, **kw),
    "glow": lambda **kw: tfflows.VectorGlow(4, num_steps=2, width=16, **kw),
    "nsf": lambda **kw: tfflows.VectorNSF(4, num_steps=2, width=16, num_bins=4, **kw),
    "maf": lambda **kw: tfflows.VectorMAF(4, num_steps=2, width=16, **kw),
}
X = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")


def _randomized(model):
    """The model with every weight drawn at random (a fresh conditioner outputs zeros whatever drops)."""
    rng = np.random.default_rng(1)
    for w in model.trainable_weights:
        w.assign((0.1 * rng.normal(size=w.shape)).astype(w.dtype))
    return model


@pytest.mark.parametrize("name", list(VECTOR_MODELS))
def test_dropout_acts_in_training_calls_only(name):
    keras.utils.set_random_seed(0)
    model = _randomized(VECTOR_MODELS[name](dropout=0.3))
    seed = tf.constant([3, 0], tf.int64)
    scored = model.log_prob(X).numpy()
    np.testing.assert_array_equal(model(X).numpy(), scored)  # inference: the whole network
    np.testing.assert_array_equal(model.log_prob(X).numpy(), scored)  # and deterministic
    first = model(X, training=True, seed=seed).numpy()
    second = model(X, training=True, seed=seed).numpy()
    assert np.all(np.isfinite(first))
    assert np.abs(first - scored).max() > 1e-3, "training=True left the conditioners whole"
    assert np.abs(first - second).max() > 1e-3, "every training call should draw a new mask"
    plain = _randomized(VECTOR_MODELS[name]())
    trained_view = plain(X, training=True, seed=seed).numpy()
    np.testing.assert_allclose(trained_view, plain.log_prob(X).numpy(), rtol=1e-6)


def test_fit_steps_see_dropout_and_evaluate_does_not():
    """With a learning rate of 0 a step's loss is the batch NLL of a thinned network, not log_prob's."""
    for rate, differs in ((0.0, False), (0.5, True)):
        keras.utils.set_random_seed(0)
        model = _randomized(VECTOR_MODELS["realnvp"](dropout=rate))
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), run_eagerly=True)
        loss = model.fit(X, batch_size=8, epochs=1, verbose=0, shuffle=False).history["loss"][0]
        nll = float(-np.mean(model.log_prob(X).numpy()))
        assert model.evaluate(X, batch_size=8, verbose=0)[0] == pytest.approx(nll, rel=1e-5)
        assert (abs(loss - nll) > 1e-3) is differs, (rate, loss, nll)


@pytest.mark.parametrize("name", list(VECTOR_MODELS))
def test_dropout_is_saved_and_loaded(name, tmp_path):
    model = VECTOR_MODELS[name](dropout=0.2)
    assert model.get_config()["dropout"] == 0.2
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.dropout == 0.2
    np.testing.assert_allclose(loaded.log_prob(X).numpy(), model.log_prob(X).numpy(), rtol=1e-6)


def test_conditioners_without_dropout_keep_their_config():
    """Files saved before dropout existed load, and new ones without it say nothing of it."""
    assert "dropout" not in MLP([8], 4).get_config()
    assert MLP([8], 4, dropout=0.1).get_config()["dropout"] == 0.1
    assert "dropout" not in MADE([1, 2, 3]).get_config()
    for make in VECTOR_MODELS.values():  # the shipped models' cards hold configs without it
        assert "dropout" not in make().get_config()
    assert MADE([1, 2, 3], dropout=0.1).get_config()["dropout"] == 0.1


def test_made_with_dropout_stays_autoregressive():
    """Dropping hidden units never lets output i see input j ≥ i (in the ordering)."""
    keras.utils.set_random_seed(0)
    made = MADE([1, 2, 3, 4], hidden_units=32, num_hidden=2, params_per_feature=1, dropout=0.5)
    made.build((None, 4))
    rng = np.random.default_rng(2)
    for w in made.trainable_weights:
        w.assign(rng.normal(size=w.shape).astype("float32"))
    x = tf.constant(rng.normal(size=(1, 4)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = made(x, training=True)
    jacobian = tape.batch_jacobian(out, x)[0].numpy()  # [output i, input j]
    assert np.all(jacobian[np.triu_indices(4)] == 0.0)
    assert np.any(jacobian[np.tril_indices(4, -1)] != 0.0)


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5, "0.1", True, float("nan")])
def test_bad_dropout_rates_are_refused(rate):
    with pytest.raises(ValueError, match=r"VectorNSF: dropout must be a rate in \[0, 1\), got"):
        tfflows.VectorNSF(4, dropout=rate)
    with pytest.raises(ValueError, match=r"dropout must be a rate in \[0, 1\)"):
        MLP([8], 4, dropout=rate)


@pytest.mark.parametrize("backprop", ["recompute", "reversible"])
def test_dropout_needs_the_stored_forward_pass(backprop):
    want = f"VectorRealNVP: dropout needs backprop='store' \\(backprop='{backprop}'"
    with pytest.raises(ValueError, match=want):
        tfflows.VectorRealNVP(4, dropout=0.1, backprop=backprop)
    assert tfflows.VectorRealNVP(4, dropout=0.0, backprop=backprop).dropout == 0.0


def test_vector_defaults_regularise_small_tables_only():
    from tfflows.models.vector import SMALL_TABLE_ROWS, TINY_TABLE_ROWS, vector_defaults

    small = vector_defaults(398, 30)
    assert small["dropout"] > 0 and small["width"] >= 128
    # The fewer the rows, the more dropout: a tiny table drops more units than a small one.
    assert vector_defaults(TINY_TABLE_ROWS - 1, 30)["dropout"] > small["dropout"]
    assert vector_defaults(TINY_TABLE_ROWS, 30) == small
    large = vector_defaults(SMALL_TABLE_ROWS, 30)
    assert large["dropout"] == 0.0
    for rows, features in ((0, 3), (10, 0), (2.5, 3), (True, 3)):
        with pytest.raises(
            ValueError, match=r"vector_defaults: num_(rows|features) must be a positive integer"
        ):
            vector_defaults(rows, features)


def _train_args(*flags):
    from tfflows.cli import build_parser

    return build_parser().parse_args(["train", "--dataset", "two_moons", *flags])


def test_cli_fills_size_and_dropout_of_vector_models_from_the_table():
    from tfflows.cli.common import apply_data_defaults, build_model
    from tfflows.models.vector import vector_defaults

    args = _train_args("--model", "nsf")
    chosen = apply_data_defaults(args, 300, True, 4)
    sizes = vector_defaults(300, 4)
    assert {k: chosen[k] for k in ("width", "dropout")} == {k: sizes[k] for k in ("width", "dropout")}
    model = build_model(args, (4,), None, None)
    assert (model.width, model.dropout) == (sizes["width"], sizes["dropout"])

    given = _train_args("--model", "maf", "--steps", "3", "--width", "16", "--dropout", "0.2")
    chosen = apply_data_defaults(given, 300, True, 4)
    assert not {"width", "dropout"} & set(chosen)  # the user's values stay
    model = build_model(given, (4,), None, None)
    assert (model.num_steps, model.width, model.dropout) == (3, 16, 0.2)


def test_cli_refuses_dropout_for_image_models_and_bad_rates():
    from tfflows.cli.common import build_model

    with pytest.raises(ValueError, match=r"got --dropout 0\.1, which it does not use"):
        build_model(_train_args("--model", "glow", "--dropout", "0.1"), (8, 8, 1), 5, None)
    with pytest.raises(SystemExit) as exit_info:
        _train_args("--dropout", "1")
    assert exit_info.value.code == 2


def test_weight_decay_reaches_the_optimizer():
    from tfflows.training import make_optimizer

    assert make_optimizer(1e-3, 10, weight_decay=0.01).weight_decay == 0.01
    assert make_optimizer(1e-3, 0, weight_decay=0.01).weight_decay == 0.01
    assert _train_args("--weight-decay", "0.01").weight_decay == 0.01
