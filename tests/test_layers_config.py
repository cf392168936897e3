"""The Keras layers: their state at initialisation and their serialization.

- A fresh coupling is the identity (log-det 0) with ``scale_fn`` "tanh" or
  "exp" and when additive; with "sigmoid" it scales the moving part by
  sigmoid(2).
- ``ActNormLayer.initialize`` standardises each channel once and is a no-op
  afterwards unless forced.
- Every layer's config survives ``from_config(get_config())`` and JSON, and
  ``serialize_keras_object`` / ``deserialize_keras_object``; with the weights
  copied across, the clone computes exactly the same numbers.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfflows.layers import (
    MADE,
    MLP,
    ActNormLayer,
    ConvNet,
    CouplingLayer,
    InvertibleConv1x1Layer,
    MaskedAutoregressiveLayer,
    MaskedDense,
    PriorLayer,
    ResNet,
    SplineCouplingLayer,
    StandardizeLayer,
    ViT,
    ZeroConv,
)

from bijector_cases import TinyConditioner, randomize_weights

DTYPES = ("float32", "float64")


def _normalized(config: dict[str, Any]) -> Any:
    """The config as JSON would give it back (tuples become lists)."""
    return json.loads(json.dumps(config))


def _as_list(outputs) -> list[np.ndarray]:
    outputs = outputs if isinstance(outputs, (tuple, list)) else [outputs]
    return [np.asarray(o) for o in outputs]


# --- A fresh coupling is the identity (or Glow's constant sigmoid(2) scale) ---------------------


def _moving_mask(mask: str, parity: int, shape: tuple) -> np.ndarray:
    """1 on the entries that move, written out independently of tfflows.bijectors.masks."""
    moving = np.zeros(shape)
    if mask == "checkerboard":
        h, w = shape[-3], shape[-2]
        rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        moving[...] = ((rows + cols + parity) % 2 == 1)[:, :, None]
    else:
        k = shape[-1] // 2
        if parity == 0:
            moving[..., k:] = 1.0
        else:
            moving[..., :k] = 1.0
    return moving


_FRESH_COUPLINGS = [
    ("channel", 0, "convnet", (4, 4, 4)),
    ("channel", 1, "convnet", (4, 4, 3)),
    ("checkerboard", 0, "resnet", (4, 4, 2)),
    ("checkerboard", 1, "convnet", (4, 4, 2)),
    ("half", 0, "mlp", (5,)),
    ("half", 1, "mlp", (5,)),
]


@pytest.mark.parametrize(
    "mask, parity, conditioner, event_shape",
    _FRESH_COUPLINGS,
    ids=[f"{m}{p}_{c}" for m, p, c, _ in _FRESH_COUPLINGS],
)
@pytest.mark.parametrize("kind", ["tanh", "exp", "additive", "sigmoid"])
def test_fresh_coupling_is_identity_or_sigmoid2_scale(kind, mask, parity, conditioner, event_shape):
    layer = CouplingLayer(
        mask=mask,
        parity=parity,
        additive=kind == "additive",
        scale_fn="sigmoid" if kind == "additive" else kind,
        conditioner=conditioner,
        dtype="float64",
        **(
            {"hidden_units": 8} if mask == "half" and conditioner in (None, "mlp") else {"hidden_channels": 8}
        ),
    )  # a dense conditioner's size name
    x = np.random.default_rng(0).standard_normal((3, *event_shape))
    y, log_det = layer(tf.constant(x))
    x_back, inv_log_det = layer(tf.identity(y), inverse=True)
    if kind != "sigmoid":
        np.testing.assert_array_equal(y, x)
        np.testing.assert_array_equal(log_det, np.zeros(3))
        np.testing.assert_array_equal(x_back, x)
        np.testing.assert_array_equal(inv_log_det, np.zeros(3))
        return
    moving = _moving_mask(mask, parity, x.shape)
    scale = 1.0 / (1.0 + np.exp(-2.0))
    np.testing.assert_allclose(y, np.where(moving > 0, x * scale, x), rtol=1e-14, atol=1e-14)
    n_moving = moving[0].sum()
    np.testing.assert_allclose(log_det, np.full(3, n_moving * np.log(scale)), rtol=1e-14)
    np.testing.assert_allclose(x_back, x, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: SplineCouplingLayer(mask="half", num_bins=4, hidden_units=8, dtype="float64"), (3, 5)),
        (
            lambda: SplineCouplingLayer(
                mask="channel", parity=1, num_bins=4, hidden_channels=8, dtype="float64"
            ),
            (3, 4, 4, 3),
        ),
        (lambda: PriorLayer(event_ndims=1, dtype="float64"), (3, 5)),
        (lambda: PriorLayer(dtype="float64"), (3, 4, 4, 3)),
    ],
    ids=["spline_half", "spline_channel", "prior_vector", "prior_image"],
)
def test_fresh_spline_coupling_and_prior_are_the_identity(make, shape):
    x = np.random.default_rng(0).standard_normal(shape) * 2.0  # inside and outside the bound
    y, log_det = make()(tf.constant(x))
    np.testing.assert_allclose(y, x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_det, np.zeros(shape[0]), atol=1e-12)


# --- Leading batch axes are just batch -----------------------------------------------------------


_TWO_BATCH_AXES = {
    "coupling_channel_convnet": (
        lambda: CouplingLayer(
            mask="channel", scale_fn="tanh", conditioner="convnet", hidden_channels=8, dtype="float64"
        ),
        (4, 4, 4),
    ),
    "coupling_checkerboard_resnet": (
        lambda: CouplingLayer(
            mask="checkerboard",
            scale_fn="tanh",
            conditioner="resnet",
            hidden_channels=8,
            num_blocks=1,
            dtype="float64",
        ),
        (4, 4, 2),
    ),
    "coupling_half_mlp": (
        lambda: CouplingLayer(mask="half", scale_fn="tanh", hidden_units=8, dtype="float64"),
        (5,),
    ),
    "spline_channel": (
        lambda: SplineCouplingLayer(mask="channel", num_bins=3, hidden_channels=8, dtype="float64"),
        (4, 4, 3),
    ),
}


@pytest.mark.parametrize("name", list(_TWO_BATCH_AXES), ids=list(_TWO_BATCH_AXES))
@pytest.mark.parametrize("with_context", [False, True], ids=["plain", "context"])
def test_coupling_layer_treats_two_batch_axes_as_one(name, with_context):
    """Built by a first call on a [2, 3] batch, it matches the same batch flattened to [6]."""
    make, event_shape = _TWO_BATCH_AXES[name]
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, *event_shape))
    context = rng.standard_normal((2, 3, 2)) if with_context else None
    layer = make()
    kwargs = {} if context is None else {"context": tf.constant(context)}
    layer(tf.constant(x), **kwargs)  # builds on the 2-D batch
    randomize_weights(layer, seed=5)
    y, log_det = layer(tf.constant(x), **kwargs)
    flat_kwargs = {} if context is None else {"context": tf.constant(context.reshape(6, 2))}
    y_flat, log_det_flat = layer(tf.constant(x.reshape(6, *event_shape)), **flat_kwargs)
    assert y.shape == x.shape and log_det.shape == (2, 3)
    np.testing.assert_allclose(y, y_flat.numpy().reshape(x.shape), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_det, log_det_flat.numpy().reshape(2, 3), rtol=1e-12)
    assert np.ptp(log_det.numpy()) > 1e-3  # the weights are not trivial


# --- ActNorm's data-dependent initialisation ----------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("event_shape", [(4, 4, 3), (5,)], ids=["image", "vector"])
def test_actnorm_initialize_standardizes_once(event_shape, dtype):
    rng = np.random.default_rng(1)
    channels = event_shape[-1]
    loc, scale = rng.normal(size=channels) * 3, rng.uniform(0.2, 4.0, size=channels)
    x = (loc + scale * rng.standard_normal((64, *event_shape))).astype(dtype)
    x2 = (2.0 * x + 1.0).astype(dtype)
    layer = ActNormLayer(event_ndims=len(event_shape), dtype=dtype)
    axes = tuple(range(len(event_shape)))
    tol = 1e-4 if dtype == "float32" else 1e-8
    var_tol = 1e-4  # actnorm_init's eps = 1e-6 leaves var = v / (v + eps), v >= 0.04 here

    assert not layer.built
    assert layer.initialize(tf.constant(x)) is True
    assert layer.is_initialized
    y = layer(tf.constant(x))[0].numpy()
    np.testing.assert_allclose(y.mean(axis=axes), np.zeros(channels), atol=tol)
    np.testing.assert_allclose(y.var(axis=axes), np.ones(channels), atol=var_tol)

    before = layer.get_weights()
    assert layer.initialize(tf.constant(x2)) is False
    for w_before, w_after in zip(before, layer.get_weights()):
        np.testing.assert_array_equal(w_before, w_after)

    assert layer.initialize(tf.constant(x2), force=True) is True
    y2 = layer(tf.constant(x2))[0].numpy()
    np.testing.assert_allclose(y2.mean(axis=axes), np.zeros(channels), atol=tol)
    np.testing.assert_allclose(y2.var(axis=axes), np.ones(channels), atol=var_tol)
    assert not np.allclose(before[0], layer.get_weights()[0])


# --- InvertibleConv1x1Layer starts from the matrix it was given ---------------------------------


@pytest.mark.parametrize("lu", [False, True], ids=["plain", "lu"])
def test_conv1x1_layer_starts_from_its_initial_matrix(lu):
    rng = np.random.default_rng(2)
    matrix = rng.standard_normal((4, 4))
    layer = InvertibleConv1x1Layer(lu=lu, initial_matrix=matrix, dtype="float64")
    layer.build((None, 2, 2, 4))
    np.testing.assert_allclose(layer.weight_matrix(), matrix, rtol=1e-12, atol=1e-12)
    # The same seed gives the same random rotation in both parameterisations.
    plain = InvertibleConv1x1Layer(lu=False, seed=5, event_ndims=1, dtype="float64")
    plain.build((None, 4))
    other = InvertibleConv1x1Layer(lu=lu, seed=5, event_ndims=1, dtype="float64")
    other.build((None, 4))
    w = plain.weight_matrix().numpy()
    np.testing.assert_allclose(w @ w.T, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(w), 1.0, atol=1e-12)
    np.testing.assert_allclose(other.weight_matrix(), w, atol=1e-12)


# --- Config and serialization round trips -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    make: Callable[[], keras.layers.Layer]
    x_shape: tuple
    context_size: int | None = None
    initialize: bool = False  # run ActNorm's data-dependent initialisation


_LAYERS: dict[str, LayerSpec] = {
    "coupling_convnet": LayerSpec(
        lambda: CouplingLayer(mask="channel", conditioner="convnet", hidden_channels=8), (2, 4, 4, 4)
    ),
    "coupling_convnet_context_float64": LayerSpec(
        lambda: CouplingLayer(
            mask="checkerboard", parity=1, conditioner="convnet", hidden_channels=8, dtype="float64"
        ),
        (2, 4, 4, 2),
        context_size=3,
    ),
    "coupling_resnet_tanh": LayerSpec(
        lambda: CouplingLayer(
            mask="checkerboard", scale_fn="tanh", conditioner="resnet", hidden_channels=8, num_blocks=1
        ),
        (2, 4, 4, 2),
    ),
    "coupling_mlp_additive": LayerSpec(
        lambda: CouplingLayer(mask="half", parity=1, additive=True, conditioner="mlp", hidden_units=8), (2, 5)
    ),
    "coupling_mlp_exp_context": LayerSpec(
        lambda: CouplingLayer(mask="half", scale_fn="exp", hidden_units=8), (2, 5), context_size=2
    ),
    "coupling_custom_conditioner": LayerSpec(
        lambda: CouplingLayer(mask="channel", scale_fn="tanh", conditioner=TinyConditioner(4)), (2, 4, 4, 4)
    ),
    "actnorm_image": LayerSpec(lambda: ActNormLayer(), (4, 4, 4, 3), initialize=True),
    "actnorm_vector_float64": LayerSpec(
        lambda: ActNormLayer(event_ndims=1, dtype="float64"), (4, 5), initialize=True
    ),
    "conv1x1_plain": LayerSpec(lambda: InvertibleConv1x1Layer(seed=3), (2, 4, 4, 4)),
    "conv1x1_lu": LayerSpec(lambda: InvertibleConv1x1Layer(lu=True, seed=3), (2, 4, 4, 4)),
    "conv1x1_lu_vector_initial_matrix": LayerSpec(
        lambda: InvertibleConv1x1Layer(lu=True, event_ndims=1, initial_matrix=[[2.0, 1.0], [1.0, 3.0]]),
        (2, 2),
    ),
    "coupling_zeroconv": LayerSpec(
        lambda: CouplingLayer(mask="channel", conditioner="zeroconv"), (2, 4, 4, 4)
    ),
    "spline_coupling_half_context": LayerSpec(
        lambda: SplineCouplingLayer(mask="half", num_bins=3, hidden_units=8), (2, 5), context_size=2
    ),
    "spline_coupling_channel": LayerSpec(
        lambda: SplineCouplingLayer(mask="channel", num_bins=3, hidden_channels=8, dtype="float64"),
        (2, 4, 4, 3),
    ),
    "prior_image_context": LayerSpec(lambda: PriorLayer(), (2, 4, 4, 3), context_size=3),
    "prior_vector": LayerSpec(lambda: PriorLayer(event_ndims=1, dtype="float64"), (2, 5)),
    "convnet": LayerSpec(lambda: ConvNet(8, 6), (2, 4, 4, 3)),
    "convnet_context": LayerSpec(lambda: ConvNet(8, 6), (2, 4, 4, 3), context_size=2),
    "resnet": LayerSpec(lambda: ResNet(2, 8, 6), (2, 4, 4, 3)),
    "zeroconv_context": LayerSpec(lambda: ZeroConv(6), (2, 4, 4, 3), context_size=2),
    "mlp": LayerSpec(lambda: MLP([8, 8], 4), (2, 5)),
    "maf_random_context": LayerSpec(
        lambda: MaskedAutoregressiveLayer(hidden_units=8, ordering="random", seed=4), (2, 5), context_size=2
    ),
    "iaf_float64": LayerSpec(
        lambda: MaskedAutoregressiveLayer(hidden_units=8, direction="iaf", dtype="float64"), (2, 4)
    ),
    "standardize": LayerSpec(lambda: StandardizeLayer(), (6, 5), initialize=True),
    "made_context": LayerSpec(lambda: MADE([2, 3, 1], hidden_units=6), (2, 3), context_size=2),
    "masked_dense": LayerSpec(lambda: MaskedDense([1, 2, 3], [1, 1, 2, 2], activation="relu"), (2, 3)),
    "mlp_context": LayerSpec(lambda: MLP([8], 4, dtype="float64"), (2, 5), context_size=3),
    "coupling_token_channel_vit_context": LayerSpec(
        lambda: CouplingLayer(
            mask="token_channel",
            scale_fn="scaled_sigmoid",
            indices=[3, 0],
            hidden_channels=8,
            num_blocks=1,
            conditioner_options={"heads": 2},
        ),
        (2, 4, 5),
        context_size=3,
    ),
    "coupling_token_spatial_spline_vit": LayerSpec(
        lambda: CouplingLayer(
            mask="token_spatial",
            parity=1,
            transform="spline",
            num_bins=3,
            indices=[0, 3],
            hidden_channels=8,
            num_blocks=1,
            conditioner_options={"heads": 2, "mlp_ratio": 2},
            dtype="float64",
        ),
        (2, 4, 5),
    ),
    "coupling_checkerboard_spline": LayerSpec(
        lambda: CouplingLayer(mask="checkerboard", transform="spline", num_bins=3, hidden_channels=8),
        (2, 4, 4, 2),
    ),
    "vit_context": LayerSpec(lambda: ViT(2, 8, 2, 6, mlp_ratio=2), (2, 4, 5), context_size=3),
}


def _inputs(spec: LayerSpec, layer: keras.layers.Layer):
    rng = np.random.default_rng(4)
    dtype = layer.compute_dtype
    x = tf.constant(rng.standard_normal(spec.x_shape), dtype)
    context = None
    if spec.context_size is not None:
        context = tf.constant(rng.standard_normal((spec.x_shape[0], spec.context_size)), dtype)
    return x, context


def _call(layer, x, context):
    return layer(x) if context is None else layer(x, context=context)


def _built(name: str) -> tuple[keras.layers.Layer, tf.Tensor, tf.Tensor | None]:
    """A layer of the named spec, built, with random weights (and initialised)."""
    spec = _LAYERS[name]
    layer = spec.make()
    x, context = _inputs(spec, layer)
    _call(layer, x, context)
    randomize_weights(layer, seed=11)
    if spec.initialize:
        layer.initialize(x)
    return layer, x, context


def _assert_same_outputs(layer, clone, x, context):
    clone.set_weights(layer.get_weights())
    want, got = _as_list(_call(layer, x, context)), _as_list(_call(clone, x, context))
    assert len(want) == len(got)
    for w, g in zip(want, got):
        np.testing.assert_array_equal(g, w)
    if getattr(layer, "needs_data_init", False):
        assert clone.is_initialized
    if hasattr(layer, "bijector"):  # the inverse pass too
        y = tf.identity(_call(layer, x, context)[0])
        kwargs = {} if context is None else {"context": context}
        for w, g in zip(layer(y, inverse=True, **kwargs), clone(y, inverse=True, **kwargs)):
            np.testing.assert_array_equal(g, w)


layer_names = pytest.mark.parametrize("name", list(_LAYERS), ids=list(_LAYERS))


@layer_names
def test_from_config_round_trip(name):
    layer, x, context = _built(name)
    config = layer.get_config()
    text = json.dumps(config)
    clone = type(layer).from_config(json.loads(text))
    assert _normalized(clone.get_config()) == _normalized(config)
    _call(clone, x, context)  # builds the clone
    _assert_same_outputs(layer, clone, x, context)


@layer_names
def test_keras_serialization_round_trip(name):
    layer, x, context = _built(name)
    serialized = keras.saving.serialize_keras_object(layer)
    text = json.dumps(serialized)
    clone = keras.saving.deserialize_keras_object(json.loads(text))
    assert type(clone) is type(layer)
    assert clone.built, "the build config should rebuild the weights"
    assert _normalized(keras.saving.serialize_keras_object(clone)) == _normalized(serialized)
    _assert_same_outputs(layer, clone, x, context)


def test_registered_names_are_in_the_tfflows_package():
    for cls in (
        CouplingLayer,
        ActNormLayer,
        InvertibleConv1x1Layer,
        SplineCouplingLayer,
        PriorLayer,
        ConvNet,
        ResNet,
        MLP,
        ZeroConv,
        MaskedAutoregressiveLayer,
        MADE,
        MaskedDense,
        StandardizeLayer,
        ViT,
    ):
        assert keras.saving.get_registered_name(cls) == f"tfflows>{cls.__name__}"


def test_layers_reject_bad_shapes_and_arguments():
    with pytest.raises(
        ValueError,
        match=r"expected inputs shaped \[batch, height, width, "
        r"channels\], got shape \(None, 4\)",
    ):
        ActNormLayer().build((None, 4))
    with pytest.raises(ValueError, match=r"expected inputs shaped \[batch, features\], got"):
        InvertibleConv1x1Layer(event_ndims=1).build((4,))
    with pytest.raises(ValueError, match=r"event_ndims must be 1 .* or 3 .*got 2"):
        ActNormLayer(event_ndims=2)
    with pytest.raises(ValueError, match=r"needs at least 2 channels, got shape"):
        CouplingLayer(mask="channel").build((None, 4, 4, 1))
    with pytest.raises(ValueError, match=r"no weights yet"):
        ActNormLayer().bijector()
    with pytest.raises(ValueError, match=r"hidden_channels must be a positive integer, got 0"):
        ConvNet(0, 4)
    with pytest.raises(ValueError, match=r"hidden_units\[1\] must be a positive integer, got -1"):
        MLP([4, -1], 2)
