"""Where separately written features meet: dicts × sample weights, TarFlow's noise × pixels and dicts, dtypes.

Each test pins one combination a review of the merged issue-9 work checked:
the ones that were broken (sample weights of dict inputs, TarFlow's training
noise and label dropout on TFDS dicts and uint8 pixels) and two that worked
but were covered by no test (a float64 model fitting uint8 pixels,
ReduceLROnPlateau under ``mixed_float16``). Models are tiny: 8×8×1 images,
one level, two steps, 8 or 16 hidden units.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfflows.models.glow import Glow
from tfflows.models.tarflow import TarFlow
from tfflows.training import make_optimizer
from tfflows.training.step import step_seed

N = 16


def pixels(n: int = N, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 1)).astype(np.uint8)


def labels(n: int = N, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 3, n).astype(np.int32)


def glow(**kwargs) -> Glow:
    return Glow(event_shape=(8, 8, 1), num_levels=1, num_steps=2, width=8, **kwargs)


def weights(n: int = N) -> np.ndarray:
    """Weights that make the weighted mean far from the plain one: 0 for the first half."""
    return np.where(np.arange(n) < n // 2, 0.0, np.linspace(1.0, 3.0, n)).astype(np.float32)


def weighted_nll(model, x, context, w) -> float:
    lp = model.log_prob(x, context).numpy().astype(np.float64)
    return float(-(w * lp).sum() / w.sum())


# -- sample weights of dict inputs -------------------------------------------------------


@pytest.mark.parametrize("conditional", [False, True], ids=["plain", "conditional"])
def test_dict_sample_weights_weigh_evaluate_and_a_fit_with_zero_weights_changes_no_weight(
    conditional, assert_close
):
    """One model per conditioning for both checks: the fit with zero weights leaves it as it was.

    (Merged from test_evaluate_of_a_dict_weighs_by_sample_weight and
    test_fit_of_a_dict_with_zero_weights_changes_no_weight, which built the same model each.)
    """
    model = glow(num_classes=3 if conditional else None)
    x, c, w = pixels(), labels(), weights()
    model.initialize({"image": x, "label": c})
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    # A fit whose sample weights are all 0 changes no weight.
    before = [v.numpy().copy() for v in model.trainable_variables]
    history = model.fit(
        {"image": x, "label": c}, sample_weight=np.zeros(N, np.float32), batch_size=8, epochs=1, verbose=0
    ).history
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables))
    assert np.isnan(history["loss"][0])  # no step was applied
    assert int(model.nonfinite_steps.numpy()) == 0
    # Evaluate of a dict weighs by sample weight.
    # Was: an IndexError for a plain model, and the weights silently dropped for a conditional one.
    got = model.evaluate(
        {"image": x, "label": c}, sample_weight=w, batch_size=8, verbose=0, return_dict=True
    )["loss"]
    want = weighted_nll(model, x, c if conditional else None, w)
    plain = weighted_nll(model, x, c if conditional else None, np.ones(N))
    assert abs(want - plain) > 1e-3  # the weights matter for this data
    assert_close("dict evaluate weighted loss", got, want, atol=0.0, rtol=1e-5)
    if conditional:  # a dict without its labels takes y as the context
        # (Merged from test_conditional_dict_without_labels_takes_y_as_context.)
        got = model.evaluate({"image": x}, c, sample_weight=w, batch_size=8, verbose=0, return_dict=True)[
            "loss"
        ]
        assert_close("dict + y weighted loss", got, weighted_nll(model, x, c, w), atol=0.0, rtol=1e-5)


def test_dataset_of_dict_weight_triples_initializes_fits_and_evaluates(assert_close):
    # Keras's (x, y, sample_weight) with a TFDS dict as x: was "unsupported type dict".
    x, w = pixels(), weights()
    ds = tf.data.Dataset.from_tensor_slices(({"image": x}, np.zeros(N, np.float32), w)).batch(8)
    model = glow()
    assert model.initialize(ds) == 2  # both ActNorms
    model.compile(optimizer="adam")
    history = model.fit(ds, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    got = model.evaluate(ds, verbose=0, return_dict=True)["loss"]
    assert_close("dict dataset weighted loss", got, weighted_nll(model, x, None, w), atol=0.0, rtol=1e-5)


# -- TarFlow's training noise ------------------------------------------------------------


class RecordingTarFlow(TarFlow):
    """TarFlow that keeps the (x, context) each training step scores (run eagerly)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def augment(self, x, context, seed):
        x, context = super().augment(x, context, seed)
        self.seen.append((np.asarray(x), None if context is None else np.asarray(context)))
        return x, context


def tarflow(**kwargs) -> RecordingTarFlow:
    model = RecordingTarFlow(
        event_shape=(8, 8, 1), patch_size=4, num_steps=2, depth=1, width=16, heads=2, **kwargs
    )
    model.compile(optimizer="adam", run_eagerly=True)
    return model


@pytest.mark.parametrize("source", ["uint8_array", "float_dict_dataset"])
def test_tarflow_gaussian_noise_reaches_integer_pixels_and_dicts(source):
    # Was: uint8 pixels got only U[0, 1) dequantization, and a dict's "image" no noise at all.
    tf.random.set_seed(0)
    model = tarflow(noise="gaussian", noise_std=0.25)
    x = pixels(32)
    levels = x + np.random.default_rng(2).uniform(0.0, 1.0, x.shape).astype(np.float32)
    if source == "uint8_array":
        model.fit(x, batch_size=32, epochs=1, verbose=0, shuffle=False)
    else:
        model.fit(tf.data.Dataset.from_tensor_slices({"image": levels}).batch(32), epochs=1, verbose=0)
    seen = model.seen[0][0]
    sigma = model.level_noise_std  # 32 levels
    spread = float(np.std(seen - (x if source == "uint8_array" else levels)))
    # U[0, 1) dequantization alone has a spread of 0.29 levels; N(0, 32²) plus it about 32.
    assert 0.8 * sigma < spread < 1.2 * sigma, (spread, sigma)


def test_tarflow_label_dropout_reaches_tfds_dicts():
    # Was: the dropped one-hot labels went to a "context" key that the dict's "label" shadowed.
    tf.random.set_seed(0)
    model = tarflow(num_classes=3, label_dropout=0.5)
    x, c = pixels(32), labels(32)
    model.fit(tf.data.Dataset.from_tensor_slices({"image": x, "label": c}).batch(32), epochs=1, verbose=0)
    context = model.seen[0][1]
    assert context.shape == (32, 3) and context.dtype.kind == "f"
    kept = context.sum(axis=1) == 1.0
    assert np.array_equal(np.argmax(context[kept], axis=1), c[kept])
    assert 0 < int(np.sum(~kept)) < 32  # some, not all, dropped to the null class
    assert np.all(context[~kept] == 0.0)


# -- dtype seams that worked but were untested -------------------------------------------


def test_float64_model_dequantizes_uint8_to_float64_and_fits_with_weights():
    model = glow(dtype="float64")
    model.compile(optimizer="adam")
    x = pixels()
    levels = model.spec.check_x(tf.constant(x), values=False, seed=step_seed(model))
    assert levels.dtype == tf.float64
    offset = levels.numpy() - x
    assert offset.min() >= 0.0 and offset.max() < 1.0 and np.std(offset) > 0.1  # U[0, 1) noise
    history = model.fit(x, sample_weight=weights(), batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    assert model.log_prob(x[:2]).dtype == tf.float64


def test_reduce_lr_on_plateau_scales_scheduled_adam_under_loss_scaling(tmp_path):
    model = glow(dtype="mixed_float16")
    model.compile(optimizer=make_optimizer(1e-3, warmup_steps=2))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    # min_delta so large that no epoch counts as an improvement after the first.
    reduce = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9)
    model.fit(pixels(), batch_size=8, epochs=2, verbose=0, callbacks=[reduce])
    inner = model.optimizer.inner_optimizer
    assert float(inner.learning_rate_scale.numpy()) == 0.5
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(5e-4)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.optimizer, keras.optimizers.LossScaleOptimizer)
    assert float(loaded.optimizer.inner_optimizer.learning_rate_scale.numpy()) == 0.5
