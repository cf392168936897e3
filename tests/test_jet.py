"""Jet: every coupling's maths in float64, and the model as a FlowModel.

Coupling checks take each coupling of a Jet on the issue's tiny images
(4×4×1 with 2×2 patches: T = 4 tokens of 4; 8×8×2 with 4×4 patches: T = 4
tokens of 32), remake it in float64 from its config and give it random
weights (a fresh coupling is the identity, which proves nothing). Model
checks use 8×8×1 images of 5-bit levels and ViTs of width 16.
"""

from __future__ import annotations

import functools
import math
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfflows
from tfflows.bijectors import FlowChain, Patchify
from tfflows.layers import CouplingLayer, ViT
from tfflows.models.jet import spatial_part_a
from tfflows.training import make_optimizer

# (H, W, C, patch): the two image sizes of the issue.
IMAGE_CASES = {"4x4x1_p2": (4, 4, 1, 2), "8x8x2_p4": (8, 8, 2, 4)}
NUM_COUPLINGS = 4
F64_TOL = 1e-10
NUM_BITS = 5


def fresh(x, dtype=None):
    """A new tensor: TFP caches bijector results per input tensor."""
    return tf.identity(tf.constant(np.asarray(x), dtype=dtype))


def randomize(layer, seed: int, scale: float = 1.0) -> None:
    """Every weight set to a random value of order ``scale`` in the outputs."""
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        shape = tuple(w.shape)
        if len(shape) == 2 and w.name == "kernel":
            value = rng.normal(scale=1.0 / np.sqrt(shape[0]), size=shape)
        elif w.name == "gamma":
            value = rng.uniform(0.5, 1.5, size=shape)
        else:
            value = rng.normal(scale=0.2, size=shape)
        w.assign((scale * value).astype(w.dtype))


@functools.cache
def jet_of(case: str) -> tfflows.Jet:
    h, w, c, p = IMAGE_CASES[case]
    return tfflows.Jet(
        (h, w, c),
        patch_size=p,
        num_steps=NUM_COUPLINGS,
        width=8,
        depth=2,
        heads=2,
        mlp_ratio=2,
        num_bits=NUM_BITS,
    )


@functools.cache
def couplings64(case: str) -> tuple[CouplingLayer, ...]:
    """The model's couplings remade in float64 from their configs, with random weights."""
    model = jet_of(case)
    out = []
    for k, layer in enumerate(model.flow_layers):
        copy = CouplingLayer.from_config({**layer.get_config(), "dtype": "float64"})
        copy.build((None, *model.token_shape))
        randomize(copy, seed=11 + k)
        out.append(copy)
    return tuple(out)


def tokens_of(case: str, batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, *jet_of(case).token_shape))


def _jacobian(fn, x):
    """Per-example Jacobian [B, N, N] of the flat input → flat output, and fn's log-det."""
    b = x.shape[0]
    flat = tf.constant(x.reshape(b, -1))
    with tf.GradientTape() as tape:
        tape.watch(flat)
        z, log_det = fn(tf.reshape(flat, x.shape))
        z = tf.reshape(z, (b, -1))
    return tape.batch_jacobian(z, flat).numpy(), log_det.numpy()


@functools.cache
def coupling_jacobian(case: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Coupling ``k``'s float64 Jacobian and log-det on ``tokens_of(case)``, read-only.

    Computed once for the two tests that read it (each batch Jacobian traces a gradient loop).
    """
    jac, log_det = _jacobian(couplings64(case)[k].bijector().forward_and_log_det, tokens_of(case))
    jac.setflags(write=False)
    log_det.setflags(write=False)
    return jac, log_det


image_cases = pytest.mark.parametrize("case", list(IMAGE_CASES), ids=list(IMAGE_CASES))
couplings = pytest.mark.parametrize("k", range(NUM_COUPLINGS), ids=[f"c{k}" for k in range(NUM_COUPLINGS)])


# --- the couplings --------------------------------------------------------------------------


def test_splits_alternate_channel_and_spatial():
    model = jet_of("8x8x2_p4")
    masks = [(layer.mask, layer.parity) for layer in model.flow_layers]
    assert masks == [("token_channel", 0), ("token_spatial", 0), ("token_channel", 0), ("token_spatial", 1)]
    channel = [layer.indices for layer in model.flow_layers if layer.mask == "token_channel"]
    assert all(len(i) == 16 and len(set(i)) == 16 for i in channel)
    assert channel[0] != channel[1]  # a different random half per coupling
    assert spatial_part_a((2, 2)) == [0, 3] and spatial_part_a((2, 3)) == [0, 2, 4]
    assert all(isinstance(layer.conditioner, ViT) for layer in model.flow_layers)
    assert model.latent_shapes == [(4, 32)]


@image_cases
@couplings
def test_coupling_log_det_matches_the_float64_jacobian(case, k, assert_close):
    jac, log_det = coupling_jacobian(case, k)
    want = np.linalg.slogdet(jac)[1]
    assert_close("jet_jacobian", log_det, want, atol=F64_TOL, rtol=F64_TOL)
    assert np.abs(want).max() > 0.05  # random weights: not volume preserving


@image_cases
@couplings
def test_coupling_jacobian_is_triangular_with_the_frozen_part_fixed(case, k):
    layer = couplings64(case)[k]
    t, d = jet_of(case).token_shape
    jac, _ = coupling_jacobian(case, k)
    frozen = np.zeros((t, d), bool)
    if layer.mask == "token_channel":
        frozen[:, layer.indices] = True
    else:
        part_a = np.zeros(t, bool)
        part_a[layer.indices] = True
        frozen[part_a if layer.parity == 0 else ~part_a, :] = True
    frozen = frozen.reshape(-1)
    # y₁ = x₁ exactly; y₂ reads x₂ only through its own entry (a diagonal block).
    np.testing.assert_array_equal(
        jac[:, frozen][:, :, frozen],
        np.broadcast_to(np.eye(frozen.sum()), (jac.shape[0], frozen.sum(), frozen.sum())),
    )
    np.testing.assert_array_equal(jac[:, frozen][:, :, ~frozen], 0.0)
    moving = jac[:, ~frozen][:, :, ~frozen]
    np.testing.assert_array_equal(moving * (1 - np.eye(moving.shape[-1])), 0.0)
    assert np.abs(jac[:, ~frozen][:, :, frozen]).max() > 1e-3  # the moving part reads the rest


@image_cases
@couplings
def test_coupling_round_trips_both_ways(case, k, assert_close):
    layer = couplings64(case)[k]
    x = tokens_of(case, seed=4)
    z, log_det = layer.bijector().forward_and_log_det(fresh(x))
    back, inv_log_det = layer.bijector().inverse_and_log_det(fresh(z.numpy()))
    assert_close("jet_x_z_x", back.numpy(), x, atol=F64_TOL, rtol=F64_TOL)
    assert_close("jet_inverse_log_det", inv_log_det.numpy(), -log_det.numpy(), atol=F64_TOL, rtol=F64_TOL)
    z0 = tokens_of(case, seed=5)
    x0 = layer.bijector().inverse(fresh(z0))
    assert_close(
        "jet_z_x_z", layer.bijector().forward(fresh(x0.numpy())).numpy(), z0, atol=F64_TOL, rtol=F64_TOL
    )


@image_cases
def test_whole_flow_log_det_matches_the_float64_jacobian(case, assert_close):
    h, w, c, p = IMAGE_CASES[case]
    chain = FlowChain([Patchify((h, w, c), p), *(layer.bijector() for layer in couplings64(case))])
    x = np.random.default_rng(3).normal(size=(2, h, w, c))
    jac, log_det = _jacobian(chain.forward_and_log_det, x)
    assert_close("jet_chain_jacobian", log_det, np.linalg.slogdet(jac)[1], atol=1e-9, rtol=1e-9)
    back = chain.inverse(fresh(chain.forward(fresh(x)).numpy()))
    assert_close("jet_chain_round_trip", back.numpy(), x, atol=1e-9, rtol=1e-9)


# --- the model ------------------------------------------------------------------------------


def tiny(**kwargs) -> tfflows.Jet:
    keras.utils.set_random_seed(0)
    args = dict(patch_size=4, num_steps=4, width=16, depth=1, heads=2, mlp_ratio=2, num_bits=NUM_BITS)
    args.update(kwargs)
    return tfflows.Jet((8, 8, 1), **args)


def levels(n: int = 16, seed: int = 0) -> np.ndarray:
    """Dequantized 5-bit levels of a simple structured image set (not noise)."""
    rng = np.random.default_rng(seed)
    ramp = np.add.outer(np.arange(8), np.arange(8))[None, :, :, None] * 2.0
    k = np.clip(ramp + rng.integers(-2, 3, size=(n, 1, 1, 1)), 0, 31)
    return (k + rng.random((n, 8, 8, 1))).astype("float32")


@functools.cache
def random_model(conditional: bool = False) -> tfflows.Jet:
    model = tiny(num_classes=3 if conditional else None)
    for k, layer in enumerate(model.flow_layers):
        randomize(layer, 21 + k, scale=0.5)  # keep the untrained flow tame in float32
    return model


def test_fresh_model_is_the_scaled_standard_normal(assert_close):
    model = tiny()
    x = levels(4)
    u = x / 2**NUM_BITS - 0.5
    want = (
        -0.5 * np.sum(u**2, axis=(1, 2, 3)) - 0.5 * 64 * math.log(2 * math.pi) - 64 * NUM_BITS * math.log(2.0)
    )
    assert_close("jet_fresh_log_prob", model.log_prob(x).numpy(), want, atol=1e-3, rtol=1e-5)
    assert_close(
        "jet_fresh_bits_per_dim",
        model.bits_per_dim(x).numpy(),
        -want / (64 * math.log(2.0)),
        atol=1e-5,
        rtol=1e-5,
    )
    assert model.data_kind == "image" and model.per_dim_metric == "bits_per_dim"


@pytest.mark.slow  # eight fit steps, as TarFlow's
def test_fit_lowers_the_loss_and_trains_every_weight():
    model = tiny()
    model.compile(optimizer=make_optimizer(3e-3), jit_compile=False)
    before = [np.array(w) for w in model.trainable_weights]
    history = model.fit(levels(16), batch_size=8, epochs=4, verbose=0, shuffle=False).history
    assert "bits_per_dim" in history
    assert history["loss"][-1] < history["loss"][0] - 1.0
    unchanged = [w.path for w, b in zip(model.trainable_weights, before) if np.array_equal(w, b)]
    assert unchanged == []


@pytest.mark.slow  # exports and loads a SavedModel (tfflows.export is in the fast tier in test_export.py)
def test_export_saved_model_signatures(tmp_path, assert_close):
    model = random_model()
    path = tfflows.export_saved_model(model, os.path.join(tmp_path, "1"))
    served = tf.saved_model.load(path)
    described = tfflows.export.describe_signatures(model)["signatures"]
    assert set(served.signatures) == set(described)
    images = np.random.default_rng(3).integers(0, 256, size=(3, 8, 8, 1)).astype("uint8")
    got = served.signatures["log_prob"](images=tf.constant(images))
    centres = (np.floor(images / 8.0) + 0.5).astype("float32")
    assert_close(
        "jet_export_log_prob", got["log_prob"].numpy(), model.log_prob(centres).numpy(), atol=1e-3, rtol=1e-5
    )
    out = served.signatures["sample"](
        num_samples=tf.constant(2), temperature=tf.constant(0.8), seed=tf.constant(9, tf.int64)
    )
    eps = tf.random.stateless_normal([2, 64], seed=tf.constant([9, 0], tf.int64))
    assert_close(
        "jet_export_sample",
        out["images_float"].numpy(),
        model.decode(eps * 0.8).numpy(),
        atol=1e-3,
        rtol=1e-4,
    )
    latents = served.signatures["encode"](images=tf.constant(images))["latents"]
    assert_close("jet_export_encode", latents.numpy(), model.encode(centres).numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"patch_size": 3}, r"divisible by patch_size = 3, got 8x8"),
        ({"width": 10, "heads": 4}, r"width must be divisible by heads, got width=10 and heads=4"),
        ({"num_steps": 0}, r"num_steps must be a positive integer, got 0"),
        (
            {"splits": ("channel", "diagonal")},
            r"splits must be a non-empty list of .*got \['channel', 'diagonal'\]",
        ),
        ({"patch_size": 8}, r"a spatial split needs at least 2 tokens, got 1"),
        ({"seed": 1.5}, r"seed must be an integer, got 1.5"),
    ],
    ids=["patch", "heads", "num_couplings", "splits", "one_token", "seed"],
)
def test_model_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny(**kwargs)


def test_model_rejects_bad_inputs():
    model = random_model()
    with pytest.raises(ValueError, match=r"expected x of shape \[batch, 8, 8, 1\]"):
        model.log_prob(np.zeros((2, 8, 4, 1), "float32"))
    with pytest.raises(ValueError, match=r"pixel levels in \[0, 32\) for num_bits=5"):
        model.log_prob(np.full((1, 8, 8, 1), 40.0, "float32"))
    with pytest.raises(ValueError, match=r"expected latents of shape \[batch, 64\]"):
        model.decode(np.zeros((2, 63), "float32"))
    # Integer pixels are read as 8-bit data (the SavedModel's rule); out of 0..255 they are refused.
    with pytest.raises(ValueError, match=r"8-bit pixels in 0\.\.255"):
        model.encode(np.full((1, 8, 8, 1), -1, "int32"))
    with pytest.raises(ValueError, match=r"must be float32 or float64, got bool"):
        model.encode(np.zeros((1, 8, 8, 1), "bool"))
    with pytest.raises(ValueError, match=r"this model is not conditional"):
        model.log_prob(levels(1), np.array([0]))
    with pytest.raises(ValueError, match=r"expected class labels in 0..2"):
        random_model(conditional=True).log_prob(levels(1), np.array([3]))


def test_few_couplings_warn_of_their_bits_per_dim_floor():
    """A coupling stretches by at most 2 and moves half the values: K couplings stretch by 2^(K/2)."""
    from tfflows.models.jet import bits_per_dim_floor

    with pytest.warns(UserWarning, match="cannot take 8-bit data below about 5.33 bits/dim"):
        tfflows.Jet((8, 8, 1), patch_size=4, num_steps=8, width=8, heads=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tfflows.Jet((8, 8, 1), patch_size=4, num_steps=16, width=8, heads=2)
    # The floor is reached by the log-det: every scale saturated at 2 gives K/2 doublings a value.
    model = tfflows.Jet((8, 8, 1), patch_size=4, num_steps=4, width=8, heads=2, num_bits=5)
    x = np.random.default_rng(0).integers(0, 32, (3, 8, 8, 1)).astype(np.float32) + 0.5
    model.log_prob(x)
    for v in model.trainable_variables:
        if v.path.endswith("project_out/bias"):
            v.assign(np.full(v.shape, 40.0, np.float32))
    _, log_det = model.flow(None).forward_and_log_det(tf.constant(x))
    np.testing.assert_allclose(log_det.numpy() / 64 / math.log(2), 4 / 2 - 5, atol=1e-5)
    assert np.all(model.bits_per_dim(x).numpy() >= bits_per_dim_floor(4, 5) - 1e-4)
