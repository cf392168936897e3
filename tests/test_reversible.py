"""backprop="recompute" and "reversible": the same gradients and training as "store".

1. Gradients of the mean NLL equal the stored-activation gradients (every
   weight and the input), float32 and float64, eagerly and in tf.function,
   for every registered model whose steps invert in one pass
   (``helpers.registered_models``) and a class-conditional additive Glow.
2. The inversion the reversible backward pass relies on is exact to round-off.
3. ``fit`` from the same start follows the same loss curve; ActNorm is
   initialised from data as before; the non-finite guard still skips a bad
   step; mixed_bfloat16 trains; MirroredStrategy gives the single-device result.
   (recompute shares reversible's custom gradient, so training runs check reversible.)
4. ``backprop`` survives get_config and a .keras save; bad values raise.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfflows
from tfflows.reversible import BACKPROP_MODES, inversion_error

from helpers import derived, inverts_in_one_pass, registered_models

MODES = ("recompute", "reversible")

# name -> a builder taking dtype= and backprop=: every registered model whose steps invert in one
# pass (helpers.inverts_in_one_pass: reversible backprop refuses MAF's and TarFlow's sequential
# inverses, as test_reversible_refuses_steps_that_invert_one_feature_at_a_time checks), and one
# variant derived from the registered Glow: additive couplings with class labels.
MODELS: dict[str, Callable[..., Any]] = {
    name: make for name, make in registered_models().items() if inverts_in_one_pass(make())
}
MODELS["glow-image-additive-num_classes"] = functools.partial(
    derived, registered_models("image", ["num_classes"])["glow-image-num_classes"], coupling="additive"
)


def _data(shape, dtype, seed=0, num_bits=8):
    rng = np.random.default_rng(seed)
    if len(shape) == 3:
        x = rng.integers(0, 2**num_bits, (4, *shape)) + rng.random((4, *shape))
    else:
        x = rng.standard_normal((4, *shape)) * np.resize([1.0, 2.0, 0.5, 1.0], shape) + 1.0
    return x.astype(dtype)


def _data_for(model, dtype, seed=0):
    return _data(model.event_shape, dtype, seed, model.num_bits if model.spec.models_pixel_levels else 8)


def _context_for(model):
    return None if model.num_classes is None else np.array([0, 2, 1, 2]) % model.num_classes


def _twins(name, dtype, modes=("store", *MODES)):
    """One model per backprop mode, with the same perturbed, data-initialised weights."""
    models = {}
    for mode in modes:
        keras.utils.set_random_seed(1)
        models[mode] = MODELS[name](dtype=dtype, backprop=mode)
    x, context = _data_for(models["store"], dtype), _context_for(models["store"])
    models["store"].initialize(x if context is None else (x, context))
    rng = np.random.default_rng(2)
    # Zero-initialised output convolutions would leave couplings without a weight gradient.
    start = [
        w + 0.05 * rng.standard_normal(w.shape).astype(w.dtype) if w.dtype.kind == "f" else w
        for w in models["store"].get_weights()
    ]
    for model in models.values():
        model.set_weights(start)
    return models, x, context


def _gradients(model, x, context, compiled):
    def loss_and_grads(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = -tf.reduce_mean(model.log_prob(x, context))
        return loss, tape.gradient(loss, [x, *model.trainable_variables])

    fn = tf.function(loss_and_grads) if compiled else loss_and_grads
    return fn(tf.constant(x))


# One Glow per dtype for the eager and the compiled comparison.
@pytest.fixture(scope="module", params=["float32", "float64"])
def glow_twins(request):
    return request.param, _twins("glow-image", request.param)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf_function"])
def test_glow_gradients_equal_stored_gradients(glow_twins, compiled, assert_close):
    dtype, (models, x, _) = glow_twins
    if compiled and dtype == "float64":
        pytest.skip("tf.function is checked in float32; float64 eagerly (tracing is the cost)")
    loss, want = _gradients(models["store"], x, None, compiled)
    # Round-off of the inversion (reversible) and of a reordered sum: a few ulps of the largest entry.
    rtol = 2e-5 if dtype == "float32" else 1e-12
    # Compiled, reversible only: recompute runs the same custom gradient (checked eagerly).
    for mode in ("reversible",) if compiled else MODES:
        got_loss, got = _gradients(models[mode], x, None, compiled)
        assert_close(f"{mode} loss", got_loss.numpy(), loss.numpy(), atol=0.0, rtol=rtol)
        assert len(got) == len(want) and all(g is not None for g in got)
        for g, w in zip(got, want):
            w = w.numpy()
            assert np.max(np.abs(w)) > 0  # every weight has a gradient to compare
            assert_close(f"{mode} gradient", g.numpy(), w, atol=rtol * np.max(np.abs(w)), rtol=0.0)


@pytest.mark.parametrize("name", [n for n in MODELS if n != "glow-image"])
def test_other_models_gradients_equal_stored_gradients(name, assert_close):
    models, x, context = _twins(name, "float32")
    _, want = _gradients(models["store"], x, context, compiled=False)
    for mode in MODES:
        _, got = _gradients(models[mode], x, context, compiled=False)
        for g, w in zip(got, want):
            w = w.numpy()
            assert_close(
                f"{mode} gradient ({name})", g.numpy(), w, atol=2e-5 * np.max(np.abs(w)) + 1e-30, rtol=0.0
            )


@pytest.mark.parametrize("name", ["glow-image", "realnvp-image"])
def test_reversible_runs_each_coupling_network_once_forward_and_once_backward(name, monkeypatch):
    """The backward pass inverts a coupling and reruns it on one conditioner pass, not two."""
    import tfflows.bijectors.coupling as coupling_module

    calls = []
    real = coupling_module.call_conditioner

    def counting(*args, **kwargs):
        calls.append(args[-1])  # the coupling's name
        return real(*args, **kwargs)

    monkeypatch.setattr(coupling_module, "call_conditioner", counting)
    models, x, _ = _twins(name, "float32", modes=("store", "reversible"))
    passes = {}
    for mode, model in models.items():
        calls.clear()
        _gradients(model, x, None, compiled=False)
        passes[mode] = {n: calls.count(n) for n in set(calls)}
    assert passes["store"] and set(passes["store"].values()) == {1}
    assert passes["reversible"] == {n: 2 for n in passes["store"]}


@pytest.mark.parametrize("transform", ["affine", "spline"])
@pytest.mark.parametrize(
    "kind, parity, indices, shape",
    [
        ("half", 0, None, (6,)),
        ("half", 1, [0, 2], (6,)),
        ("token_channel", 1, [1, 3], (3, 4)),
        ("token_spatial", 0, None, (4, 3)),
        ("token_spatial", 1, [0, 2], (4, 3)),
        ("checkerboard", 1, None, (4, 4, 2)),
        ("channel", 0, None, (4, 4, 4)),
    ],
)
def test_one_pass_coupling_gradients_equal_the_tape_for_every_mask(
    kind, parity, indices, shape, transform, assert_close
):
    """The coupling's input and gradients from its output alone, for split and pattern masks."""
    from tfflows.bijectors.coupling import Coupling
    from tfflows.bijectors.transforms import make_transform
    from tfflows.reversible import _coupling_gradients

    rng = np.random.default_rng(3)
    factor = tf.Variable(1.3)  # a learned tanh factor, read where the transform uses it

    def coupling(net):
        t = make_transform(
            transform, 4, 3.0, "coupling", scale_fn="tanh", tanh_factor=factor, maps_to_latent=True
        )
        return Coupling(net, t, kind, parity, indices)

    x = tf.constant(rng.standard_normal((2, *shape)).astype("float32"))
    probe = coupling(lambda c: None)
    cond, moving = probe._mask.split(x)
    net = keras.layers.Dense(probe.transform.params_per_entry * moving.shape[-1])
    net(cond)
    for v in net.weights:
        v.assign(0.3 * rng.standard_normal(v.shape).astype("float32"))
    step = coupling(net)  # a fixed bijector is its own plan step
    # Splines have no tanh factor.
    variables = [v.value for v in net.trainable_variables] + ([factor] if transform == "affine" else [])
    dy = tf.constant(rng.standard_normal((2, *shape)).astype("float32"))
    dld = tf.constant([0.7, -1.1])
    with tf.GradientTape() as tape:
        tape.watch(x)
        tape.watch(variables)
        y, log_det = step.forward_and_log_det(x)
    want = tape.gradient([y, log_det], [x, *variables], output_gradients=[dy, dld])
    back, dx, _, got = _coupling_gradients(step, y, None, dy, dld, variables)
    # The spline's inverse solves a quadratic: a few float32 ulps of values up to ~3.
    assert_close(f"one-pass coupling inverse ({kind})", back.numpy(), x.numpy(), atol=5e-5, rtol=0)
    assert np.max(np.abs(want[0].numpy())) > 0 and np.max(np.abs(want[-1].numpy())) > 0
    # A per-position Dense sees zeros at a pattern mask's moving positions and feeds only them:
    # its kernel then has no gradient at all, in both computations.
    for g, w in zip([dx, *got], want):
        assert g is not None
        assert_close(
            f"one-pass coupling gradient ({kind})",
            g.numpy(),
            w.numpy(),
            atol=5e-5 * np.max(np.abs(w.numpy())) + 1e-30,
            rtol=0,
        )


def test_reversible_gradients_reach_a_real_valued_context():
    x = _data((4,), "float32")
    context = tf.constant(np.random.default_rng(4).standard_normal((4, 2)).astype("float32"))
    grads = {}
    for mode in ("store", "reversible"):
        keras.utils.set_random_seed(1)
        model = tfflows.VectorGlow(4, num_steps=3, width=8, context_dim=2, backprop=mode)
        model.log_prob(x, context)
        if mode == "store":  # trainable only: a perturbed LU permutation would not invert
            start = [
                v.numpy() + 0.05 * np.random.default_rng(2).standard_normal(v.shape).astype("float32")
                for v in model.trainable_variables
            ]
        for v, w in zip(model.trainable_variables, start):
            v.assign(w)
        with tf.GradientTape() as tape:
            tape.watch(context)
            loss = -tf.reduce_mean(model.log_prob(x, context))
        grads[mode] = tape.gradient(loss, [context, *model.trainable_variables])
    assert np.max(np.abs(grads["store"][0].numpy())) > 0
    for g, w in zip(grads["reversible"], grads["store"]):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=0, atol=2e-5 * np.max(np.abs(w.numpy())))


def test_the_reversible_runs_invert_to_round_off(glow_twins):
    dtype, (models, x, _) = glow_twins
    error = inversion_error(models["store"]._plan.steps, tf.constant(x))
    # The first run starts at pixel levels in [0, 256): float32 spacing there is 3e-5.
    assert 0.0 <= error < (2e-4 if dtype == "float32" else 1e-9), error


@pytest.mark.slow
def test_fit_follows_the_stored_loss_curve_and_skips_a_non_finite_batch():
    histories, models = {}, {}
    for mode in ("store", "reversible"):
        keras.utils.set_random_seed(4)
        model = MODELS["glow-image"](backprop=mode)
        x = np.concatenate([_data_for(model, "float32", seed=3)] * 5)  # 20 examples: 5 batches of 4
        # per epoch, 4 epochs = 20 steps
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        # ActNorm set from the first batch, in fit, as for stored backprop.
        history = model.fit(x, batch_size=4, epochs=4, shuffle=False, verbose=0)
        assert model.is_initialized
        histories[mode], models[mode] = np.array(history.history["loss"]), model
    assert histories["store"][-1] < histories["store"][0] - 1.0  # it trained
    np.testing.assert_allclose(histories["reversible"], histories["store"], rtol=1e-4)
    for a, b in zip(models["reversible"].get_weights(), models["store"].get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-3)

    model = models["reversible"]
    before = [v.numpy().copy() for v in model.trainable_variables]
    bad = x[:4].copy()
    bad[1, 2, 3, 0] = np.nan
    with pytest.warns(RuntimeWarning, match="not finite"):
        model.fit(bad, batch_size=4, epochs=1, verbose=0)
    assert model.stopped_on_nonfinite and int(model.nonfinite_steps.numpy()) == 1
    for v, b in zip(model.trainable_variables, before):
        np.testing.assert_array_equal(v.numpy(), b)


def test_reversible_trains_under_mixed_bfloat16():
    keras.utils.set_random_seed(6)
    model = MODELS["glow-image"](backprop="reversible", dtype="mixed_bfloat16")
    x = _data_for(model, "float32", seed=5)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    losses = model.fit(x, batch_size=4, epochs=3, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    assert int(model.nonfinite_steps.numpy()) == 0


def test_backprop_is_kept_in_config_and_saves(tmp_path):
    model = MODELS["glow-image"](backprop="reversible")
    assert model.get_config()["backprop"] == "reversible"
    model.initialize(_data_for(model, "float32"))
    path = tmp_path / "glow.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.backprop == "reversible"
    x = _data_for(model, "float32", seed=7)
    np.testing.assert_allclose(loaded.log_prob(x), model.log_prob(x), rtol=1e-6)
    assert tfflows.Glow.from_config({**model.get_config(), "backprop": "store"}).backprop == "store"
    config = model.get_config()
    config.pop("backprop")  # a config saved before the option means "store"
    assert tfflows.Glow.from_config(config).backprop == "store"


@pytest.mark.parametrize("value", ["reverse", "", None, 1, "STORE"])
def test_an_unknown_backprop_names_the_choices(value):
    with pytest.raises(
        ValueError,
        match=r"backprop must be one of \('store', 'recompute', "
        r"'reversible'\), got " + repr(value).replace("(", r"\("),
    ):
        MODELS["glow-image"](backprop=value)


def test_reversible_refuses_steps_that_invert_one_feature_at_a_time():
    with pytest.raises(ValueError, match=r"inverts one token or feature at a time.*recompute"):
        tfflows.VectorMAF(3, num_steps=2, width=8, backprop="reversible")
    assert tfflows.VectorMAF(3, num_steps=2, width=8, backprop="recompute").backprop == "recompute"
    assert set(BACKPROP_MODES) == {"store", "recompute", "reversible"}


MIRRORED = textwrap.dedent("""
    import json
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import tfflows

    def make():
        return tfflows.Glow((4, 4, 1), num_levels=2, num_steps=1, width=8,
                            backprop="reversible")

    rng = np.random.default_rng(0)
    x = (rng.integers(0, 256, (8, 4, 4, 1)) + rng.random((8, 4, 4, 1))).astype("float32")
    keras.utils.set_random_seed(0)
    single = make()
    single.initialize(x)
    start = [w + 0.05 * rng.standard_normal(w.shape).astype("float32") for w in single.get_weights()]
    single.set_weights(start)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = make()
        mirrored.set_weights(start)
        mirrored.compile(optimizer=keras.optimizers.SGD(0.01))
    single.compile(optimizer=keras.optimizers.SGD(0.01))
    h1 = single.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0).history["loss"][0]
    h2 = mirrored.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0).history["loss"][0]
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(single.get_weights(), start))
    diff = max(float(np.max(np.abs(a - b)))
               for a, b in zip(single.get_weights(), mirrored.get_weights()))
    print("RESULT " + json.dumps({"single": h1, "mirrored": h2, "moved": moved, "diff": diff,
                                  "replicas": strategy.num_replicas_in_sync}))
""")


@pytest.mark.slow
def test_reversible_under_mirrored_strategy_equals_one_device():
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.environ.get("PYTHONPATH", "")]
        ),
    }
    done = subprocess.run(
        [sys.executable, "-c", MIRRORED], capture_output=True, text=True, timeout=300, env=env
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT ") :])
    assert out["replicas"] == 2
    np.testing.assert_allclose(out["mirrored"], out["single"], rtol=1e-5)
    assert out["moved"] > 1e-4 and out["diff"] < 1e-5 * max(1.0, out["moved"] * 100)
