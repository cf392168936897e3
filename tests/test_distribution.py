"""``model.distribution`` and ``model.bijector`` as live TFP objects (tfflows/distribution.py).

What is checked: variational inference with ``tfp.vi.fit_surrogate_posterior``
trains every weight of every vector model (with and without
``trainable_variables=``) and beats a Gaussian surrogate on a banana; the
objects read the current weights (held across ``fit``, no stale TFP cache);
the batch semantics of conditional models; seeds; float64 data; the
NotImplementedError messages; the Monte Carlo helpers against closed forms.
The models are the registry's tiny ones (``helpers.registered_models``; vector
models rebuilt on the banana's 2 features), plus a few built for one check.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfflows
from tfflows import Glow, VectorGlow, VectorRealNVP
from tfflows.distribution import stateless_seed

from helpers import derived, registered_models

tfb = tfp.bijectors
tfd = tfp.distributions

# Every registered vector model (helpers.registered_models), on 2 features: the banana's.
VECTOR_MODELS: dict[str, Callable[[], Any]] = {
    name: functools.partial(derived, make, event_shape=(2,))
    for name, make in registered_models("vector").items()
}
NAMES = list(VECTOR_MODELS)


def make(name: str, seed: int = 0):
    keras.utils.set_random_seed(seed)
    return VECTOR_MODELS[name]()


def randomize(model, scale: float = 0.1, seed: int = 0) -> None:
    """Noise on every trainable weight: a fresh flow's zero output layers make it the identity."""
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        v.assign(v + scale * rng.standard_normal(v.shape).astype(np.float32))


def banana_log_prob(x):
    """Normalised: x₁ ~ N(0, 1), x₂ | x₁ ~ N(x₁² − 1, 1); log Z = 0, so every ELBO is ≤ 0."""
    x1, x2 = x[..., 0], x[..., 1]
    return tfd.Normal(0.0, 1.0).log_prob(x1) + tfd.Normal(0.0, 1.0).log_prob(x2 - (x1**2 - 1.0))


def snapshot(model) -> list[np.ndarray]:
    return [v.numpy().copy() for v in model.trainable_variables]


def unmoved(model, before) -> list[str]:
    return [v.path for v, b in zip(model.trainable_variables, before) if np.array_equal(v.numpy(), b)]


# -- 1. variational inference trains every weight ----------------------------


# The autoregressive spline's gradient (a pass per dimension) is traced in the full suite.
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "maf-spline-vector" else n for n in NAMES]
)
def test_vi_trains_every_weight(name):
    """Default path: fit_surrogate_posterior trains the variables the loss reads — all of them."""
    model = make(name)
    dist = model.distribution
    before = snapshot(model)
    losses = tfp.vi.fit_surrogate_posterior(
        banana_log_prob, dist, keras.optimizers.SGD(0.05), num_steps=3, sample_size=16, seed=(1, 2)
    )
    assert np.all(np.isfinite(losses.numpy()))
    assert unmoved(model, before) == []


@pytest.mark.parametrize("name", ["realnvp-vector", "glow-vector"])
def test_vi_with_trainable_variables_trains_every_weight(name):
    """trainable_variables=dist.trainable_variables: the ActNorm, LU and tanh-factor weights too."""
    model = make(name)
    dist = model.distribution
    before = snapshot(model)
    tfp.vi.fit_surrogate_posterior(
        banana_log_prob,
        dist,
        keras.optimizers.SGD(0.05),
        num_steps=3,
        sample_size=16,
        trainable_variables=dist.trainable_variables,
        seed=(1, 2),
    )
    assert unmoved(model, before) == []


IMAGE_MODEL = registered_models("image", ["num_classes"], first_per_kind=True)


def image_model():
    """The first registered image model, class-conditional (3 classes), untrained."""
    keras.utils.set_random_seed(0)
    return next(iter(IMAGE_MODEL.values()))()


@pytest.mark.parametrize("name", NAMES + list(IMAGE_MODEL))
def test_trainable_variables_are_the_models_and_all_get_gradients(name):
    model = image_model() if name in IMAGE_MODEL else make(name)
    randomize(model, seed=1)
    if name in IMAGE_MODEL:
        top = 2.0**model.num_bits
        x = np.random.default_rng(0).uniform(0, top, (2, *model.event_shape)).astype(np.float32)
        dist = model.distribution_for([0, 2])
    else:
        x = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)
        dist = model.distribution
    want = {id(v.value) for v in model.trainable_variables}
    for obj in (dist, dist.bijector, model.bijector_for([0, 2]) if name in IMAGE_MODEL else model.bijector):
        assert len(obj.trainable_variables) == len(model.trainable_variables)
        assert {id(v) for v in obj.trainable_variables} == want
        assert all(isinstance(v, tf.Variable) for v in obj.trainable_variables)
    assert len(dist.variables) == len(model.variables)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_sum(dist.log_prob(x))
    grads = tape.gradient(loss, dist.trainable_variables)
    missing = [v.name for v, g in zip(dist.trainable_variables, grads) if g is None]
    assert missing == []
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)
    zero = [v.name for v, g in zip(dist.trainable_variables, grads) if not np.any(g.numpy())]
    assert zero == []


def gaussian_surrogate():
    return tfd.MultivariateNormalTriL(
        loc=tf.Variable([0.0, 0.0]), scale_tril=tfp.util.TransformedVariable(tf.eye(2), tfb.FillScaleTriL())
    )


@pytest.mark.slow
def test_vi_flow_beats_gaussian_on_banana():
    """Reverse-KL fit of the banana: the flow's ELBO beats the best Gaussian's, and stays ≤ log Z = 0."""
    steps = 150
    keras.utils.set_random_seed(0)
    gaussian = gaussian_surrogate()
    gauss_losses = tfp.vi.fit_surrogate_posterior(
        banana_log_prob, gaussian, keras.optimizers.Adam(2e-2), steps, sample_size=32, seed=(1, 2)
    ).numpy()
    model = VectorRealNVP(2, num_steps=4, width=16)
    flow = model.distribution
    flow_losses = tfp.vi.fit_surrogate_posterior(
        banana_log_prob, flow, keras.optimizers.Adam(5e-3), steps, sample_size=32, seed=(1, 2)
    ).numpy()

    def final_elbo(q):
        x, log_q = q.experimental_sample_and_log_prob(4000, seed=(7, 7))
        gap = (banana_log_prob(x) - log_q).numpy().astype(np.float64)
        return gap.mean(), gap.std(ddof=1) / math.sqrt(gap.size)

    (g, g_err), (f, f_err) = final_elbo(gaussian), final_elbo(flow)
    # The best Gaussian's KL to this banana is about 0.3 nats; the flow gets well under it.
    assert f - g > 4 * math.hypot(f_err, g_err) and f - g > 0.1, (f, g)
    assert f <= 4 * f_err and g <= 4 * g_err
    # The training curves say the same (mean of the last 30 negative-ELBO estimates).
    assert flow_losses[-30:].mean() < gauss_losses[-30:].mean() - 0.1


# -- 2. live: the current weights, every time --------------------------------


@pytest.mark.slow
def test_distribution_held_across_fit_reports_the_new_density(assert_close):
    model = make("realnvp-vector")
    dist, bijector = model.distribution, model.bijector
    data = (np.random.default_rng(0).standard_normal((64, 2)) * [2.0, 0.5] + [1.0, -1.0]).astype(np.float32)
    x = tf.constant(data[:8])
    z = tf.constant(np.random.default_rng(1).standard_normal((8, 2)).astype(np.float32))
    before_lp = dist.log_prob(x).numpy()
    before_y = bijector.forward(z)  # kept alive: TFP's cache would answer from it
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(data, epochs=2, batch_size=16, verbose=0)
    after_lp = dist.log_prob(x).numpy()
    assert np.max(np.abs(after_lp - before_lp)) > 1e-2
    assert_close(
        "held distribution vs model after fit", after_lp, model.log_prob(x).numpy(), atol=1e-5, rtol=1e-6
    )
    after_y = bijector.forward(z).numpy()  # the same tensor z as before
    assert np.max(np.abs(after_y - before_y.numpy())) > 1e-3
    assert_close("held bijector vs decode after fit", after_y, model.decode(z).numpy(), atol=1e-5, rtol=1e-6)
    assert_close(
        "held bijector inverse vs encode",
        bijector.inverse(x).numpy(),
        model.encode(x).numpy(),
        atol=1e-5,
        rtol=1e-6,
    )


@pytest.mark.parametrize("name", ["maf-vector", "nsf-vector"])
def test_no_stale_cache_after_a_weight_change(name, assert_close):
    """The same input tensor after a weight update gives the new value (encode, bijector, distribution)."""
    model = make(name)
    randomize(model, seed=2)
    x = tf.constant(np.random.default_rng(3).standard_normal((5, 2)).astype(np.float32))
    held = [model.encode(x), model.bijector.inverse(x), model.flow().forward(x)]  # outputs kept alive
    dist = model.distribution
    lp = dist.log_prob(x)
    randomize(model, seed=4)
    fresh = model.encode(tf.identity(x)).numpy()
    assert np.max(np.abs(fresh - held[0].numpy())) > 1e-3
    for check, got in [
        ("encode", model.encode(x)),
        ("bijector.inverse", model.bijector.inverse(x)),
        ("flow().forward", model.flow().forward(x)),
    ]:
        assert_close(f"{check} after update", got.numpy(), fresh, atol=1e-6, rtol=1e-6)
    assert_close(
        "log_prob after update",
        dist.log_prob(x).numpy(),
        model.log_prob(tf.identity(x)).numpy(),
        atol=1e-5,
        rtol=1e-6,
    )
    assert np.max(np.abs(dist.log_prob(x).numpy() - lp.numpy())) > 1e-3


def test_bijector_matches_tfp_conventions(assert_close):
    model = make("glow-vector")
    randomize(model, seed=5)
    b = model.bijector
    z = tf.constant(np.random.default_rng(6).standard_normal((3, 4, 2)).astype(np.float32))
    x, log_det = b.forward_and_log_det(z)
    assert x.shape == (3, 4, 2) and log_det.shape == (3, 4)
    assert_close(
        "fldj", b.forward_log_det_jacobian(z, event_ndims=1).numpy(), log_det.numpy(), atol=1e-5, rtol=1e-6
    )
    assert_close(
        "fldj event_ndims=2",
        b.forward_log_det_jacobian(z, event_ndims=2).numpy(),
        log_det.numpy().sum(-1),
        atol=1e-4,
        rtol=1e-6,
    )
    assert_close(
        "ildj = −fldj",
        b.inverse_log_det_jacobian(tf.identity(x), event_ndims=1).numpy(),
        -log_det.numpy(),
        atol=1e-4,
        rtol=1e-5,
    )
    assert_close("round trip", b.inverse(tf.identity(x)).numpy(), z.numpy(), atol=1e-4, rtol=1e-5)
    with pytest.raises(ValueError, match="event_ndims must be an integer >= 1"):
        b.forward_log_det_jacobian(z, event_ndims=0)
    # The latent → data bijector over the base is the distribution.
    td = tfd.TransformedDistribution(model.base_distribution, b)
    assert_close(
        "TransformedDistribution(base, bijector)",
        td.log_prob(tf.identity(x)).numpy(),
        model.distribution.log_prob(x).numpy(),
        atol=1e-4,
        rtol=1e-5,
    )


# -- 3. conditional: contexts are the batch ---------------------------------


@pytest.fixture(scope="module")
def conditional():
    keras.utils.set_random_seed(0)
    model = VectorRealNVP(2, num_steps=2, width=8, num_classes=3)
    randomize(model, seed=7, scale=0.2)
    return model


def test_conditional_shapes_and_values(conditional, assert_close):
    model = conditional
    labels = np.array([0, 1, 2], np.int32)
    dist = model.distribution_for(labels)
    assert dist.batch_shape == (3,) and dist.event_shape == (2,)
    assert dist.sample(seed=1).shape == (3, 2)
    x = dist.sample(4, seed=(5, 6))
    assert x.shape == (4, 3, 2)
    lp = dist.log_prob(x)
    assert lp.shape == (4, 3)
    for k in range(3):  # column k is scored under context k
        assert_close(
            "batch log_prob vs model",
            lp[:, k].numpy(),
            model.log_prob(x[:, k], np.full(4, k)).numpy(),
            atol=1e-5,
            rtol=1e-6,
        )
    # Samples come from their own context: sample() is the decode of ε of shape [3, 2] with labels 0, 1, 2.
    eps = tf.random.stateless_normal([3, 2], seed=stateless_seed(9))
    assert_close(
        "sample is decode per context",
        dist.sample(seed=9).numpy(),
        model.decode(eps, labels).numpy(),
        atol=1e-5,
        rtol=1e-6,
    )
    # One pass for samples and their density agrees with scoring them afterwards.
    xs, lps = dist.experimental_sample_and_log_prob([2, 5], seed=(3, 3))
    assert xs.shape == (2, 5, 3, 2) and lps.shape == (2, 5, 3)
    assert_close(
        "sample_and_log_prob vs log_prob", lps.numpy(), dist.log_prob(xs).numpy(), atol=1e-4, rtol=1e-5
    )
    # One event broadcasts against the batch of contexts.
    one = x[0, 0]
    assert_close(
        "broadcast event",
        dist.log_prob(one).numpy(),
        model.log_prob(tf.tile(one[None], [3, 1]), labels).numpy(),
        atol=1e-5,
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="does not broadcast with the batch shape"):
        dist.log_prob(tf.zeros((4, 2)))


def test_conditional_batch_ranks(conditional):
    model = conditional
    single = model.distribution_for(2)
    assert single.batch_shape == () and single.sample(5, seed=0).shape == (5, 2)
    grid = model.distribution_for([[0, 1, 2], [2, 1, 0]])
    assert grid.batch_shape == (2, 3) and grid.sample(4, seed=0).shape == (4, 2, 3, 2)
    onehot = model.distribution_for(tf.one_hot([1, 2], 3))
    assert onehot.batch_shape == (2,)
    x = tf.zeros((2, 2))
    np.testing.assert_allclose(onehot.log_prob(x).numpy(), model.distribution_for([1, 2]).log_prob(x).numpy())
    with pytest.raises(ValueError, match=r"expected class labels in 0..2"):
        model.distribution_for([0, 3])
    with pytest.raises(ValueError, match="conditional; pass context="):
        model.distribution.sample()
    keras.utils.set_random_seed(0)
    vectors = VectorRealNVP(2, num_steps=2, width=8, context_dim=3)
    assert vectors.distribution_for(np.zeros((4, 3), np.float32)).sample(2, seed=0).shape == (2, 4, 2)
    assert vectors.distribution_for(np.zeros(3, np.float32)).batch_shape == ()
    with pytest.raises(ValueError, match=r"expected context of shape \[batch, 3\]"):
        vectors.distribution_for(np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="not conditional"):
        make("realnvp-vector").distribution_for([0, 1])


def test_mixture_of_a_flow_over_contexts(conditional, assert_close):
    """tfd.MixtureSameFamily with a conditional flow's batch of contexts as the components."""
    model = conditional
    logits = np.array([0.0, 1.0, 2.0], np.float32)
    mix = tfd.MixtureSameFamily(tfd.Categorical(logits=logits), model.distribution_for([0, 1, 2]))
    x = np.random.default_rng(8).standard_normal((5, 2)).astype(np.float32)
    weights = np.exp(logits - np.log(np.exp(logits).sum()))
    want = np.log(
        sum(
            weights[k] * np.exp(model.log_prob(x, np.full(5, k)).numpy().astype(np.float64)) for k in range(3)
        )
    )
    assert_close("mixture log_prob", mix.log_prob(x).numpy(), want, atol=1e-4, rtol=1e-5)
    assert mix.sample(6, seed=(1, 1)).shape == (6, 2)


def test_conditional_image_model_samples_and_scores():
    model = image_model()
    event, top = model.event_shape, 2**model.num_bits
    dist = model.distribution_for([0, 1])
    x = dist.sample(seed=3)
    assert x.shape == (2, *event) and np.all(np.isfinite(x.numpy()))
    x, lp = dist.experimental_sample_and_log_prob(3, seed=4)
    assert x.shape == (3, 2, *event) and lp.shape == (3, 2)
    # An untrained flow's samples leave [0, 2**num_bits): the distribution scores them all the same.
    assert float(tf.reduce_min(x)) < 0 or float(tf.reduce_max(x)) >= top
    np.testing.assert_allclose(lp.numpy(), dist.log_prob(x).numpy(), rtol=1e-4, atol=0.05)
    with pytest.raises(ValueError, match=rf"pixel levels in \[0, {top}\)"):
        model.distribution_for([0, 1]).copy(validate_args=True).log_prob(x)
    with pytest.raises(ValueError, match="expected finite x"):
        dist.log_prob(tf.fill((2, *event), float("nan")))


# -- 4. seeds ------------------------------------------------------------------


def test_seeds_are_deterministic_and_validated():
    model = make("realnvp-vector")
    randomize(model, seed=10)
    dist = model.distribution
    pair = tf.constant([4, 5], tf.int32)
    for draw in (lambda s: model.sample(6, seed=s), lambda s: dist.sample(6, seed=s)):
        np.testing.assert_array_equal(draw(3).numpy(), draw(3).numpy())
        np.testing.assert_array_equal(draw(pair).numpy(), draw((4, 5)).numpy())
        np.testing.assert_array_equal(draw(np.int64(3)).numpy(), draw(3).numpy())
        assert np.min(np.abs(draw(3).numpy() - draw(4).numpy())) > 0
        assert np.min(np.abs(draw(pair).numpy() - draw((5, 4)).numpy())) > 0
        assert not np.allclose(draw(None).numpy(), draw(None).numpy())
        for bad in (1.5, "7", True, [1, 2, 3], (1.0, 2.0), tf.constant([1.0, 2.0]), tf.constant(3), 2**70):
            with pytest.raises(ValueError, match="seed must be None, an int, or a stateless seed"):
                draw(bad)
    # An int seed is the stateless seed [s, 0] for the model and the distribution alike.
    np.testing.assert_array_equal(model.sample(6, seed=3).numpy(), dist.sample(6, seed=(3, 0)).numpy())


# -- 5. float64 data into a float32 model ------------------------------------------------


def test_float64_data(conditional, assert_close):
    model = make("nsf-vector")
    randomize(model, seed=11)
    x64 = np.random.default_rng(12).standard_normal((5, 2))
    x32 = x64.astype(np.float32)
    want = model.log_prob(x32).numpy()
    for check, got in [
        ("model.log_prob", model.log_prob(x64)),
        ("distribution.log_prob", model.distribution.log_prob(tf.constant(x64))),
        ("distribution.prob", tf.math.log(model.distribution.prob(tf.constant(x64)))),
    ]:
        assert got.dtype == tf.float32
        assert_close(f"float64 {check}", got.numpy(), want, atol=1e-5, rtol=1e-5)
    assert model.encode(x64).dtype == tf.float32 and model.decode(x64).dtype == tf.float32
    assert_close("float64 encode", model.encode(x64).numpy(), model.encode(x32).numpy(), atol=1e-6, rtol=1e-6)
    assert_close(
        "float64 bijector",
        model.bijector.forward(tf.constant(x64)).numpy(),
        model.decode(x32).numpy(),
        atol=1e-5,
        rtol=1e-6,
    )
    cond = conditional.distribution_for([0, 1])
    assert cond.log_prob(tf.constant(x64[:2])).dtype == tf.float32
    with pytest.raises(ValueError, match="expected float32 or float64 data, got int32"):
        model.distribution.log_prob(tf.constant([[1, 2]]))


def test_integer_pixels_score_as_the_model_does(assert_close):
    """uint8 images (TFDS, decode_png) go into the distribution as into model.log_prob."""
    model = Glow((4, 4, 1), num_levels=1, num_steps=1, width=8, num_bits=5)
    pixels = np.random.default_rng(3).integers(0, 256, (3, 4, 4, 1)).astype(np.uint8)
    model.initialize(pixels)
    want = model.log_prob(pixels).numpy()
    got = model.distribution.log_prob(pixels).numpy()
    assert_close("distribution.log_prob uint8", got, want, atol=1e-5, rtol=1e-6)
    # The bin centres of the 5-bit levels: not the raw 0..255 values.
    centres = (pixels.astype(np.float32) // 8) + 0.5
    assert_close(
        "uint8 = bin centres", got, model.distribution.log_prob(centres).numpy(), atol=1e-5, rtol=1e-6
    )
    # One unbatched image is an event, as TFP distributions take it.
    assert_close("one image", model.distribution.log_prob(pixels[0]).numpy(), want[0], atol=1e-5, rtol=1e-6)
    with pytest.raises(ValueError, match="pixels"):
        model.distribution.log_prob(np.full((1, 4, 4, 1), 300, np.int32))


# -- 6. no closed form: clear errors ---------------------------------------------------


@pytest.mark.parametrize(
    "method,args,alternative",
    [
        ("entropy", (), "tfflows.monte_carlo_entropy"),
        ("mean", (), "dist.sample"),
        ("mode", (), "gradient ascent"),
        ("stddev", (), "reduce_variance"),
        ("variance", (), "reduce_variance"),
        ("covariance", (), "tfp.stats.covariance"),
        ("cdf", ([0.0, 0.0],), "fraction of samples"),
        ("log_cdf", ([0.0, 0.0],), "from samples"),
        ("survival_function", ([0.0, 0.0],), "P\\(X > x\\)"),
        ("log_survival_function", ([0.0, 0.0],), "from samples"),
        ("quantile", (0.5,), "sample quantiles"),
    ],
)
def test_no_closed_form_raises_naming_the_alternative(method, args, alternative):
    dist = make("realnvp-vector").distribution
    with pytest.raises(NotImplementedError, match=f"{method}\\(\\) is not implemented.*{alternative}"):
        getattr(dist, method)(*args)


def test_kl_divergence_names_monte_carlo_kl():
    dist = make("realnvp-vector").distribution
    for p, q in [
        (dist, tfd.MultivariateNormalDiag(tf.zeros(2))),
        (tfd.MultivariateNormalDiag(tf.zeros(2)), dist),
        (dist, dist),
    ]:
        with pytest.raises(NotImplementedError, match=r"tfflows.monte_carlo_kl"):
            tfd.kl_divergence(p, q)


# -- 7. Monte Carlo helpers against closed forms ----------------------------------------


def affine_glow():
    """A VectorGlow whose couplings are still identities: x ↦ z = W(s ⊙ x + b), an exact Gaussian."""
    keras.utils.set_random_seed(0)
    model = VectorGlow(3, num_steps=1, width=8)
    rng = np.random.default_rng(13)
    for v in model.trainable_variables:
        if "actnorm" in v.path:  # log-scale and bias: a non-trivial affine map
            v.assign(rng.uniform(-0.8, 0.8, v.shape).astype(np.float32))
    return model


def gaussian_of(model) -> tfd.Distribution:
    """The Gaussian N(−A⁻¹c, A⁻¹A⁻ᵀ) of an affine flow z = Ax + c, read off encode in float64."""
    eye = np.eye(model.num_dims, dtype=np.float32)
    c = model.encode(np.zeros((1, model.num_dims), np.float32)).numpy()[0].astype(np.float64)
    a = (model.encode(eye).numpy().astype(np.float64) - c).T
    a_inv = np.linalg.inv(a)
    cov = a_inv @ a_inv.T
    return tfd.MultivariateNormalTriL(loc=-a_inv @ c, scale_tril=np.linalg.cholesky(cov))


def test_affine_flow_is_its_gaussian(assert_close):
    model = affine_glow()
    exact = gaussian_of(model)
    x = np.random.default_rng(14).standard_normal((6, 3)).astype(np.float32) * 2
    assert_close(
        "affine flow log_prob vs Gaussian",
        model.distribution.log_prob(x).numpy(),
        exact.log_prob(x.astype(np.float64)).numpy(),
        atol=1e-4,
        rtol=1e-5,
    )
    # Non-trivial: far from the standard normal.
    assert abs(float(exact.entropy()) - 1.5 * (1 + math.log(2 * math.pi))) > 0.3


def test_monte_carlo_entropy_and_kl_match_closed_forms():
    model = affine_glow()
    exact = gaussian_of(model)
    h = tfflows.monte_carlo_entropy(model.distribution, 4000, seed=1)
    assert h.estimate.shape == () and float(h.standard_error) > 0
    assert abs(float(h.estimate) - float(exact.entropy())) < 4 * float(h.standard_error)
    other = tfd.MultivariateNormalDiag(loc=[0.5, -0.5, 0.0], scale_diag=[1.5, 0.7, 1.0])
    kl = tfflows.monte_carlo_kl(model.distribution, other, 4000, seed=2)
    want = float(
        tfd.kl_divergence(
            exact,
            tfd.MultivariateNormalDiag(loc=np.array([0.5, -0.5, 0.0]), scale_diag=np.array([1.5, 0.7, 1.0])),
        )
    )
    assert want > 0.3 and abs(float(kl.estimate) - want) < 4 * float(kl.standard_error)
    # KL of a flow to itself is 0 exactly, sample by sample.
    same = tfflows.monte_carlo_kl(model.distribution, model.distribution, 100, seed=3)
    assert abs(float(same.estimate)) < 1e-5
    # Plain TFP distributions too, and a batch gives a batch of estimates.
    normal = tfd.Normal([0.0, 1.0], [1.0, 3.0])
    hn = tfflows.monte_carlo_entropy(normal, 4000, seed=4)
    assert hn.estimate.shape == (2,)
    assert np.all(np.abs(hn.estimate.numpy() - normal.entropy().numpy()) < 4 * hn.standard_error.numpy())
    # Same seed, same estimate.
    assert float(tfflows.monte_carlo_entropy(model.distribution, 50, seed=5).estimate) == float(
        tfflows.monte_carlo_entropy(model.distribution, 50, seed=5).estimate
    )


def test_monte_carlo_helpers_reject_bad_arguments():
    dist = make("realnvp-vector").distribution
    with pytest.raises(ValueError, match="num_samples must be an integer >= 2"):
        tfflows.monte_carlo_entropy(dist, 1)
    with pytest.raises(ValueError, match="num_samples must be an integer >= 2"):
        tfflows.monte_carlo_kl(dist, dist, 10.0)
    with pytest.raises(ValueError, match=r"must be a tfp.distributions.Distribution"):
        tfflows.monte_carlo_entropy(make("realnvp-vector"), 10)
    with pytest.raises(ValueError, match="same event shape"):
        tfflows.monte_carlo_kl(dist, tfd.MultivariateNormalDiag(tf.zeros(3)), 10)
    with pytest.raises(ValueError, match="seed must be"):
        tfflows.monte_carlo_entropy(dist, 10, seed=0.5)


# -- 8. compiled -------------------------------------------------------------------


@pytest.mark.parametrize("jit", [False, True], ids=["tf_function", "xla"])
def test_distribution_inside_tf_function(jit, assert_close):
    model = make("realnvp-vector")
    randomize(model, seed=15)
    dist = model.distribution
    x = tf.constant(np.random.default_rng(16).standard_normal((4, 2)).astype(np.float32))

    @tf.function(jit_compile=jit)
    def run(x):
        s, lp = dist.experimental_sample_and_log_prob(3, seed=tf.constant([1, 2]))
        return s, lp, dist.log_prob(x)

    s, lp, lx = run(x)
    # (XLA draws other numbers than TensorFlow from the same stateless seed; each is deterministic.)
    np.testing.assert_array_equal(run(x)[0].numpy(), s.numpy())
    if not jit:
        eager_s, _ = dist.experimental_sample_and_log_prob(3, seed=(1, 2))
        assert_close("tf.function sample", s.numpy(), eager_s.numpy(), atol=1e-6, rtol=1e-6)
    assert_close("compiled sample log_prob", lp.numpy(), dist.log_prob(s).numpy(), atol=1e-4, rtol=1e-5)
    assert_close("compiled log_prob", lx.numpy(), model.log_prob(x).numpy(), atol=1e-4, rtol=1e-5)
    randomize(model, seed=17)  # the traced function reads the weights too
    assert_close(
        "compiled log_prob after update", run(x)[2].numpy(), model.log_prob(x).numpy(), atol=1e-4, rtol=1e-5
    )
