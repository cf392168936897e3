"""Properties of the flow models: density, change of variables, latents, sampling, errors.

The cases (``CASES``) are every registered model's tiny configuration
(``helpers.registered_models``: a newly registered model is picked up here
without editing this file), plus conditional cases: RealNVP on images with a
context vector and NSF with class labels from the registry, and three
documented variants derived from registered configurations for what a tiny
entry does not show — Glow with additive couplings and plain 1×1
convolutions (class labels; vectors with a context), and a vector RealNVP
with shuffle permutations (class labels). Each property test runs over all
of them; the contract test runs every conditioning of every model through
the shared contract. A case's model is built once per session (``get_case``),
its ActNorm initialised from data and then N(0, 0.05²) noise added to every
float trainable weight: a fresh flow's zero-initialised output layers make the
couplings identities, and a test of the identity proves nothing. Tests never
train or otherwise change a cached model.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfflows import Glow, RealNVP, VectorGlow, VectorRealNVP
from tfflows.bijectors import FactorOut, ScalePixels

from helpers import CONDITIONED, CONTEXT_DIM, NUM_CLASSES, derived, registered_models

tfb = tfp.bijectors
tfd = tfp.distributions

IMAGE = (8, 8, 1)
BATCH = 4

TINY = registered_models(conditioning=(None, *CONDITIONED))

VARIANTS: dict[str, Callable[[], keras.Model]] = {
    # Additive (volume-preserving) couplings and plain (not LU) 1×1 convolutions.
    "glow-image-additive-plain-num_classes": lambda: derived(
        TINY["glow-image-num_classes"], coupling="additive", lu=False
    ),
    "glow-vector-additive-plain-context_dim": lambda: derived(
        TINY["glow-vector-context_dim"], coupling="additive", lu=False
    ),
    # Random (seeded) permutations between couplings instead of reversals.
    "realnvp-vector-shuffle-num_classes": lambda: derived(
        TINY["realnvp-vector-num_classes"], permutation="shuffle"
    ),
}
CASES: dict[str, Callable[[], keras.Model]] = {
    **registered_models(),
    "realnvp-image-context_dim": TINY["realnvp-image-context_dim"],
    "nsf-vector-num_classes": TINY["nsf-vector-num_classes"],
    **VARIANTS,
}
CASE_NAMES = list(CASES)
CONDITIONAL_CASES = [n for n in CASE_NAMES if n.endswith(CONDITIONED)]


@dataclasses.dataclass
class Case:
    model: Any
    x: np.ndarray  # a batch of valid data
    context: Any  # its context (None for unconditional models)

    def contexts(self, n: int, seed: int = 0) -> Any:
        return make_context(self.model, n, seed)


def pixels(n: int, shape=IMAGE, seed: int = 0, num_bits: int = 8) -> np.ndarray:
    """Uniformly dequantized random pixel levels in [0, 2**num_bits)."""
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, 2**num_bits, (n, *shape))
    return (levels + rng.uniform(size=levels.shape)).astype(np.float32)


def make_data(model, n: int, seed: int = 0) -> np.ndarray:
    if len(model.event_shape) == 3:
        return pixels(n, model.event_shape, seed, model.num_bits)
    return (1.5 * np.random.default_rng(seed).standard_normal((n, *model.event_shape))).astype(np.float32)


def make_context(model, n: int, seed: int = 0):
    rng = np.random.default_rng(seed + 1)
    if model.num_classes is not None:
        return (np.arange(n) % model.num_classes).astype(np.int32)
    if model.context_dim is not None:
        return rng.standard_normal((n, model.context_dim)).astype(np.float32)
    return None


def randomize(model, scale: float = 0.05, seed: int = 0) -> None:
    """Adds N(0, scale²) noise to every float trainable weight (zero-initialised ones too)."""
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        if "float" in str(v.dtype):
            v.assign(np.asarray(v.numpy() + scale * rng.standard_normal(v.shape), dtype=v.dtype))


@functools.cache
def get_case(name: str) -> Case:
    keras.utils.set_random_seed(0)
    model = CASES[name]()
    x = make_data(model, BATCH)
    context = make_context(model, BATCH)
    model.initialize(
        make_data(model, 32, seed=7)
        if context is None
        else (make_data(model, 32, seed=7), make_context(model, 32, seed=7))
    )
    randomize(model)
    return Case(model, x, context)


# The fast tier runs the per-case properties on the first registered model of each data kind and
# on the conditional cases; every other registered model runs them in the slow tier (the contract
# test runs each of them, with every conditioning, through its properties in the fast tier).
FAST_CASES = [*registered_models(first_per_kind=True), *(n for n in CASE_NAMES if n.endswith(CONDITIONED))]


@pytest.fixture(
    params=[pytest.param(n, marks=() if n in FAST_CASES else pytest.mark.slow) for n in CASE_NAMES],
    ids=CASE_NAMES,
)
def case(request) -> Case:
    return get_case(request.param)


def base_log_prob(z) -> np.ndarray:
    """Standard normal log-density of flat latents, computed apart from the models."""
    z = np.asarray(z, np.float64)
    return -0.5 * np.sum(z**2, axis=-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


def walk(steps, x):
    """Runs data → latent step by step through TFP's public API; returns (z, Σ log-det).

    FactorOut steps are opened: the factored-out channels are flattened into
    the latent by hand and the kept ones go through the inner steps.
    """
    total = tf.zeros(tf.shape(x)[:1])
    for step in steps:
        if isinstance(step, FactorOut):
            kept = x.shape[-1] - step.factored_shape[-1]
            z_inner, log_det = walk(step.inner.steps, x[..., :kept])
            out = tf.reshape(x[..., kept:], (x.shape[0], -1))
            x = tf.concat([out, z_inner], axis=-1)
        else:
            x_in = tf.identity(x)  # a fresh tensor: TFP caches results per input tensor
            log_det = step.forward_log_det_jacobian(x_in, event_ndims=step.forward_min_event_ndims)
            x = step.forward(tf.identity(x_in))
        total += log_det
    return x, total


# -- 1. the density integrates to one ----------------------------------------


def two_moons(n: int, seed: int = 0, noise: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, np.pi, n)
    upper = rng.random(n) < 0.5
    x = np.where(upper, np.cos(t), 1 - np.cos(t))
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    pts = np.stack([x - 0.5, y - 0.25], axis=-1) * 2.0
    return (pts + noise * rng.standard_normal((n, 2))).astype(np.float32)


def total_mass(model, lo: float = -6.0, hi: float = 6.0, n: int = 400) -> tuple[float, float]:
    """(∫ p over [lo, hi]² by the midpoint rule on an n×n grid, P(x outside the box)).

    The mass outside the box is estimated from 20 000 of the model's own
    samples, so the two add up to one whatever the flow's tails do.
    """
    h = (hi - lo) / n
    centres = lo + h * (np.arange(n) + 0.5)
    xx, yy = np.meshgrid(centres, centres)
    pts = np.stack([xx.ravel(), yy.ravel()], axis=-1).astype(np.float32)
    log_p = model.log_prob(pts).numpy().astype(np.float64)
    samples = model.sample(20_000, seed=0).numpy()
    outside = float(np.mean(np.any((samples < lo) | (samples > hi), axis=-1)))
    return float(np.sum(np.exp(log_p)) * h * h), outside


@pytest.fixture(scope="module")
def trained_moons():
    keras.utils.set_random_seed(1)
    model = VectorRealNVP(2, num_steps=4, width=32)
    data = two_moons(1024)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = float(-tf.reduce_mean(model.log_prob(data)))
    model.fit(np.tile(data, (20, 1)), batch_size=256, epochs=1, verbose=0)  # 80 steps
    return model, data, before


def test_trained_density_integrates_to_one(trained_moons):
    model, data, before = trained_moons
    after = float(-tf.reduce_mean(model.log_prob(data)))
    # The fresh flow (the standard normal) scores the data at ~3.9 nats; after
    # training it is ~1 nat better, so the integrated density is not the base.
    assert after < before - 0.8, (before, after)
    inside, outside = total_mass(model)
    assert outside < 0.01
    assert abs(inside + outside - 1.0) < 0.01


# Every registered vector model on 2-D data, where its density can be summed on a grid.
RANDOM_2D = {
    name: functools.partial(derived, make, event_shape=(2,))
    for name, make in registered_models("vector").items()
}


@pytest.mark.parametrize("name", list(RANDOM_2D))
def test_randomised_density_integrates_to_one(name):
    keras.utils.set_random_seed(2)
    model = RANDOM_2D[name]()
    randomize(model, scale=0.1, seed=3)
    pts = two_moons(64)
    # Non-trivial: the randomised flow is far from the standard normal.
    assert np.max(np.abs(model.log_prob(pts).numpy() - base_log_prob(pts))) > 0.1
    inside, outside = total_mass(model)
    assert outside < 0.02
    assert abs(inside + outside - 1.0) < 0.01


# -- 2. the change of variables --------------------------------------------


def test_log_prob_is_the_distribution_log_prob(case, assert_close):
    model, x, context = case.model, case.x, case.context
    want = model.distribution_for(context).log_prob(tf.constant(x)).numpy()
    assert_close("log_prob vs distribution", model.log_prob(x, context).numpy(), want, atol=1e-3, rtol=1e-5)
    if context is None:
        assert_close(
            "log_prob vs .distribution",
            model.log_prob(x).numpy(),
            model.distribution.log_prob(tf.constant(x)).numpy(),
            atol=1e-3,
            rtol=1e-5,
        )


def test_log_prob_is_the_change_of_variables_step_by_step(case, assert_close):
    """log p(x) = log N(f(x)) + Σ_steps log|det ∂f_i|, walking flow().steps by hand."""
    model, x, context = case.model, case.x, case.context
    z, log_det = walk(model.flow(context).steps, tf.constant(x))
    assert_close("encode vs step walk", model.encode(x, context).numpy(), z.numpy(), atol=1e-4, rtol=1e-4)
    want = base_log_prob(z) + log_det.numpy()
    assert_close("log_prob vs step walk", model.log_prob(x, context).numpy(), want, atol=1e-3, rtol=1e-5)
    # Non-trivial: the steps after the first (pixel scaling for images) add to the log-det.
    _, first = walk(model.flow(context).steps[:1], tf.constant(x))
    assert np.all(np.abs(log_det.numpy() - first.numpy()) > 1e-3)


JACOBIAN_CASES = [
    pytest.param(n, marks=() if n in FAST_CASES else pytest.mark.slow)
    for n in CASE_NAMES
    if "-vector" in n or n == "glow-image"
]


@pytest.mark.parametrize("name", JACOBIAN_CASES)
def test_log_det_is_the_autodiff_jacobian(name, assert_close):
    """log p(x) − log N(z) equals log|det ∂z/∂x| of the autodiff Jacobian (float64 slogdet)."""
    c = get_case(name)
    model = c.model
    x = tf.constant(c.x[:2])
    context = None if c.context is None else c.context[:2]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        z = model.encode(x, context)
        rows = [z[:, i] for i in range(model.num_dims)] if model.num_dims < 8 else None
    if rows is None:
        jac = tape.batch_jacobian(z, x).numpy().reshape(2, model.num_dims, model.num_dims)
    else:  # a few backward passes beat pfor (and its while-loop fallback for splines)
        jac = np.stack([tape.gradient(r, x).numpy() for r in rows], axis=1)
    del tape
    sign, log_abs_det = np.linalg.slogdet(jac.astype(np.float64))
    assert np.all(sign != 0)
    got = model.log_prob(x, context).numpy() - base_log_prob(z)
    assert_close("log-det vs jacobian", got, log_abs_det, atol=2e-3, rtol=1e-5)
    # Non-trivial: the steps mix dimensions, so the Jacobian is far from diagonal.
    off_diagonal = jac * (1.0 - np.eye(model.num_dims))
    assert np.max(np.abs(off_diagonal)) > 1e-2 * np.max(np.abs(jac))


def test_shifted_distribution_composes(case, assert_close):
    model, x, context = case.model, case.x, case.context
    want = model.log_prob(x, context).numpy()
    shifted = tfd.TransformedDistribution(model.distribution_for(context), tfb.Shift(1.0))
    assert_close(
        "Shift(1) ∘ distribution", shifted.log_prob(tf.constant(x + 1.0)).numpy(), want, atol=1e-3, rtol=1e-5
    )
    chained = tfd.TransformedDistribution(
        model.base_distribution, tfb.Chain([tfb.Shift(1.0), model.bijector_for(context)])
    )
    assert_close(
        "Chain([Shift(1), bijector])",
        chained.log_prob(tf.constant(x + 1.0)).numpy(),
        want,
        atol=1e-3,
        rtol=1e-5,
    )


@pytest.mark.parametrize("name", ["glow-image", "glow-vector"])
def test_iid_batch_as_one_event(name, assert_close):
    """tfd.Sample / tfd.Independent over the model: a log-prob summed over extra batch axes."""
    c = get_case(name)
    model = c.model
    shifted = c.x[:2] + 0.5
    if model.spec.models_pixel_levels:  # kept in [0, 2**num_bits), which log_prob checks
        shifted %= 2.0**model.num_bits
    xs = np.stack([c.x[:2], c.x[2:4], shifted], axis=1)  # [2, 3, *event]
    want = sum(model.log_prob(xs[:, i]).numpy() for i in range(3))
    got = tfd.Sample(model.distribution, 3).log_prob(tf.constant(xs)).numpy()
    assert_close("Sample(distribution, 3)", got, want, atol=3e-3, rtol=1e-5)
    indep = tfd.Independent(tfd.BatchBroadcast(model.distribution, [3]), reinterpreted_batch_ndims=1)
    assert_close(
        "Independent(BatchBroadcast)", indep.log_prob(tf.constant(xs)).numpy(), want, atol=3e-3, rtol=1e-5
    )


# -- 3. latents -----------------------------------------------------------


def test_encode_decode_round_trip(case, assert_close):
    model, x, context = case.model, case.x, case.context
    z = model.encode(tf.constant(x), context)
    assert z.shape == (BATCH, model.num_dims)
    assert model.num_dims == int(np.prod(model.event_shape))
    # Images are pixel levels in [0, 2**num_bits), at most 256: 1e-3 is ~4e-6 of 256 levels.
    atol = 1e-3 if len(model.event_shape) == 3 else 1e-4
    assert_close("decode(encode(x))", model.decode(tf.identity(z), context).numpy(), x, atol=atol, rtol=0)
    eps = np.random.default_rng(5).standard_normal((BATCH, model.num_dims)).astype(np.float32)
    x_back = model.decode(eps, context).numpy()
    if model.spec.bounded_levels:  # encode refuses levels outside [0, 2**num_bits): keep decodes inside
        inside = np.all((x_back >= 0) & (x_back < 2.0**model.num_bits), axis=(1, 2, 3))
        assert inside.any(), "no decoded image within the pixel range"
        x_back, eps = x_back[inside], eps[inside]
        context = None if context is None else np.asarray(context)[inside]
    back = model.encode(x_back, context).numpy()
    assert_close("encode(decode(z))", back, eps, atol=1e-3, rtol=0)


def test_split_latents_match_latent_shapes(case):
    model, x, context = case.model, case.x, case.context
    z = model.encode(x, context)
    pieces = model.split_latents(z)
    assert [tuple(p.shape) for p in pieces] == [(BATCH, *s) for s in model.latent_shapes]
    assert sum(int(np.prod(s)) for s in model.latent_shapes) == model.num_dims
    flat = tf.concat([tf.reshape(p, (BATCH, -1)) for p in pieces], axis=-1)
    np.testing.assert_array_equal(flat.numpy(), z.numpy())


def test_latent_shapes_of_multiscale_models():
    assert get_case("glow-image").model.latent_shapes == [(4, 4, 2), (2, 2, 8)]
    assert get_case("realnvp-image-context_dim").model.latent_shapes == [(4, 4, 2), (4, 4, 2)]
    assert get_case("glow-vector").model.latent_shapes == [(3,)]


def test_first_latent_level_is_the_factored_out_half():
    """Glow's first latent piece is what leaves at level 0, in the walk's order."""
    model = get_case("glow-image").model
    x = tf.constant(get_case("glow-image").x)
    steps = model.flow().steps
    split = next(i for i, s in enumerate(steps) if isinstance(s, FactorOut))
    h, _ = walk(steps[:split], x)
    kept = h.shape[-1] - steps[split].factored_shape[-1]
    first = model.split_latents(model.encode(x))[0]
    np.testing.assert_allclose(first.numpy(), h[..., kept:].numpy(), atol=1e-5)


def _empty_context(model):
    context = make_context(model, 1)
    return None if context is None else context[:0]


@pytest.mark.parametrize(
    "mode",
    [
        "eager",
        pytest.param("function", marks=pytest.mark.slow),
        pytest.param("function_unknown_batch", marks=pytest.mark.slow),
    ],
)
def test_an_empty_batch_gives_empty_results(case, mode):
    """log_prob, encode and decode of 0 examples: shapes [0], [0, D], [0, *event], no error."""
    model = case.model
    context = _empty_context(model)
    x = tf.zeros((0, *model.event_shape))
    z = tf.zeros((0, model.num_dims))
    calls = {
        "log_prob": (model.log_prob, x, (0,)),
        "encode": (model.encode, x, (0, model.num_dims)),
        "decode": (model.decode, z, (0, *model.event_shape)),
    }
    for what, (method, arg, shape) in calls.items():
        if mode == "eager":
            fn = method
        else:
            spec = tf.TensorSpec((None if mode == "function_unknown_batch" else 0, *arg.shape[1:]))
            fn = tf.function(
                method,
                input_signature=[spec]
                + (
                    []
                    if context is None
                    else [tf.TensorSpec((None, *context.shape[1:]), tf.as_dtype(context.dtype))]
                ),
            )
        out = fn(arg) if context is None else fn(arg, tf.constant(context))
        assert tuple(out.shape) == shape, (what, mode, out.shape)


@pytest.mark.parametrize(  # tracing the gradient is the cost: one model in the fast tier
    "name",
    [
        pytest.param("glow-image", marks=pytest.mark.slow),
        "realnvp-image-context_dim",
        pytest.param("nsf-vector-num_classes", marks=pytest.mark.slow),
    ],
)
def test_an_empty_batch_in_a_graph_gives_zero_gradients(name):
    """A replica with no examples: its loss sum is 0 and every gradient a finite zero."""
    model = get_case(name).model
    context = _empty_context(model)

    @tf.function(input_signature=[tf.TensorSpec((None, *model.event_shape))])
    def grads(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_sum(model.log_prob(x, context))
        return loss, tape.gradient(loss, model.trainable_variables)

    loss, gradients = grads(tf.zeros((0, *model.event_shape)))
    assert float(loss) == 0.0
    assert all(g is not None and not np.any(np.asarray(tf.convert_to_tensor(g))) for g in gradients)


def test_in_a_graph_values_are_not_checked_but_documented():
    """Eagerly NaN raises; in a tf.function (fit, XLA) NaN gives NaN log_prob, as documented."""
    model = get_case("glow-image").model
    x = pixels(2, num_bits=model.num_bits)
    x[1, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="expected finite x, got 1 inf or NaN"):
        model.log_prob(x)
    got = tf.function(model.log_prob)(tf.constant(x)).numpy()
    assert np.isfinite(got[0]) and np.isnan(got[1])


# -- 4. sampling ------------------------------------------------------------


@pytest.mark.parametrize("name", ["glow-image", "realnvp-image-context_dim", "glow-vector"])
def test_sample_zero_gives_an_empty_batch(name):
    model = get_case(name).model
    context = None if model.context_dim is None else np.zeros((model.context_dim,), np.float32)
    out = model.sample(0, seed=1, context=context)
    assert tuple(out.shape) == (0, *model.event_shape)


def test_sample_shape_dtype_and_seed(case):
    model = case.model
    context = case.contexts(5)
    a = model.sample(5, seed=11, context=context)
    assert a.shape == (5, *model.event_shape) and a.dtype == tf.float32
    assert np.all(np.isfinite(a.numpy()))
    np.testing.assert_array_equal(model.sample(5, seed=11, context=context).numpy(), a.numpy())
    b = model.sample(5, seed=12, context=context).numpy()
    assert np.min(np.abs(b - a.numpy()).reshape(5, -1).max(-1)) > 1e-3
    unseeded = [model.sample(5, context=context).numpy() for _ in range(2)]
    assert not np.allclose(*unseeded)


def test_distribution_sample_shape(case):
    model = case.model
    if model.is_conditional:
        # Three contexts: batch shape [3]; sample() draws one example per context.
        dist = model.distribution_for(case.contexts(3))
        assert dist.batch_shape == (3,)
        s = dist.sample(seed=(1, 2))
        assert dist.sample(2, seed=(1, 2)).shape == (2, 3, *model.event_shape)
    else:
        s = model.distribution.sample(3, seed=(1, 2))
    assert s.shape == (3, *model.event_shape) and np.all(np.isfinite(s.numpy()))


def test_temperature_zero_is_decode_of_zero(case):
    model = case.model
    context = case.contexts(3)
    zero = model.decode(tf.zeros((3, model.num_dims)), context).numpy()
    np.testing.assert_array_equal(model.sample(3, temperature=0.0, seed=4, context=context).numpy(), zero)
    np.testing.assert_array_equal(model.sample(3, temperature=0, context=context).numpy(), zero)


@pytest.mark.parametrize("name", ["glow-image", "realnvp-vector-shuffle-num_classes"])
@pytest.mark.parametrize("temperature", [0.4, 1.0])
def test_temperature_scales_latent_std(name, temperature):
    c = get_case(name)
    model = c.model
    n = 60 if len(model.event_shape) == 3 else 1000
    context = c.contexts(n)
    z = model.encode(model.sample(n, temperature=temperature, seed=3, context=context), context).numpy()
    # ≥ 3000 numbers: the std's sampling error is about 1.3 %.
    assert abs(z.std() / temperature - 1.0) < 0.06
    assert abs(z.mean()) < 0.06 * temperature


@pytest.mark.parametrize("name", CONDITIONAL_CASES)
def test_conditional_samples_depend_on_the_context(name):
    c = get_case(name)
    model = c.model
    if model.num_classes is not None:
        a = model.sample(4, seed=1, context=0).numpy()
        b = model.sample(4, seed=1, context=1).numpy()
        per_sample = model.sample(4, seed=1, context=np.zeros(4, np.int32)).numpy()
        np.testing.assert_array_equal(per_sample, a)
    else:
        a = model.sample(4, seed=1, context=c.contexts(4, seed=0)).numpy()
        b = model.sample(4, seed=1, context=c.contexts(4, seed=1)).numpy()
        one = c.contexts(1, seed=2)
        shared = model.sample(4, seed=1, context=one[0]).numpy()  # one vector for every sample
        np.testing.assert_array_equal(shared, model.sample(4, seed=1, context=np.repeat(one, 4, 0)).numpy())
    assert np.max(np.abs(a - b)) > 1e-3


@pytest.mark.slow
def test_trained_conditional_samples_land_on_their_class():
    keras.utils.set_random_seed(4)
    rng = np.random.default_rng(4)
    means = np.array([[-4.0, 1.0], [4.0, -1.0]], np.float32)
    labels = rng.integers(0, 2, 1024).astype(np.int32)
    x = (means[labels] + 0.5 * rng.standard_normal((1024, 2))).astype(np.float32)
    model = VectorRealNVP(2, num_steps=4, width=16, num_classes=2)
    model.compile(optimizer=keras.optimizers.Adam(2e-2))
    # 64 steps: after 32 the class means were within 0.75 for some seeds and data orders only
    # (seeds 5 and 6 missed with Keras's order as with tfflows'); after 64, for all of 4, 5, 6.
    model.fit(np.tile(x, (8, 1)), np.tile(labels, 8), batch_size=256, epochs=2, verbose=0)
    for label in (0, 1):
        s = model.sample(500, seed=label, context=label).numpy()
        assert np.linalg.norm(s.mean(0) - means[label]) < 0.75, (label, s.mean(0))
        assert np.linalg.norm(s.mean(0) - means[1 - label]) > 6.0
    lp = model.log_prob(means, [0, 0]).numpy()
    assert lp[0] > lp[1] + 5.0


# -- 6. bits per dimension -------------------------------------------------


@pytest.mark.parametrize("num_bits", [8, 5])
def test_uniform_identity_flow_scores_exactly_num_bits(num_bits):
    """A uniform density on [0, 2ⁿ)^D is 2^(−nD): exactly n bits per dimension."""
    shape = (8, 8, 3)
    d = int(np.prod(shape))
    dist = tfd.TransformedDistribution(
        tfd.Sample(tfd.Uniform(0.0, 1.0), shape), tfb.Invert(ScalePixels(num_bits))
    )
    x = pixels(16, shape, seed=3, num_bits=num_bits)
    assert x.max() < 2**num_bits
    bpd = -dist.log_prob(x).numpy().astype(np.float64) / (d * math.log(2.0))
    np.testing.assert_allclose(bpd, num_bits, atol=1e-5, rtol=0)


def test_bits_per_dim_is_scaled_negative_log_prob(case, assert_close):
    model, x, context = case.model, case.x, case.context
    want = -model.log_prob(x, context).numpy() / (model.num_dims * math.log(2.0))
    assert_close("bits_per_dim", model.bits_per_dim(x, context).numpy(), want, atol=1e-6, rtol=1e-6)


def test_fresh_glow_bits_per_dim_is_plausible():
    keras.utils.set_random_seed(5)
    model = CASES["glow-image"]()
    x = pixels(16, model.event_shape, seed=9, num_bits=model.num_bits)
    model.initialize(x)
    bpd = model.bits_per_dim(x).numpy()
    assert np.all(np.isfinite(bpd)) and np.all((bpd > 0) & (bpd < 10)), bpd


# -- 10. bad inputs --------------------------------------------------------


def _bad_calls():
    glow = lambda: get_case("glow-image").model  # 8×8×1, 5-bit pixels
    glow_c = lambda: get_case("glow-image-additive-plain-num_classes").model
    vec = lambda: get_case("realnvp-vector").model  # 3 features
    vec_ctx = lambda: get_case("glow-vector-additive-plain-context_dim").model
    x = pixels(2, num_bits=5)
    return {
        "image_channels": (
            lambda: glow().log_prob(pixels(2, (8, 8, 3))),
            r"expected x of shape \[batch, 8, 8, 1\], got shape \(2, 8, 8, 3\)",
        ),
        "image_size": (
            lambda: glow().encode(pixels(2, (16, 16, 1))),
            r"expected x of shape \[batch, 8, 8, 1\], got shape \(2, 16, 16, 1\)",
        ),
        "image_no_batch": (
            lambda: glow().log_prob(x[0]),
            r"expected x of shape \[batch, 8, 8, 1\], got shape \(8, 8, 1\)",
        ),
        "image_int_out_of_range": (
            lambda: glow().log_prob(np.full((2, 8, 8, 1), 256, np.int32)),
            r"8-bit pixels in 0\.\.255.*got values from 256 to 256",
        ),
        "vector_int": (lambda: vec().log_prob(np.zeros((2, 3), np.int32)), r"float32 or float64, got int32"),
        "vector_width": (
            lambda: vec().log_prob(np.zeros((2, 4), np.float32)),
            r"expected x of shape \[batch, 3\], got shape \(2, 4\)",
        ),
        "latent_width": (
            lambda: vec().decode(np.zeros((2, 4), np.float32)),
            r"latents of shape \[batch, 3\].*got float32 of shape \(2, 4\)",
        ),
        "no_context": (lambda: glow_c().log_prob(x), r"conditional; pass context= \(class labels\)"),
        "no_context_vector": (
            lambda: vec_ctx().sample(2),
            rf"conditional; pass context= \(context vectors of size {CONTEXT_DIM}\)",
        ),
        "context_for_unconditional": (lambda: glow().log_prob(x, [0, 1]), r"not conditional"),
        "sample_context_for_unconditional": (lambda: vec().sample(2, context=[0, 1]), r"not conditional"),
        "float_labels": (
            lambda: glow_c().log_prob(x, np.array([0.5, 1.0], np.float32)),
            rf"expected integer class labels in 0..{NUM_CLASSES - 1}.*got float32",
        ),
        "label_out_of_range": (
            lambda: glow_c().log_prob(x, [0, 3]),
            rf"class labels in 0..{NUM_CLASSES - 1}, got labels from 0 to 3",
        ),
        "negative_label": (
            lambda: glow_c().sample(2, context=-1),
            rf"class labels in 0..{NUM_CLASSES - 1}, got labels from -1 to -1",
        ),
        "context_width": (
            lambda: vec_ctx().log_prob(np.zeros((2, 3), np.float32), np.zeros((2, 5))),
            rf"context of shape \[batch, {CONTEXT_DIM}\], got \(2, 5\)",
        ),
        "sample_context_count": (
            lambda: glow_c().sample(4, context=[0, 1]),
            r"expected 4 contexts \(one per sample\) or a single one .*, got 2",
        ),
        "num_samples_negative": (lambda: vec().sample(-1), r"num_samples must be an integer >= 0, got -1"),
        "num_samples_float": (lambda: vec().sample(1.5), r"integer >= 0, got 1.5"),
        "num_samples_bool": (lambda: vec().sample(True), r"integer >= 0, got True"),
        "temperature_nan": (
            lambda: vec().sample(2, temperature=float("nan")),
            r"temperature must be a finite number >= 0, got nan",
        ),
        "temperature_inf": (
            lambda: vec().sample(2, temperature=float("inf")),
            r"finite number >= 0, got inf",
        ),
        "temperature_negative": (lambda: vec().sample(2, temperature=-1.0), r"finite number >= 0, got -1.0"),
        "temperature_string": (lambda: vec().sample(2, temperature="1"), r"finite number >= 0, got '1'"),
        "glow_size": (
            lambda: Glow((12, 12, 1), num_levels=3, num_steps=1, width=4),
            r"divisible by 2\*\*num_levels = 8, got 12x12",
        ),
        "glow_coupling": (
            lambda: Glow(IMAGE, num_levels=2, coupling="affline"),
            r"coupling must be one of \('affine', 'additive', 'spline'.*\), got 'affline'",
        ),
        "glow_rank": (
            lambda: Glow((8, 8), num_levels=1),
            r"must be \(height, width, channels\).*got \(8, 8\)",
        ),
        "glow_levels": (lambda: Glow(IMAGE, num_levels=0), r"num_levels must be a positive integer, got 0"),
        "realnvp_size": (
            lambda: RealNVP((6, 6, 1), num_levels=2),
            r"divisible by 2\*\*num_levels = 4.*got 6x6",
        ),
        "vector_dim": (lambda: VectorRealNVP(1), r"event_shape must be the number of features D >= 2.*got 1"),
        "vector_permutation": (
            lambda: VectorRealNVP(2, permutation="random"),
            r"permutation must be 'reverse' or 'shuffle', got 'random'",
        ),
        "vector_glow_coupling": (
            lambda: VectorGlow(2, coupling="splines"),
            r"coupling must be one of \('affine', 'additive', 'spline'.*\), got 'splines'",
        ),
        "num_classes_zero": (
            lambda: VectorGlow(2, num_classes=0),
            r"num_classes must be a positive integer, got 0",
        ),
        "classes_and_context": (
            lambda: VectorGlow(2, num_classes=2, context_dim=2),
            r"num_classes or context_dim, not both",
        ),
    }


BAD_CALLS = _bad_calls()


@pytest.mark.parametrize("name", list(BAD_CALLS), ids=list(BAD_CALLS))
def test_bad_input_raises_value_error(name):
    call, message = BAD_CALLS[name]
    with pytest.raises(ValueError, match=message):
        call()


def test_out_of_range_labels_fail_in_graphs_too():
    """In a traced step the labels are only known at run time: an error then, not one_hot's zeros."""
    model = get_case("glow-image-additive-plain-num_classes").model
    x = pixels(2, num_bits=model.num_bits)
    score = tf.function(lambda x, labels: model.log_prob(x, labels))
    assert score(x, tf.constant([0, 2])).shape == (2,)
    for labels in ([0, 3], [-1, 0]):
        with pytest.raises(
            tf.errors.InvalidArgumentError, match=rf"expected class labels in 0..{NUM_CLASSES - 1}, got"
        ):
            score(x, tf.constant(labels))


def test_sample_warns_when_samples_overflow():
    model = get_case("realnvp-vector").model
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(model.sample(3, seed=1).numpy()).all()
    with pytest.warns(RuntimeWarning, match=r"3 of 3 samples at temperature 1e\+39 have inf or NaN"):
        x = model.sample(3, temperature=1e39, seed=1)  # beyond float32: the base itself overflows
    assert not np.isfinite(x.numpy()).any()
