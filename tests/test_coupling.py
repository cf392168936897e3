"""The generic Coupling: the old classes are it, conditioners come from a registry, models ask steps.

The property tests of every coupling case (round trips, log-det against the
float64 Jacobian, compiled against eager, gradients) run from
tests/bijector_cases.py; this file checks what the registry cannot: that
the old names compute what the generic class computes, that a conditioner
registered by a user works in a model and across save/load, that masks
refuse what they cannot split, and that the model base finds shapes,
layers and data-initialised steps from the steps' own declarations.
"""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfflows
from tfflows.bijectors import (
    AdditiveCoupling,
    AffineCoupling,
    Coupling,
    Flatten,
    ScalePixels,
    SplineCoupling,
    SplineTransform,
    Squeeze,
)
from tfflows.bijectors.masks import make_mask
from tfflows.bijectors.transforms import AffineTransform, make_transform
from tfflows.layers import (
    CouplingLayer,
    FlowLayer,
    SplineCouplingLayer,
    conditioner_names,
    get_conditioner,
    register_conditioner,
)
from tfflows.layers.base import DataInitializedLayer
from tfflows.models import FlowModel


def _random_conditioner(out: int, seed: int):
    """A fixed random dense map of the last axis: non-trivial parameters, no Keras state."""
    cache: dict[int, tf.Tensor] = {}

    def conditioner(x, context=None):
        d = x.shape[-1]
        if d not in cache:
            rng = np.random.default_rng(seed)
            cache[d] = tf.constant(rng.normal(scale=0.5, size=(d, out)))
        return tf.tensordot(x, tf.cast(cache[d], x.dtype), [[-1], [0]])

    return conditioner


@pytest.mark.parametrize(
    "mask, shape, make_old, transform",
    [
        (
            "channel",
            (2, 4, 4, 4),
            lambda c: AffineCoupling(c, "channel", 1, "tanh"),
            AffineTransform("tanh", maps_to_latent=True),
        ),
        (
            "checkerboard",
            (2, 4, 4, 2),
            lambda c: AffineCoupling(c, "checkerboard", 0, "sigmoid"),
            AffineTransform("sigmoid", maps_to_latent=True),
        ),
        ("half", (3, 5), lambda c: AdditiveCoupling(c, "half", 0), make_transform("additive")),
        (
            "half",
            (3, 5),
            lambda c: SplineCoupling(c, 4, 3.0, "half", 1),
            SplineTransform(4, 3.0, entry_major=True),
        ),
    ],
    ids=["affine_channel", "affine_checkerboard", "additive_half", "spline_half"],
)
def test_old_classes_are_the_generic_coupling(mask, shape, make_old, transform):
    x = tf.constant(np.random.default_rng(0).normal(size=shape))
    parity = make_old(lambda v, c=None: v).parity
    moving = make_mask(mask, parity).moving_channels(shape[-1])
    cond = _random_conditioner(transform.params_per_entry * moving, seed=1)
    old = make_old(cond)
    new = Coupling(cond, transform, mask, parity)
    assert isinstance(old, Coupling)
    y_old, ld_old = old.forward_and_log_det(x)
    y_new, ld_new = new.forward_and_log_det(tf.identity(x))
    np.testing.assert_array_equal(y_old.numpy(), y_new.numpy())
    np.testing.assert_array_equal(ld_old.numpy(), ld_new.numpy())
    assert np.max(np.abs(y_old.numpy() - x.numpy())) > 1e-2  # not the identity
    x_back, ld_back = new.inverse_and_log_det(tf.identity(y_new))
    np.testing.assert_allclose(x_back.numpy(), x.numpy(), atol=1e-12)
    np.testing.assert_allclose(ld_back.numpy(), -ld_new.numpy(), atol=1e-12)


def test_spline_coupling_layer_is_the_generic_layer_with_its_old_config():
    layer = SplineCouplingLayer(mask="half", num_bins=3, hidden_units=8)
    assert isinstance(layer, CouplingLayer) and layer.transform == "spline"
    config = layer.get_config()
    assert {"mask", "parity", "num_bins", "bound", "hidden_units", "num_hidden"} <= set(config)
    assert not {"transform", "additive", "scale_fn"} & set(config)
    # A config saved before the redesign (old size names) loads.
    old = {
        "name": "s",
        "trainable": True,
        "dtype": "float32",
        "event_ndims": 1,
        "mask": "half",
        "parity": 1,
        "num_bins": 3,
        "bound": 2.0,
        "hidden_channels": 8,
        "num_blocks": 1,
    }
    loaded = SplineCouplingLayer.from_config(old)
    assert (loaded.hidden_channels, loaded.num_blocks, loaded.parity) == (8, 1, 1)


# --- the conditioner registry ---------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tfflows_tests")
class GatedDense(keras.layers.Layer):
    """A user's conditioner: tanh(dense) · dense, the output layer zero-initialised."""

    def __init__(self, units: int, output_units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units, self.output_units = units, output_units
        self.gate = keras.layers.Dense(units, activation="tanh", dtype=self.dtype_policy)
        self.value = keras.layers.Dense(units, dtype=self.dtype_policy)
        self.out = keras.layers.Dense(output_units, kernel_initializer="zeros", dtype=self.dtype_policy)

    def build(self, x_shape, context_shape=None):
        width = x_shape[-1] + (0 if context_shape is None else context_shape[-1])
        for dense in (self.gate, self.value):
            dense.build((None, width))
        self.out.build((None, self.units))

    def call(self, x, context=None):
        h = x if context is None else keras.ops.concatenate([x, keras.ops.cast(context, x.dtype)], -1)
        return self.out(self.gate(h) * self.value(h))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "output_units": self.output_units}


def _gated_dense(output_channels, *, hidden_channels, num_blocks, dtype, name, **options):
    return GatedDense(hidden_channels, output_channels, dtype=dtype, name=name)


if "gated_dense" not in conditioner_names():
    register_conditioner("gated_dense", _gated_dense)


@keras.saving.register_keras_serializable(package="tfflows_tests")
class GatedFlow(FlowModel):
    """A user's model: couplings whose conditioner is the registered "gated_dense"."""

    def __init__(
        self, dim: int = 3, num_layers: int = 2, num_classes: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__((dim,), num_classes=num_classes, **kwargs)
        self.dim, self.num_layers = dim, num_layers
        self._finish_init()

    def _make_steps(self) -> list:
        return [
            CouplingLayer(
                "half",
                i % 2,
                scale_fn="scaled_sigmoid",
                conditioner="gated_dense",
                hidden_channels=8,
                name=f"coupling_{i}",
            )
            for i in range(self.num_layers)
        ]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "dim": self.dim,
            "num_layers": self.num_layers,
            "num_classes": self.num_classes,
        }


def test_registry_holds_the_built_in_conditioners():
    assert {"convnet", "resnet", "mlp", "zeroconv", "vit"} <= set(conditioner_names())
    assert get_conditioner("gated_dense") is _gated_dense
    with pytest.raises(ValueError, match=r"conditioner must be a Keras layer or one of .*got 'unet'"):
        get_conditioner("unet")
    with pytest.raises(ValueError, match=r"called 'mlp' is registered already"):
        register_conditioner("mlp", _gated_dense)
    with pytest.raises(ValueError, match=r"factory must be callable, got int"):
        register_conditioner("three", 3)
    with pytest.raises(ValueError, match=r"name must be a non-empty string, got ''"):
        register_conditioner("", _gated_dense)


@pytest.mark.slow
def test_user_registered_conditioner_trains_saves_and_loads(tmp_path):
    keras.utils.set_random_seed(0)
    model = GatedFlow(3, num_layers=2, num_classes=2)
    assert all(isinstance(layer.conditioner, GatedDense) for layer in model.flow_layers)
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(64, 3)) * [1.0, 0.3, 2.0] + [0.0, 1.0, -1.0]).astype("float32")
    labels = rng.integers(0, 2, 64).astype("int32")
    before = float(tf.reduce_mean(model.log_prob(x, labels)))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(x, labels, batch_size=32, epochs=8, verbose=0)
    after = float(tf.reduce_mean(model.log_prob(x, labels)))
    assert after > before + 0.1  # the conditioners learned
    path = os.path.join(tmp_path, "gated.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.flow_layers[0].conditioner, GatedDense)
    np.testing.assert_array_equal(loaded.log_prob(x, labels).numpy(), model.log_prob(x, labels).numpy())


# --- masks refuse what they cannot split ----------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(mask="token_channel", indices=[0, 0]), r"indices must be a non-empty list of distinct"),
        (dict(mask="token_spatial", indices=[]), r"indices must be a non-empty list"),
        (dict(mask="checkerboard", indices=[0]), r"checkerboard mask takes no indices"),
        (dict(mask="channel", transform="quadratic"), r"transform must be one of .*got 'quadratic'"),
        (dict(mask="half", additive=True, transform="spline"), r"additive=True is transform='additive'"),
        (dict(mask="half", transform="spline", num_bins=1), r"num_bins must be an integer >= 2, got 1"),
        (dict(mask="token_channel", event_ndims=3), r"works on events of 2 dimensions"),
        (dict(mask="half", conditioner="unet"), r"conditioner must be .*got 'unet'"),
        (dict(mask="half", conditioner_options=[1]), r"conditioner_options must be a dict"),
    ],
    ids=[
        "duplicate",
        "empty",
        "checkerboard_indices",
        "transform",
        "additive_spline",
        "bins",
        "event_ndims",
        "unknown_conditioner",
        "options",
    ],
)
def test_coupling_layer_rejects_bad_arguments(kwargs, expected):
    with pytest.raises(ValueError, match=expected):
        CouplingLayer(**kwargs)


@pytest.mark.parametrize(
    "kwargs, shape, expected",
    [
        (
            dict(mask="token_channel", indices=[6]),
            (None, 4, 6),
            r"pick fewer than all of the 6 entries.*got \[6\]",
        ),
        (
            dict(mask="token_spatial", indices=[0, 1, 2, 3]),
            (None, 4, 6),
            r"pick fewer than all of the 4 entries",
        ),
        (dict(mask="token_spatial"), (None, 1, 6), r"needs at least 2 tokens, got 1"),
        (dict(mask="token_channel"), (None, 4, 1), r"needs at least 2 channels, got shape"),
    ],
    ids=["feature_index", "every_token", "one_token", "one_feature"],
)
def test_token_masks_reject_events_they_cannot_split(kwargs, shape, expected):
    with pytest.raises(ValueError, match=expected):
        CouplingLayer(hidden_channels=8, conditioner_options={"heads": 2}, **kwargs).build(shape)


def test_coupling_rejects_token_input_of_the_wrong_rank():
    bijector = Coupling(lambda x, c=None: tf.zeros_like(x), "affine", "token_spatial")
    with pytest.raises(ValueError, match=r"expected a tensor of rank >= 2 .*got rank 1"):
        bijector.forward_and_log_det(tf.zeros([6]))
    with pytest.raises(ValueError, match=r"transform must be an ElementwiseTransform .*got int"):
        Coupling(lambda x, c=None: x, 3, "half")


# --- the model base asks steps, not types ----------------------------------------------------


class _Shift(DataInitializedLayer):
    """A data-initialised step the base has never heard of: subtracts the data mean."""

    def build(self, x_shape, context_shape=None):
        self.mean = self.add_weight(name="mean", shape=(x_shape[-1],), initializer="zeros", trainable=False)
        self._add_initialized_flag()

    def _set_from_data(self, x):
        self.mean.assign(tf.reduce_mean(tf.reshape(x, [-1, x.shape[-1]]), 0))

    def bijector(self, context=None):
        from tfflows.bijectors import ElementwiseAffine

        mean = tf.convert_to_tensor(self.mean)
        return ElementwiseAffine(tf.zeros_like(mean), -mean, event_ndims=self.event_ndims)


class _Unpatch(FlowLayer):
    """A shape-changing layer step: [H, W, C] → [H/2, W/2, 4C] (a squeeze), declared, not guessed."""

    def build(self, x_shape, context_shape=None):
        pass

    def output_event_shape(self, shape):
        h, w, c = shape
        return (h // 2, w // 2, 4 * c)

    def bijector(self, context=None):
        return Squeeze(2)


class _ContractFlow(FlowModel):
    def __init__(self, **kwargs):
        super().__init__((4, 4, 1), **kwargs)
        self.num_bits = 3
        self._finish_init()

    def _make_steps(self):
        return [
            ScalePixels(3, offset=-0.5),
            _Unpatch(name="unpatch"),
            _Shift(name="shift"),
            CouplingLayer("channel", 0, conditioner="zeroconv", name="coupling"),
            Flatten((2, 2, 4)),
        ]


def test_model_base_uses_the_steps_declarations(assert_close):
    model = _ContractFlow()
    assert model.latent_shapes == [(2, 2, 4)]
    assert [layer.name for layer in model.flow_layers] == ["unpatch", "shift", "coupling"]
    assert model.data_kind == "image" and model.num_bits == 3
    assert not model.is_initialized
    x = np.random.default_rng(0).uniform(0, 8, (16, 4, 4, 1)).astype("float32")
    assert model.initialize(x) == 1 and model.is_initialized
    shift = model.flow_layers[1]
    want = np.mean(tf.nn.space_to_depth(x / 8.0 - 0.5, 2).numpy().reshape(-1, 4), 0)
    assert_close("data_init_mean", shift.mean.numpy(), want, atol=1e-6, rtol=1e-6)
    z = model.encode(x)
    assert z.shape == (16, 16)
    # The shift step centred each channel of the data it saw; the coupling keeps that at 0.
    channel_means = np.mean(z.numpy().reshape(-1, 4), 0)
    assert_close("contract_centred", channel_means, np.zeros(4), atol=1e-5, rtol=0)
    assert_close("contract_round_trip", model.decode(z).numpy(), x, atol=1e-5, rtol=1e-5)
    # Vector models declare no num_bits; export reads the declarations.
    assert tfflows.VectorRealNVP(2, num_steps=1, width=4).data_kind == "vector"
    assert tfflows.VectorRealNVP(2, num_steps=1, width=4).num_bits is None
