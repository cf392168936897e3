"""Dtype policies: float64 models end to end, and training under mixed_bfloat16 / mixed_float16.

A model's flow (data path, log-dets, 1×1 conv determinants, ActNorm, priors,
base log-prob, loss) runs in the policy's variable dtype; under a mixed policy
only the conditioner networks compute in bfloat16 / float16.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from tfflows import Glow, VectorRealNVP
from tfflows.layers import CouplingLayer, MaskedAutoregressiveLayer, SplineCouplingLayer
from tfflows.training.step import nll

from helpers import registered_models

MIXED = ("mixed_bfloat16", "mixed_float16")
LOW = {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}

# Every registered model (helpers.registered_models), unconditioned, trains under each mixed policy.
MODELS = registered_models()


@pytest.fixture
def global_policy():
    """``global_policy(name)`` sets Keras's global dtype policy; float32 comes back afterwards."""
    try:
        yield keras.mixed_precision.set_global_policy
    finally:
        keras.mixed_precision.set_global_policy("float32")


def images(n: int = 64, seed: int = 0, shape=(8, 8, 1), num_bits: int = 8) -> np.ndarray:
    """Dequantized digits (8×8, or every other pixel for 4×4) as pixel levels in [0, 2**num_bits)."""
    step = 8 // shape[0]
    digits = load_digits().images[:n, ::step, ::step, None].repeat(shape[2], axis=-1)  # values 0..16
    noise = np.random.default_rng(seed).uniform(0.0, 1.0, digits.shape)
    return (np.floor(digits * 15.0 / 2 ** (8 - num_bits)) + noise).astype(np.float32)


def points(n: int = 64, seed: int = 0, dim: int = 2) -> np.ndarray:
    """A correlated Gaussian off the origin (each feature leaning on the one before)."""
    z = np.random.default_rng(seed).standard_normal((n, dim))
    mix = np.eye(dim) * 0.4 + np.eye(dim, k=1) * 0.8
    mix[0, 0] = 1.0
    return (z @ mix + np.resize([1.0, -2.0], dim)).astype(np.float32)


def data_for(model, n: int = 64) -> np.ndarray:
    if model.spec.models_pixel_levels:
        return images(n, shape=model.event_shape, num_bits=model.num_bits)
    return points(n, dim=model.num_dims)


def randomize(model, scale: float = 0.05, seed: int = 0) -> None:
    """Adds noise to every trainable weight: zero-initialised conditioners would hide the maths."""
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        v.assign(v.numpy() + scale * rng.standard_normal(v.shape).astype(v.dtype))


def float_weights(model) -> list:
    return [w for w in model.weights if keras.backend.is_float_dtype(w.dtype)]


# -- float64 ------------------------------------------------------------------------------


def glow_pair():
    """A float32 Glow and a float64 Glow holding the same (initialised, non-trivial) weights."""
    kwargs = dict(event_shape=(8, 8, 1), num_levels=2, num_steps=2, width=8)
    m32 = Glow(**kwargs)
    m32.initialize(images(32))
    randomize(m32)
    m64 = Glow(**kwargs, dtype="float64")
    m64.set_weights(
        [w.astype(np.float64) if np.issubdtype(w.dtype, np.floating) else w for w in m32.get_weights()]
    )
    return m32, m64


def test_float64_glow_log_prob_is_float64_and_matches_float32(assert_close):
    m32, m64 = glow_pair()
    assert {w.dtype for w in float_weights(m64)} == {"float64"}
    x = images(16)
    lp32, lp64 = m32.log_prob(x), m64.log_prob(x)
    assert lp64.dtype == tf.float64 and lp32.dtype == tf.float32
    # Relative to |log_prob| (about 300 nats here): float32 round-off, not a different model.
    assert_close(
        "float64_vs_float32_log_prob", lp64.numpy(), lp32.numpy().astype(np.float64), atol=0.0, rtol=1e-4
    )
    # Not float32 maths upcast at the end: they differ by float32 round-off, not by zero.
    assert np.max(np.abs(lp64.numpy() - lp32.numpy())) > 0.0


def test_float64_glow_is_float64_end_to_end(assert_close):
    _, m64 = glow_pair()
    x = images(8)
    z = m64.encode(x)
    back = m64.decode(z)
    samples = m64.sample(4, temperature=0.5, seed=1)
    assert z.dtype == back.dtype == samples.dtype == tf.float64
    assert m64.distribution.dtype == tf.float64
    # float64 invertibility: far below what float32 reaches (~1e-4 pixel levels here).
    assert_close("float64_round_trip", back.numpy(), x.astype(np.float64), atol=1e-9, rtol=0.0)
    loss, per_dim, scaled, _ = nll(m64, x)
    assert loss.dtype == per_dim.dtype == scaled.dtype == tf.float64


def test_float64_model_log_det_matches_autodiff_jacobian(assert_close):
    # The whole float64 Glow (ActNorm, LU 1×1 convs, couplings, split and top priors) on
    # 8×8×1 images: log|det ∂z/∂x| against the 64×64 Jacobian of the flat latent.
    _, m64 = glow_pair()
    x = tf.constant(images(3).astype(np.float64))
    flow = m64.flow()
    with tf.GradientTape() as tape:
        tape.watch(x)
        z, log_det = flow.forward_and_log_det(x)
    jacobian = tape.batch_jacobian(z, x).numpy().reshape(3, 64, 64)
    want = np.linalg.slogdet(jacobian)[1]
    assert_close("float64_model_jacobian", log_det.numpy(), want, atol=1e-8, rtol=1e-10)


@pytest.mark.parametrize(
    "make",
    [
        lambda: CouplingLayer(
            "checkerboard",
            1,
            scale_fn="tanh",
            conditioner="resnet",
            hidden_channels=8,
            num_blocks=1,
            dtype="float64",
        ),
        lambda: SplineCouplingLayer("half", 0, num_bins=4, hidden_units=8, dtype="float64"),
        lambda: MaskedAutoregressiveLayer(8, 1, transform="spline", num_bins=4, dtype="float64"),
    ],
    ids=["affine_coupling_resnet", "spline_coupling", "maf_spline"],
)
def test_float64_layer_log_det_matches_autodiff_jacobian(make, assert_close):
    layer = make()
    shape = (3, 4, 4, 2) if layer.event_ndims == 3 else (3, 4)
    rng = np.random.default_rng(0)
    layer.build(shape)
    for w in layer.trainable_weights:
        w.assign(w.numpy() + 0.3 * rng.standard_normal(w.shape))
    assert {w.dtype for w in layer.weights} == {"float64"}
    x = tf.constant(rng.standard_normal(shape))
    flat = tf.reshape(x, (3, -1))
    with tf.GradientTape() as tape:
        tape.watch(flat)
        y, log_det = layer(tf.reshape(flat, shape))
        y_flat = tf.reshape(y, (3, -1))
    assert y.dtype == log_det.dtype == tf.float64
    want = np.linalg.slogdet(tape.batch_jacobian(y_flat, flat).numpy())[1]
    assert np.ptp(want) > 1e-3, "the layer must not be volume-preserving for this check"
    assert_close("float64_layer_jacobian", log_det.numpy(), want, atol=1e-10, rtol=1e-10)


@pytest.mark.slow
def test_float64_model_trains_in_float64():
    model = VectorRealNVP(event_shape=2, num_steps=2, width=8, dtype="float64")
    model.compile(keras.optimizers.Adam(1e-2))
    history = model.fit(points(64), batch_size=16, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert {v.dtype for v in model.trainable_variables} == {"float64"}
    assert {
        v.dtype for v in model.optimizer.variables if keras.backend.is_float_dtype(v.dtype) and len(v.shape)
    } == {"float64"}
    assert model.loss_tracker.dtype == "float64"


def test_float64_glow_saves_and_loads_as_float64(tmp_path, assert_close):
    _, m64 = glow_pair()
    m64.compile(keras.optimizers.Adam(1e-3))
    path = tmp_path / "glow64.keras"
    m64.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.dtype_policy.name == "float64"
    assert {w.dtype for w in float_weights(loaded)} == {"float64"}
    x = images(8)
    got, want = loaded.log_prob(x), m64.log_prob(x)
    assert got.dtype == tf.float64
    assert_close("float64_save_load", got.numpy(), want.numpy(), atol=1e-12, rtol=0.0)


def test_layers_take_the_model_policy_not_the_global_one(global_policy):
    global_policy("mixed_bfloat16")
    model = Glow((8, 8, 1), num_levels=1, num_steps=1, width=8, dtype="float64")
    sublayers = [layer for top in model.flow_layers for layer in top._flatten_layers()]
    assert {layer.dtype_policy.name for layer in sublayers} == {"float64"}
    assert {w.dtype for w in float_weights(model)} == {"float64"}


@pytest.mark.parametrize("policy", ["bfloat16", "float16"])
def test_low_precision_variables_are_refused(policy):
    with pytest.raises(ValueError, match="mixed_bfloat16"):
        Glow((8, 8, 1), num_levels=1, num_steps=1, width=8, dtype=policy)


# -- mixed policies -------------------------------------------------------------------------


class LossLog(keras.callbacks.Callback):
    """The running mean loss after every batch of one epoch."""

    def on_train_begin(self, logs=None):
        self.means = []

    def on_train_batch_end(self, batch, logs=None):
        self.means.append(float(logs["loss"]))


def train_20_steps(model, x: np.ndarray, batch: int = 16) -> tuple[float, float]:
    """Trains 20 steps; returns the mean loss of the first 5 and of the last 5."""
    log = LossLog()
    data = tf.data.Dataset.from_tensor_slices(x).shuffle(len(x), seed=0).repeat().batch(batch)
    model.fit(data, steps_per_epoch=20, epochs=1, verbose=0, callbacks=[log])
    m = log.means
    assert len(m) == 20
    # The tracker averages the steps taken so far: recover the two five-step means from it.
    return m[4], (20 * m[19] - 15 * m[14]) / 5


@functools.cache
def trained_under(name: str, policy: str) -> tuple[keras.Model, float, float]:
    """``MODELS[name]`` built, compiled and trained 20 steps under ``policy``: (model, first, last).

    Kept for the module: the .keras round trip of a mixed model reads the Glow trained here
    instead of training one of its own (a new model traces its train step again).
    """
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = MODELS[name]()
        model.compile(keras.optimizers.Adam(3e-3))
        first, last = train_20_steps(model, data_for(model, 320))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return model, first, last


@pytest.mark.slow
@pytest.mark.parametrize("policy", MIXED)
@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_trains_20_steps_under_mixed_policy(name, policy, global_policy):
    model, first, last = trained_under(name, policy)
    global_policy(policy)
    uses_scaling = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert uses_scaling == (policy == "mixed_float16")
    assert int(model.nonfinite_steps.numpy()) == 0 and not model.stopped_on_nonfinite
    assert np.isfinite(first) and np.isfinite(last)
    assert last < first, f"{name} under {policy}: loss went from {first:.4f} to {last:.4f}"
    # The flow and its loss stay in float32; the conditioners compute in the low dtype.
    assert model.log_prob(data_for(model, 4)).dtype == tf.float32
    assert {w.dtype for w in float_weights(model)} == {"float32"}


def test_conditioner_computes_low_precision_and_log_det_stays_float32(global_policy):
    global_policy("mixed_bfloat16")
    x = tf.constant(np.random.default_rng(0).standard_normal((2, 4, 4, 4)), tf.float32)
    layer = CouplingLayer("channel", 0, hidden_channels=8)
    y, log_det = layer(x)
    net = layer.conditioner
    # Hidden layers compute in bfloat16; the output layer (the transform's parameters) in float32.
    assert net.conv_mid(net.conv_in(x[..., :2])).dtype == tf.bfloat16
    assert net.conv_out.compute_dtype == "float32" and net(x[..., :2]).dtype == tf.float32
    assert net.conv_in.kernel.dtype == "float32"
    assert y.dtype == log_det.dtype == tf.float32

    maf = MaskedAutoregressiveLayer(8, 1)
    v = tf.constant(np.random.default_rng(1).standard_normal((3, 4)), tf.float32)
    z, maf_log_det = maf(v)
    assert maf.made.hidden_layers[0](v).dtype == tf.bfloat16
    assert maf.made(v).dtype == tf.float32
    assert z.dtype == maf_log_det.dtype == tf.float32


def test_mixed_glow_data_path_keeps_float32_precision(global_policy, assert_close):
    # bfloat16 has 8 significant bits: a data path in it would miss pixel levels by ~1.
    global_policy("mixed_bfloat16")
    model = Glow((8, 8, 1), num_levels=2, num_steps=2, width=8)
    model.initialize(images(32))
    randomize(model)
    x = images(8)
    z = model.encode(x)
    assert z.dtype == tf.float32
    assert_close("mixed_round_trip", model.decode(z).numpy(), x, atol=2e-3, rtol=0.0)
    # model(x) does not autocast the pixels to bfloat16 first.
    assert model(x).dtype == tf.float32
    np.testing.assert_array_equal(model(x).numpy(), model.log_prob(x).numpy())


@pytest.mark.slow
def test_loss_scale_overflow_lowers_the_scale_and_training_goes_on(global_policy):
    global_policy("mixed_float16")
    keras.utils.set_random_seed(0)
    model = Glow((8, 8, 1), num_levels=2, num_steps=2, width=8)
    # 2^30 times a loss of ~300 overflows every float16 conditioner gradient.
    model.compile(keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(3e-3), initial_scale=2.0**30))
    model.initialize(images(32))
    before = [v.numpy().copy() for v in model.trainable_variables]
    model.fit(images(320), batch_size=16, epochs=1, verbose=0)
    scale = float(model.optimizer.dynamic_scale.numpy())
    assert scale < 2.0**30
    assert int(model.nonfinite_steps.numpy()) == 0 and not model.stopped_on_nonfinite
    changed = [not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables)]
    assert any(changed), "no update was applied after the scale came down"


def test_nonfinite_loss_still_stops_training_under_loss_scaling(global_policy):
    global_policy("mixed_float16")
    model = VectorRealNVP(event_shape=2, num_steps=2, width=8)
    model.compile(keras.optimizers.Adam(1e-2))
    model.initialize(points(64))
    x = points(64)
    x[3, 0] = np.nan
    before = [v.numpy().copy() for v in [*model.trainable_variables, *model.optimizer.variables]]
    with pytest.warns(RuntimeWarning, match="stopped training"):
        model.fit(x, batch_size=64, epochs=3, verbose=0)
    assert model.stopped_on_nonfinite and int(model.nonfinite_steps.numpy()) == 1
    after = [v.numpy() for v in [*model.trainable_variables, *model.optimizer.variables]]
    assert all(np.array_equal(b, a) for b, a in zip(before, after)), "the skipped step changed state"


def test_nonfinite_update_under_loss_scaling_is_undone_and_stops(global_policy):
    # Finite scaled gradients, but a learning rate that sends the weights to inf.
    global_policy("mixed_float16")
    model = VectorRealNVP(event_shape=2, num_steps=2, width=8)
    model.compile(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(1e38), initial_scale=1.0))
    model.initialize(points(64))
    randomize(model, 0.5)
    before = [v.numpy().copy() for v in model.trainable_variables]
    with pytest.warns(RuntimeWarning, match="stopped training"):
        model.fit(points(64) * 100.0, batch_size=64, epochs=3, verbose=0)
    assert model.stopped_on_nonfinite
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables))


@pytest.mark.slow
@pytest.mark.parametrize("policy", MIXED)
def test_mixed_glow_keras_file_loads(policy, tmp_path, global_policy, assert_close):
    model, _, _ = trained_under("glow-image", policy)  # trained 20 steps under the policy
    global_policy(policy)
    path = tmp_path / "mixed.keras"
    model.save(path)
    x = data_for(model, 4)
    want = model.log_prob(x).numpy()
    global_policy("float32")  # the file, not the global policy, decides
    loaded = keras.models.load_model(path)
    assert loaded.dtype_policy.name == policy
    assert {
        layer.conditioner.compute_dtype
        for layer in loaded.flow_layers
        if getattr(layer, "conditioner", None) is not None
    } == {LOW[policy]}
    assert (policy == "mixed_float16") == isinstance(loaded.optimizer, keras.optimizers.LossScaleOptimizer)
    assert_close("mixed_save_load", loaded.log_prob(x).numpy(), want, atol=0.0, rtol=1e-6)


@pytest.mark.slow
def test_float64_glow_exports_the_float32_signatures_of_its_model_card(tmp_path, assert_close):
    from tfflows.export import describe_signatures, export_saved_model

    _, m64 = glow_pair()
    path = export_saved_model(m64, tmp_path / "glow64" / "1")
    serve = tf.saved_model.load(path).signatures
    card = describe_signatures(m64)
    pixels = np.random.default_rng(3).integers(0, 256, size=(4, *m64.event_shape)).astype("uint8")
    out = serve["log_prob"](images=tf.constant(pixels))
    assert out["log_prob"].dtype == tf.float32 == out["bits_per_dim"].dtype
    want = m64.log_prob(pixels)  # float64, scored at the same bin centres
    assert_close(
        "float64_export_log_prob",
        out["log_prob"].numpy().astype(np.float64),
        want.numpy(),
        atol=0.0,
        rtol=1e-6,
    )
    latents = serve["encode"](images=tf.constant(pixels))["latents"]
    sampled = serve["sample"](
        num_samples=tf.constant(2), temperature=tf.constant(0.5), seed=tf.constant(1, tf.int64)
    )
    assert latents.dtype == sampled["images_float"].dtype == tf.float32
    # Every signature's outputs are declared float32 in the card, and are float32.
    for name, entry in card["signatures"].items():
        for tensor, spec in entry["outputs"].items():
            if spec["dtype"].startswith("float"):
                assert spec["dtype"] == "float32", (name, tensor)
                assert serve[name].structured_outputs[tensor].dtype == tf.float32, (name, tensor)
