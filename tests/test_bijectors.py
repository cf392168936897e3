"""Property tests for every bijector in the registry (tests/bijector_cases.py).

Each property runs for every case, in float32 and float64, and every input
is a fresh tensor made from numpy, fed to a freshly built bijector, so TFP's
per-tensor cache can never answer in place of the maths.

Tolerances (``atol`` and ``rtol`` alike):

- ``ROUND_TRIP_TOL``: inverse(forward(x)) against x, forward(inverse(y))
  against y, and forward log-det against minus the inverse log-det at the
  image: 1e-4 in float32, 1e-10 in float64.
- ``JACOBIAN_TOL``: the log-det against log|det J| of the autodiff Jacobian,
  float64 only: 1e-10.
- ``COMPILED_TOL``: eager against ``tf.function`` and XLA: 1e-5 in float32
  (XLA fuses and reorders float32 arithmetic), 1e-12 in float64.
- ``COMPOSED_TOL``: the same numbers through ``tfb.Chain``, ``tfb.Invert`` and
  ``tfd.TransformedDistribution``: 1e-4 in float32 (a log-density sums ~100
  float32 terms that largely cancel), 1e-12 in float64.

The largest errors actually seen are printed at the end of the run.
"""

from __future__ import annotations

import functools
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfflows.bijectors import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    ChannelPermutation,
    InvertibleConv1x1,
    Logit,
    ScalePixels,
    SplineCoupling,
    Squeeze,
)
from tfflows.layers import CouplingLayer, InvertibleConv1x1Layer

from bijector_cases import CASE_NAMES, CHANNEL_CASE_NAMES, DTYPES, LAYER_CASE_NAMES, get_case

tfb, tfd = tfp.bijectors, tfp.distributions

ROUND_TRIP_TOL = {"float32": 1e-4, "float64": 1e-10}
JACOBIAN_TOL = 1e-10
COMPILED_TOL = {"float32": 1e-5, "float64": 1e-12}
COMPOSED_TOL = {"float32": 1e-4, "float64": 1e-12}

all_cases = pytest.mark.parametrize("name", CASE_NAMES, ids=CASE_NAMES)
# The two costliest properties (an autodiff Jacobian; tracing a tf.function) run in the fast tier
# on one case of each kind of bijector, and on every case in the full suite (marked slow). The
# cheaper properties run on every case in both tiers, so every code path is still run fast.
REPRESENTATIVE_CASES = {
    "affine_checkerboard0_sigmoid_convnet",
    "affine_channel1_sigmoid_resnet",
    "affine_half1_context_mlp",
    "affine_half0_bounded_indices",
    "additive_half0_mlp",
    "actnorm_image",
    "conv1x1_lu_image",
    "conv1x1_plain_vector",
    "squeeze2",
    "shuffle_image",
    "scale_pixels_centered",
    "logit_image",
    "spline_half0_mlp",
    "affine_token_channel0_vit",
    "affine_token_spatial0_vit",
    "maf_natural_vector",
    "iaf_random_context",
    "standardize_vector",
    "prior_image_context_batch2d",
    "flatten",
    "factor_out_coupling",
    "flow_chain_squeeze_coupling",
}
assert REPRESENTATIVE_CASES <= set(CASE_NAMES), REPRESENTATIVE_CASES - set(CASE_NAMES)
tiered_cases = pytest.mark.parametrize(
    "name",
    [n if n in REPRESENTATIVE_CASES else pytest.param(n, marks=pytest.mark.slow) for n in CASE_NAMES],
    ids=CASE_NAMES,
)
layer_cases = pytest.mark.parametrize("name", LAYER_CASE_NAMES, ids=LAYER_CASE_NAMES)
# The fast tier checks each case's maths in float64; float32's round-off (which the CI checks
# again with oneDNN flipped) is in the full suite.
all_dtypes = pytest.mark.parametrize(
    "dtype", [pytest.param(d, marks=pytest.mark.slow) if d == "float32" else d for d in DTYPES], ids=DTYPES
)


def fresh(value, dtype) -> tf.Tensor:
    """A new tensor that no bijector has seen: TFP's cache cannot answer for it."""
    return tf.constant(np.asarray(value), dtype=dtype)


def latent_ndims(case) -> int:
    return len(case.latent_event_shape)


# --- 1. Round trips ----------------------------------------------------------------------------


@all_cases
@all_dtypes
def test_round_trip_forward_then_inverse(name, dtype, assert_close):
    case = get_case(name, dtype)
    tol = ROUND_TRIP_TOL[dtype]
    x = case.sample_x()
    y, log_det = case.make_bijector().forward_and_log_det(fresh(x, dtype))
    x_back, inv_log_det = case.make_bijector().inverse_and_log_det(fresh(y, dtype))
    assert y.shape == case.batch_shape + case.latent_event_shape and y.dtype == dtype
    assert log_det.shape == case.batch_shape and log_det.dtype == dtype
    assert inv_log_det.shape == case.batch_shape
    assert_close("round_trip", x_back, x, atol=tol, rtol=tol)
    assert_close("round_trip_log_det", inv_log_det, -log_det, atol=tol, rtol=tol)
    # TFP's public methods on one instance, fed a new tensor for the way back.
    b = case.make_bijector()
    y_tfp = b.forward(fresh(x, dtype))
    assert_close("round_trip", b.inverse(tf.identity(y_tfp)), x, atol=tol, rtol=tol)


@all_cases
@all_dtypes
def test_round_trip_inverse_then_forward(name, dtype, assert_close):
    case = get_case(name, dtype)
    tol = ROUND_TRIP_TOL[dtype]
    y = case.sample_y()
    x, inv_log_det = case.make_bijector().inverse_and_log_det(fresh(y, dtype))
    y_back, log_det = case.make_bijector().forward_and_log_det(fresh(x, dtype))
    assert_close("round_trip", y_back, y, atol=tol, rtol=tol)
    assert_close("round_trip_log_det", log_det, -inv_log_det, atol=tol, rtol=tol)
    assert x.shape == case.batch_shape + case.event_shape


@layer_cases
def test_case_is_not_the_identity(name):
    """Guards the registry: random weights make every layer's bijector do something."""
    case = get_case(name, "float64")
    x = case.sample_x()
    y, log_det = case.make_bijector().forward_and_log_det(fresh(x, "float64"))
    if y.shape == x.shape:
        assert np.max(np.abs(y.numpy() - x)) > 1e-2
    if name.startswith(("affine", "spline", "factor_out", "flow_chain")):  # x-dependent log-det
        assert np.ptp(log_det.numpy()) > 1e-3


# --- 2. Log-det against the autodiff Jacobian --------------------------------------------------


def _jacobian_log_det(fn, inputs: np.ndarray, batch_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Returns (log|det J|, the log-det fn returned) with J the Jacobian of the flat event."""
    n = int(np.prod(batch_shape, dtype=int))
    flat = tf.constant(inputs.reshape(n, -1))
    with tf.GradientTape() as tape:
        tape.watch(flat)
        out, log_det = fn(tf.reshape(flat, inputs.shape))
        out_flat = tf.reshape(out, [n, -1])
    jacobian = tape.batch_jacobian(out_flat, flat).numpy()
    assert jacobian.shape[1] == jacobian.shape[2], "the bijection must keep the number of entries"
    _, expected = np.linalg.slogdet(jacobian)
    return expected.reshape(batch_shape), log_det.numpy()


@tiered_cases
def test_log_det_matches_jacobian(name, assert_close):
    case = get_case(name, "float64")
    tol = JACOBIAN_TOL
    x = case.sample_x("jacobian")
    want, got = _jacobian_log_det(case.make_bijector().forward_and_log_det, x, case.batch_shape)
    assert_close("jacobian_forward", got, want, atol=tol, rtol=tol)
    fldj = case.make_bijector().forward_log_det_jacobian(fresh(x, "float64"), case.event_ndims)
    assert_close("jacobian_forward", fldj, want, atol=tol, rtol=tol)
    # The inverse log-det follows: it is checked against minus this one at the image.


# --- 3. Forward log-det is minus the inverse log-det, both with the batch shape ---------------


@all_cases
@all_dtypes
def test_forward_log_det_is_minus_inverse_log_det(name, dtype, assert_close):
    case = get_case(name, dtype)
    tol = ROUND_TRIP_TOL[dtype]
    x = case.sample_x()
    fldj = case.make_bijector().forward_log_det_jacobian(fresh(x, dtype), case.event_ndims)
    y = case.make_bijector().forward(fresh(x, dtype))
    ildj = case.make_bijector().inverse_log_det_jacobian(fresh(y, dtype), latent_ndims(case))
    assert fldj.shape == case.batch_shape and ildj.shape == case.batch_shape
    assert_close("fldj_vs_ildj", fldj, -ildj, atol=tol, rtol=tol)


# --- 4. Eager, tf.function and XLA agree -------------------------------------------------------


def _forward_and_inverse(case):
    def run(x, y):
        y_out, log_det = case.make_bijector().forward_and_log_det(x)
        x_out, inv_log_det = case.make_bijector().inverse_and_log_det(y)
        return y_out, log_det, x_out, inv_log_det

    return run


@functools.cache
def _eager_reference(name: str, dtype: str) -> tuple[np.ndarray, ...]:
    """(x, y, f(x), log-det at x, f⁻¹(y), inverse log-det at y), computed eagerly once."""
    case = get_case(name, dtype)
    x, y = case.sample_x(), case.sample_y()
    outputs = _forward_and_inverse(case)(fresh(x, dtype), fresh(y, dtype))
    return (x, y, *(o.numpy() for o in outputs))


@tiered_cases
@all_dtypes
@pytest.mark.parametrize("jit_compile", [False, True], ids=["function", "xla"])
def test_compiled_matches_eager(name, dtype, jit_compile, assert_close):
    case = get_case(name, dtype)
    tol = COMPILED_TOL[dtype]
    x, y, *eager = _eager_reference(name, dtype)
    run = tf.function(_forward_and_inverse(case), jit_compile=jit_compile, autograph=False)
    compiled = run(fresh(x, dtype), fresh(y, dtype))
    check = "xla_vs_eager" if jit_compile else "function_vs_eager"
    for got, want in zip(compiled, eager):
        assert_close(check, got, want, atol=tol, rtol=tol)


# --- 5. Gradients reach every weight -----------------------------------------------------------


@layer_cases
@all_dtypes
def test_gradients_reach_every_weight(name, dtype):
    case = get_case(name, dtype)
    x = fresh(case.sample_x(), dtype)
    weights = case.layer.trainable_weights
    assert weights
    with tf.GradientTape() as tape:
        y, log_det = case.make_bijector().forward_and_log_det(x)
        loss = tf.reduce_sum(y) + tf.reduce_sum(log_det)
    grads = tape.gradient(loss, weights)
    for w, g in zip(weights, grads):
        assert g is not None, f"no gradient reaches {w.path}"
        assert np.all(np.isfinite(g.numpy())), f"non-finite gradient for {w.path}"
        assert np.any(g.numpy() != 0), f"zero gradient for {w.path}"


# --- 6. Composition with TFP -------------------------------------------------------------------


def _reference(case, dtype):
    x, _, y, log_det, _, _ = _eager_reference(case.name, dtype)
    return x, y, log_det


@all_cases
@all_dtypes
def test_chain_and_invert(name, dtype, assert_close):
    case = get_case(name, dtype)
    tol = COMPOSED_TOL[dtype]
    x, y, log_det = _reference(case, dtype)
    nd, latent_nd = case.event_ndims, latent_ndims(case)

    chain = tfb.Chain([case.make_bijector(), tfb.Identity()])
    assert_close("composed", chain.forward(fresh(x, dtype)), y, atol=tol, rtol=tol)
    assert_close("composed", chain.forward_log_det_jacobian(fresh(x, dtype), nd), log_det, atol=tol, rtol=tol)

    inverted = tfb.Invert(case.make_bijector())
    assert_close("composed", inverted.inverse(fresh(x, dtype)), y, atol=tol, rtol=tol)
    assert_close("composed", inverted.forward(fresh(y, dtype)), x, atol=tol, rtol=tol)
    assert_close(
        "composed",
        inverted.forward_log_det_jacobian(fresh(y, dtype), latent_nd),
        -log_det,
        atol=tol,
        rtol=tol,
    )

    # Two bijectors: a scale by 3/2 after this one adds D·log(3/2).
    two = tfb.Chain([tfb.Scale(tf.constant(1.5, dtype)), case.make_bijector()])
    latent_size = math.prod(case.latent_event_shape)
    assert_close("composed", two.forward(fresh(x, dtype)), 1.5 * y, atol=tol, rtol=tol)
    assert_close(
        "composed",
        two.forward_log_det_jacobian(fresh(x, dtype), nd),
        log_det + latent_size * math.log(1.5),
        atol=tol,
        rtol=tol,
    )


@all_cases
@all_dtypes
def test_transformed_distribution_log_prob(name, dtype, assert_close):
    case = get_case(name, dtype)
    tol = COMPOSED_TOL[dtype]
    x, y, log_det = _reference(case, dtype)
    latent = case.latent_event_shape
    axes = tuple(range(-len(latent), 0))
    # The density of x by hand: a standard normal at f(x) plus the log-det.
    want = (
        -0.5 * np.sum(y.astype(np.float64) ** 2, axis=axes)
        - 0.5 * math.prod(latent) * math.log(2 * math.pi)
        + log_det
    )
    if len(latent) == 1:
        base = tfd.Independent(tfd.Normal(tf.zeros(latent, dtype), 1.0), reinterpreted_batch_ndims=1)
    else:
        base = tfd.Sample(tfd.Normal(tf.constant(0.0, dtype), 1.0), sample_shape=latent)
    flow = tfd.TransformedDistribution(base, bijector=tfb.Invert(case.make_bijector()))
    assert tuple(flow.event_shape) == case.event_shape
    log_prob = flow.log_prob(fresh(x, dtype))
    assert log_prob.shape == case.batch_shape
    assert_close("composed", log_prob, want.astype(dtype), atol=tol, rtol=tol)


# --- 7. Bad inputs raise ValueError naming what was expected and what came ----------------------


@all_cases
def test_rejects_integer_input(name):
    case = get_case(name, "float32")
    x = tf.zeros(case.batch_shape + case.event_shape, tf.int32)
    y = tf.zeros(case.batch_shape + case.latent_event_shape, tf.int32)
    with pytest.raises(ValueError, match=r"expected a floating-point.*got dtype int32"):
        case.make_bijector().forward_and_log_det(x)
    with pytest.raises(ValueError, match=r"expected a floating-point.*got dtype int32"):
        case.make_bijector().inverse_and_log_det(y)
    with pytest.raises(ValueError, match=r"expected a floating-point.*got dtype int32"):
        case.make_bijector().forward(x)


@all_cases
def test_rejects_wrong_rank(name):
    case = get_case(name, "float32")
    for nd, shape, method in [
        (case.event_ndims, case.event_shape, "forward_and_log_det"),
        (latent_ndims(case), case.latent_event_shape, "inverse_and_log_det"),
    ]:
        too_small = tf.zeros(shape[1:], tf.float32)
        expected = rf"expected a tensor of rank >= {nd}.*got rank {nd - 1}"
        with pytest.raises(ValueError, match=expected):
            getattr(case.make_bijector(), method)(too_small)


@pytest.mark.parametrize("name", CHANNEL_CASE_NAMES, ids=CHANNEL_CASE_NAMES)
def test_rejects_wrong_channel_count(name):
    case = get_case(name, "float32")
    channels = case.event_shape[-1]
    x = tf.zeros(case.batch_shape + case.event_shape[:-1] + (channels + 1,))
    expected = rf"expected {channels} channels.*got {channels + 1}"
    with pytest.raises(ValueError, match=expected):
        case.make_bijector().forward_and_log_det(x)
    with pytest.raises(ValueError, match=expected):
        case.make_bijector().inverse_and_log_det(x)


def test_squeeze_rejects_odd_spatial_size_and_bad_factor():
    with pytest.raises(ValueError, match=r"divisible by 2, got 5x4"):
        Squeeze(2).forward(tf.zeros([1, 5, 4, 2]))
    with pytest.raises(ValueError, match=r"divisible by 3, got 6x4"):
        Squeeze(3).forward(tf.zeros([1, 6, 4, 2]))
    with pytest.raises(ValueError, match=r"channels divisible by 4, got 6"):
        Squeeze(2).inverse(tf.zeros([1, 2, 2, 6]))
    with pytest.raises(ValueError, match=r"factor must be an integer >= 2, got 1"):
        Squeeze(1)
    with pytest.raises(ValueError, match=r"factor must be an integer >= 2, got 2.0"):
        Squeeze(2.0)


def test_checkerboard_rejects_odd_spatial_size():
    # The layer refuses at build time, the bijector at call time.
    with pytest.raises(ValueError, match=r"even height and width, got 5x4"):
        CouplingLayer(mask="checkerboard", hidden_channels=4).build((None, 5, 4, 2))
    with pytest.raises(ValueError, match=r"even height and width, got 5x4"):
        AffineCoupling(_wrong_channels, mask="checkerboard").forward_and_log_det(tf.zeros([1, 5, 4, 2]))


def _wrong_channels(x, context=None):
    return tf.concat([x, x, x], axis=-1)  # 3× the input channels


@pytest.mark.parametrize(
    "mask, shape, want",
    [("channel", (1, 4, 4, 4), 4), ("checkerboard", (1, 4, 4, 2), 4), ("half", (1, 4), 4)],
    ids=["channel", "checkerboard", "half"],
)
def test_coupling_rejects_wrong_conditioner_output(mask, shape, want):
    x = tf.ones(shape)
    with pytest.raises(ValueError, match=rf"expected {want} channels.*got \d+"):
        AffineCoupling(_wrong_channels, mask=mask).forward_and_log_det(x)
    with pytest.raises(ValueError, match=rf"expected {want // 2} channels.*got \d+"):
        AdditiveCoupling(_wrong_channels, mask=mask).inverse_and_log_det(x)


def test_spline_coupling_rejects_wrong_conditioner_output():
    # 2 moving entries × (3·2 − 1) spline parameters each.
    with pytest.raises(ValueError, match=r"expected 10 channels.*got 6"):
        SplineCoupling(_wrong_channels, num_bins=2, mask="half").forward_and_log_det(tf.ones([1, 4]))


def test_coupling_layer_rejects_conditioner_with_wrong_channels():
    layer = CouplingLayer(mask="channel", conditioner=keras.layers.Conv2D(5, 1))
    with pytest.raises(ValueError, match=r"expected 4 channels.*got 5"):
        layer(tf.ones([2, 4, 4, 4]))


def test_coupling_rejects_conditioner_changing_spatial_shape():
    def shrink(x, context=None):
        return tf.concat([x, x], axis=-1)[:, 1:]

    with pytest.raises(ValueError, match=r"keep the leading shape.*got output shape"):
        AffineCoupling(shrink, mask="channel").forward_and_log_det(tf.ones([2, 4, 4, 4]))


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(mask="diagonal"), r"mask must be one of .*got 'diagonal'"),
        (dict(mask="channel", parity=2), r"parity must be 0 or 1, got 2"),
        (dict(mask="channel", scale_fn="softplus"), r"scale_fn must be one of .*got 'softplus'"),
    ],
    ids=["mask", "parity", "scale_fn"],
)
def test_coupling_rejects_bad_arguments(kwargs, expected):
    with pytest.raises(ValueError, match=expected):
        AffineCoupling(_wrong_channels, **kwargs)
    with pytest.raises(ValueError, match=expected):
        CouplingLayer(**kwargs)


def test_coupling_rejects_non_callable_and_unknown_conditioner():
    with pytest.raises(ValueError, match=r"conditioner must be callable, got int"):
        AffineCoupling(3)
    with pytest.raises(ValueError, match=r"conditioner must be .*got 'unet'"):
        CouplingLayer(conditioner="unet")


def test_singular_matrices_are_rejected():
    singular = np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match=r"initial_matrix must be invertible, got a singular"):
        InvertibleConv1x1Layer(initial_matrix=singular)
    with pytest.raises(ValueError, match=r"weight must be invertible, got a singular"):
        InvertibleConv1x1(tf.constant([[1.0, 2.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"must be a square \[C, C\] matrix, got shape \(2, 3\)"):
        InvertibleConv1x1(tf.ones([2, 3]))
    with pytest.raises(ValueError, match=r"initial_matrix is 3x3 but the input has 4 channels"):
        InvertibleConv1x1Layer(initial_matrix=np.eye(3)).build((None, 2, 2, 4))


def test_fixed_bijectors_reject_bad_arguments():
    with pytest.raises(ValueError, match=r"permutation must be a 1-D reordering.*got"):
        ChannelPermutation([0, 0, 1])
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 0.5\), got 0.5"):
        Logit(0.5)
    with pytest.raises(ValueError, match=r"num_bits must be an integer in 1..16, got 0"):
        ScalePixels(0)
    with pytest.raises(ValueError, match=r"event_ndims must be 1 .* or 3 .*got 2"):
        ScalePixels(8, event_ndims=2)
    with pytest.raises(ValueError, match=r"log_scale must have shape \[channels\], got"):
        ActNorm(tf.zeros([2, 2]), tf.zeros([2]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_bin_lookup_gives_tfps_spline_values_and_log_derivatives(dtype):
    from tfflows.bijectors.transforms import rational_quadratic_spline, spline_and_log_det

    rng = np.random.default_rng(3)
    h = tf.constant(rng.standard_normal((40, 3, 3 * 5 - 1)), dtype)
    spline = rational_quadratic_spline(h, num_bins=5, bound=3.0)
    # Inside [-3, 3], on knots' neighbourhoods and outside (identity, log-derivative 0).
    edges = [[-3.0, 3.0, 0.0], [-7.0, 9.0, 3.2]]
    x = tf.constant(np.concatenate([rng.uniform(-3.5, 3.5, (38, 3)), edges]), dtype)
    tight = {"rtol": 1e-5, "atol": 1e-5} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-12}
    v, log_det = spline_and_log_det(spline, x, forward=True)
    np.testing.assert_allclose(v, spline.forward(x), **tight)
    np.testing.assert_allclose(log_det, spline.forward_log_det_jacobian(x, event_ndims=0), **tight)
    back, inverse_log_det = spline_and_log_det(spline, v, forward=False)
    np.testing.assert_allclose(back, spline.inverse(v), **tight)
    # The round trip itself loses float32 digits where a bin is steep (TFP's inverse as much).
    np.testing.assert_allclose(back, x, **(tight if dtype == "float64" else {"rtol": 1e-3, "atol": 1e-4}))
    np.testing.assert_allclose(inverse_log_det, spline.inverse_log_det_jacobian(v, event_ndims=0), **tight)
    np.testing.assert_allclose(inverse_log_det, -log_det, **tight)
    assert np.all(np.asarray(log_det)[-1, :2] == 0.0)  # outside the interval
