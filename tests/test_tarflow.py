"""TarFlow: the patch bijector, the causal transformer, one block's maths, and the model.

Block checks run in float64 on tiny token sequences (4×4×1 images with 2×2
patches: T = 4 tokens of 4; 8×8×2 with 4×4 patches: T = 4 tokens of 32)
with random weights (a fresh block is the identity, which proves nothing).
Model checks use 8×8×1 images of 5-bit levels and a one-layer transformer
of width 16.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfflows
from tfflows.bijectors import FlattenTokens, Patchify
from tfflows.layers import CausalSelfAttention, CausalTransformer, TarFlowBlockLayer, TransformerBlock
from tfflows.training import make_optimizer

from helpers import CLEAN_LOADER, run_clean

# (H, W, C, patch): the two image sizes of the issue.
BLOCK_CASES = {"4x4x1_p2": (4, 4, 1, 2), "8x8x2_p4": (8, 8, 2, 4)}
CONTEXT_SIZE = 3
F64_TOL = 1e-10


def fresh(x, dtype=None):
    """A new tensor: TFP caches bijector results per input tensor."""
    return tf.identity(tf.constant(np.asarray(x), dtype=dtype))


def randomize(layer, seed: int) -> None:
    """Every weight set to a random value of order one in the outputs."""
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        shape = tuple(w.shape)
        if len(shape) == 2 and w.name == "kernel":
            value = rng.normal(scale=1.0 / np.sqrt(shape[0]), size=shape)
        elif w.name == "gamma":
            value = rng.uniform(0.5, 1.5, size=shape)
        else:
            value = rng.normal(scale=0.2, size=shape)
        w.assign(value.astype(w.dtype))


@functools.cache
def block(case: str, reverse: bool, conditional: bool = False) -> TarFlowBlockLayer:
    h, w, c, p = BLOCK_CASES[case]
    layer = TarFlowBlockLayer(
        num_layers=2, width=8, heads=2, mlp_ratio=2, reverse=reverse, dtype="float64", name="block"
    )
    tokens = Patchify((h, w, c), p).token_shape
    x = tf.zeros((1, *tokens), tf.float64)
    if conditional:
        layer(x, tf.zeros((1, CONTEXT_SIZE), tf.float64))
    else:
        layer(x)
    randomize(layer, seed=7 + reverse + 2 * conditional)
    return layer


def tokens_of(case: str, batch: int = 2, seed: int = 0) -> np.ndarray:
    layer = block(case, False)
    return np.random.default_rng(seed).normal(size=(batch, *layer.token_shape))


def one_hot(labels, k=CONTEXT_SIZE):
    return tf.one_hot(labels, k, dtype=tf.float64)


block_cases = pytest.mark.parametrize("case", list(BLOCK_CASES), ids=list(BLOCK_CASES))
orders = pytest.mark.parametrize("reverse", [False, True], ids=["forward_order", "reversed"])


# --- Patchify -------------------------------------------------------------------------------------


@block_cases
def test_patchify_layout_round_trip_and_zero_log_det(case):
    h, w, c, p = BLOCK_CASES[case]
    bij = Patchify((h, w, c), p)
    x = np.random.default_rng(1).normal(size=(2, 3, h, w, c))
    t, log_det = bij.forward_and_log_det(fresh(x))
    assert t.shape == (2, 3, (h // p) * (w // p), p * p * c)
    # Token i·(W/p) + j is patch (i, j), entries in (row, column, channel) order.
    for i in range(h // p):
        for j in range(w // p):
            want = x[:, :, i * p : (i + 1) * p, j * p : (j + 1) * p, :].reshape(2, 3, -1)
            np.testing.assert_array_equal(t[:, :, i * (w // p) + j].numpy(), want)
    np.testing.assert_array_equal(log_det.numpy(), np.zeros((2, 3)))
    back, inv_log_det = bij.inverse_and_log_det(fresh(t.numpy()))
    np.testing.assert_array_equal(back.numpy(), x)
    np.testing.assert_array_equal(inv_log_det.numpy(), np.zeros((2, 3)))
    assert bij.forward_event_shape((h, w, c)) == t.shape[2:]
    assert bij.inverse_event_shape(t.shape[2:]) == (h, w, c)
    flat = FlattenTokens(bij.token_shape)
    np.testing.assert_array_equal(flat.inverse(fresh(flat.forward(t).numpy())).numpy(), t.numpy())


def test_patchify_rejects_bad_patch_and_shapes():
    with pytest.raises(ValueError, match=r"divisible by patch_size = 3, got 8x8"):
        Patchify((8, 8, 1), 3)
    with pytest.raises(ValueError, match=r"patch_size must be a positive integer, got 0"):
        Patchify((8, 8, 1), 0)
    with pytest.raises(ValueError, match=r"expected images of shape \[\.\.\., 8, 8, 1\], got shape"):
        Patchify((8, 8, 1), 2).forward(tf.zeros((2, 8, 8, 3)))
    with pytest.raises(ValueError, match=r"expected tokens of shape \[\.\.\., 16, 4\], got shape"):
        Patchify((8, 8, 1), 2).inverse(tf.zeros((2, 16, 5)))


# --- the transformer --------------------------------------------------------------------------------


def test_cached_steps_equal_the_full_causal_pass():
    keras.utils.set_random_seed(3)
    net = CausalTransformer(2, 8, 2, mlp_ratio=2, dtype="float64")
    net.build((None, None, 8))
    randomize(net, 3)
    x = tf.constant(np.random.default_rng(2).normal(size=(3, 5, 8)))
    full = net(x).numpy()
    cache = net.initial_cache(tf.constant(3), 5, tf.float64)
    for t in range(5):
        out, cache = net.step(x[:, t], tf.constant(t), cache)
        np.testing.assert_allclose(out.numpy(), full[:, t], atol=F64_TOL, rtol=F64_TOL)
    # Causal: changing the last position leaves every earlier output as it was.
    bump = np.random.default_rng(9).normal(size=(3, 1, 8))  # not constant: LayerNorm removes that
    changed = net(tf.concat([x[:, :4], x[:, 4:] + bump], 1)).numpy()
    np.testing.assert_array_equal(changed[:, :4], full[:, :4])
    assert np.abs(changed[:, 4] - full[:, 4]).max() > 1e-3


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (CausalSelfAttention, {"width": 8, "heads": 2}),
        (TransformerBlock, {"width": 8, "heads": 4, "mlp_ratio": 2}),
        (CausalTransformer, {"num_layers": 2, "width": 8, "heads": 2, "mlp_ratio": 3}),
        (TarFlowBlockLayer, {"num_layers": 1, "width": 8, "heads": 2, "mlp_ratio": 2, "reverse": True}),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_layer_config_round_trips(cls, kwargs):
    layer = cls(**kwargs, name="x")
    config = layer.get_config()
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(again) is cls and again.get_config() == config
    for key, value in kwargs.items():
        assert config[key] == value


@pytest.mark.parametrize("cls", [CausalSelfAttention, TransformerBlock, TarFlowBlockLayer])
def test_heads_must_divide_width(cls):
    with pytest.raises(ValueError, match=r"width must be divisible by heads, got width=10 and heads=4"):
        cls(width=10, heads=4)
    with pytest.raises(ValueError, match=r"heads must be a positive integer, got 0"):
        cls(width=8, heads=0)


# --- one block: log-det, causality, inverses ---------------------------------------------------------


def _jacobian(fn, x):
    """Per-example Jacobian [B, T·D, T·D] of tokens → tokens, and fn's log-det."""
    b, t, d = x.shape
    flat = tf.constant(x.reshape(b, t * d))
    with tf.GradientTape() as tape:
        tape.watch(flat)
        z, log_det = fn(tf.reshape(flat, (b, t, d)))
        z = tf.reshape(z, (b, t * d))
    return tape.batch_jacobian(z, flat).numpy(), log_det.numpy()


@functools.cache
def block_jacobian(case: str, reverse: bool) -> tuple[np.ndarray, np.ndarray]:
    """The float64 block's Jacobian and log-det on ``tokens_of(case)``, read-only.

    Computed once for the two tests that read it (each batch Jacobian traces a gradient loop).
    """
    jac, log_det = _jacobian(block(case, reverse).bijector().forward_and_log_det, tokens_of(case))
    jac.setflags(write=False)
    log_det.setflags(write=False)
    return jac, log_det


@block_cases
@orders
def test_block_log_det_matches_the_float64_jacobian(case, reverse, assert_close):
    jac, log_det = block_jacobian(case, reverse)
    want = np.linalg.slogdet(jac)[1]
    assert_close("tarflow_jacobian", log_det, want, atol=F64_TOL, rtol=F64_TOL)
    assert np.abs(want).max() > 0.1  # random weights: not volume preserving


@block_cases
@orders
def test_block_jacobian_is_block_triangular_in_processing_order(case, reverse):
    layer = block(case, reverse)
    t, d = layer.token_shape
    jac, _ = block_jacobian(case, reverse)
    blocks = jac.reshape(-1, t, d, t, d)  # [B, out token, out entry, in token, in entry]
    order = list(range(t))[::-1] if reverse else list(range(t))
    later_read = earlier_read = 0
    for a, out_token in enumerate(order):
        for b, in_token in enumerate(order):
            part = blocks[:, out_token, :, in_token, :]
            if b > a:  # a token never reads one after it in processing order: exact zeros
                np.testing.assert_array_equal(part, 0.0, err_msg=f"z_{out_token} reads x_{in_token}")
                later_read += 1
            elif b == a:  # z_t = (x_t − μ_t)·exp(−α_t): diagonal
                off = part * (1.0 - np.eye(d))
                np.testing.assert_array_equal(off, 0.0)
                assert np.all(np.abs(np.diagonal(part, axis1=1, axis2=2)) > 0)
            else:
                earlier_read += int(np.abs(part).max() > 1e-6)
    assert later_read == t * (t - 1) // 2
    assert earlier_read == t * (t - 1) // 2  # every earlier token is read


@block_cases
@orders
@pytest.mark.parametrize("cached", [True, False], ids=["cached", "uncached"])
def test_block_round_trips_both_ways(case, reverse, cached, assert_close):
    layer = block(case, reverse)
    x = tokens_of(case, seed=4)
    z, log_det = layer.bijector().forward_and_log_det(fresh(x))
    back, inv_log_det = layer.bijector(cached=cached).inverse_and_log_det(fresh(z.numpy()))
    assert_close("tarflow_x_z_x", back.numpy(), x, atol=F64_TOL, rtol=F64_TOL)
    assert_close("tarflow_inverse_log_det", inv_log_det.numpy(), -log_det.numpy(), atol=F64_TOL, rtol=F64_TOL)
    z0 = tokens_of(case, seed=5)
    x0, _ = layer.bijector(cached=cached).inverse_and_log_det(fresh(z0))
    z1 = layer.bijector().forward(fresh(x0.numpy()))
    assert_close("tarflow_z_x_z", z1.numpy(), z0, atol=F64_TOL, rtol=F64_TOL)


@pytest.mark.slow
@block_cases
def test_cached_and_uncached_inverse_agree_in_float32(case, assert_close):
    h, w, c, p = BLOCK_CASES[case]
    keras.utils.set_random_seed(11)
    layer = TarFlowBlockLayer(num_layers=2, width=16, heads=4, mlp_ratio=2, name="b32")
    layer(tf.zeros((1, *Patchify((h, w, c), p).token_shape)))
    randomize(layer, 11)
    z = tf.constant(tokens_of(case, batch=5, seed=6), tf.float32)
    cached, ld_cached = layer.bijector(cached=True).inverse_and_log_det(tf.identity(z))
    uncached, ld_uncached = layer.bijector(cached=False).inverse_and_log_det(tf.identity(z))
    scale = float(np.abs(uncached.numpy()).max())
    assert_close("tarflow_cached_vs_uncached", cached.numpy(), uncached.numpy(), atol=1e-5 * scale, rtol=1e-5)
    assert_close("tarflow_cached_vs_uncached", ld_cached.numpy(), ld_uncached.numpy(), atol=1e-4, rtol=1e-5)
    compiled = tf.function(lambda z: layer.bijector().inverse(z), jit_compile=True)
    assert_close(
        "tarflow_xla_inverse", compiled(tf.identity(z)).numpy(), cached.numpy(), atol=1e-5 * scale, rtol=1e-5
    )


@block_cases
def test_guidance_combines_the_shift_and_log_scale(case, assert_close):
    """Read (μ, α) of the last token in processing order from z, affine in that token."""
    layer = block(case, False, conditional=True)
    _t, _d = layer.token_shape
    x = tokens_of(case, batch=3, seed=8)
    labels = one_hot([0, 1, 2])
    w = 1.5

    def last_params(context, guidance=0.0):
        bij = layer.bijector(context, guidance=guidance)
        z0 = bij.forward(fresh(x))[:, -1].numpy()
        x1 = x.copy()
        x1[:, -1] += 1.0
        z1 = bij.forward(fresh(x1))[:, -1].numpy()
        slope = z1 - z0  # exp(−α)
        return x[:, -1] - z0 / slope, -np.log(slope)  # μ, α

    mu_c, alpha_c = last_params(labels)
    mu_u, alpha_u = last_params(tf.zeros_like(labels))
    mu_g, alpha_g = last_params(labels, guidance=w)
    assert np.abs(mu_c - mu_u).max() > 1e-3  # the class matters
    assert_close("tarflow_guidance", mu_g, (1 + w) * mu_c - w * mu_u, atol=1e-8, rtol=1e-8)
    assert_close("tarflow_guidance", alpha_g, (1 + w) * alpha_c - w * alpha_u, atol=1e-8, rtol=1e-8)
    for cached in (True, False):  # the guided map is still a bijection
        bij = layer.bijector(labels, guidance=w, cached=cached)
        z, log_det = bij.forward_and_log_det(fresh(x))
        back, inv_log_det = bij.inverse_and_log_det(fresh(z.numpy()))
        assert_close("tarflow_guided_round_trip", back.numpy(), x, atol=F64_TOL, rtol=F64_TOL)
        assert_close(
            "tarflow_guided_round_trip", inv_log_det.numpy(), -log_det.numpy(), atol=F64_TOL, rtol=F64_TOL
        )


def test_block_rejects_bad_context_and_guidance():
    layer = block("4x4x1_p2", False)
    with pytest.raises(ValueError, match=r"got a context but the layer was built without one"):
        layer.bijector(one_hot([0]))
    with pytest.raises(ValueError, match=r"guidance needs a context"):
        layer.bijector(guidance=1.0)
    with pytest.raises(ValueError, match=r"built for a context; pass one"):
        block("4x4x1_p2", False, conditional=True).bijector()
    with pytest.raises(ValueError, match=r"expected tokens of shape \[\.\.\., 4, 4\], got shape"):
        layer.bijector().forward(tf.zeros((2, 4, 5), tf.float64))


# --- the model ----------------------------------------------------------------------------------------

NUM_BITS = 5


def tiny(**kwargs) -> tfflows.TarFlow:
    keras.utils.set_random_seed(0)
    args = dict(patch_size=4, num_steps=2, depth=1, width=16, heads=2, mlp_ratio=2, num_bits=NUM_BITS)
    return tfflows.TarFlow((8, 8, 1), **{**args, **kwargs})


def levels(n: int = 16, seed: int = 0) -> np.ndarray:
    """Dequantized 5-bit levels of a simple structured image set (not noise)."""
    rng = np.random.default_rng(seed)
    ramp = np.add.outer(np.arange(8), np.arange(8))[None, :, :, None] * 2.0
    k = np.clip(ramp + rng.integers(-2, 3, size=(n, 1, 1, 1)), 0, 31)
    return (k + rng.random((n, 8, 8, 1))).astype("float32")


@functools.cache
def random_model(
    conditional: bool = False, noise: str = "uniform", noise_std: float = 0.05
) -> tfflows.TarFlow:
    model = tiny(num_classes=3 if conditional else None, noise=noise, noise_std=noise_std)
    for layer in model.flow_layers:
        randomize(layer, 21)
        for w in layer.weights:  # keep the untrained flow tame in float32
            w.assign(w * 0.5)
    return model


def test_fresh_model_is_the_scaled_standard_normal(assert_close):
    model = tiny()
    x = levels(4)
    u = x / 2**NUM_BITS - 0.5
    want = (
        -0.5 * np.sum(u**2, axis=(1, 2, 3)) - 0.5 * 64 * math.log(2 * math.pi) - 64 * NUM_BITS * math.log(2.0)
    )
    assert_close("tarflow_fresh_log_prob", model.log_prob(x).numpy(), want, atol=1e-3, rtol=1e-5)
    assert_close(
        "tarflow_fresh_log_prob",
        model.bits_per_dim(x).numpy(),
        -want / (64 * math.log(2.0)),
        atol=1e-5,
        rtol=1e-5,
    )
    assert model.latent_shapes == [(4, 16)]
    assert [layer.reverse for layer in model.flow_layers] == [False, True]


def test_model_options_beyond_the_contract(tmp_path, assert_close):
    """What the model contract (tests/test_model_contract.py) does not cover: the cached and the
    uncached inverse agree, latents split into tokens, and guided samples survive a save."""
    model = random_model(conditional=True)
    labels = np.array([0, 1, 2])
    a = model.sample(3, seed=5, context=labels).numpy()
    b = model.sample(3, seed=5, context=labels, cached=False).numpy()
    assert_close("tarflow_model_cached_vs_uncached", a, b, atol=1e-3, rtol=1e-4)
    assert model.split_latents(model.encode(levels(4), np.array([0, 1, 2, 1])))[0].shape == (4, 4, 16)
    model.save(tmp_path / "tarflow.keras")
    loaded = keras.models.load_model(tmp_path / "tarflow.keras")
    np.testing.assert_array_equal(
        loaded.sample(2, seed=3, context=1, guidance=1.0).numpy(),
        model.sample(2, seed=3, context=1, guidance=1.0).numpy(),
    )


def test_results_follow_the_current_weights():
    """TFP caches x ↔ z per tensor: decode(encode(x)) must not return x after a weight changed."""
    model = tiny()
    x = levels(2)
    z = model.encode(x)
    layer = model.flow_layers[0]
    old = [np.array(w) for w in layer.weights]
    try:
        randomize(layer, 5)
        assert np.abs(model.decode(z).numpy() - x).max() > 1e-2
    finally:
        for w, value in zip(layer.weights, old):
            w.assign(value)
    np.testing.assert_allclose(model.decode(z).numpy(), x, atol=1e-4)


@pytest.mark.slow
def test_fit_lowers_the_loss_and_trains_every_weight():
    model = tiny()
    model.compile(optimizer=make_optimizer(3e-3), jit_compile=False)
    before = [np.array(w) for w in model.trainable_weights]
    x = levels(16)
    history = model.fit(x, batch_size=8, epochs=4, verbose=0, shuffle=False).history
    assert "bits_per_dim" in history
    assert history["loss"][-1] < history["loss"][0] - 1.0
    unchanged = [w.path for w, b in zip(model.trainable_weights, before) if np.array_equal(w, b)]
    assert unchanged == []


@pytest.mark.slow  # exports and loads a SavedModel (tfflows.export is in the fast tier in test_export.py)
def test_export_saved_model_signatures(tmp_path, assert_close):
    model = random_model()
    path = tfflows.export_saved_model(model, os.path.join(tmp_path, "1"))
    served = tf.saved_model.load(path)
    images = np.random.default_rng(3).integers(0, 256, size=(3, 8, 8, 1)).astype("uint8")
    got = served.signatures["log_prob"](images=tf.constant(images))
    centres = (np.floor(images / 8.0) + 0.5).astype("float32")
    assert_close(
        "tarflow_export_log_prob",
        got["log_prob"].numpy(),
        model.log_prob(centres).numpy(),
        atol=1e-3,
        rtol=1e-5,
    )
    out = served.signatures["sample"](
        num_samples=tf.constant(2), temperature=tf.constant(0.8), seed=tf.constant(9, tf.int64)
    )
    eps = tf.random.stateless_normal([2, 64], seed=tf.constant([9, 0], tf.int64))
    assert_close(
        "tarflow_export_sample",
        out["images_float"].numpy(),
        model.decode(eps * 0.8).numpy(),
        atol=1e-3,
        rtol=1e-4,
    )
    assert out["finite"].numpy().all()
    latents = served.signatures["encode"](images=tf.constant(images))["latents"]
    assert_close(
        "tarflow_export_encode", latents.numpy(), model.encode(centres).numpy(), atol=1e-4, rtol=1e-4
    )
    # Unconditional, uniform noise: no guidance, no denoise; the sample signature is Glow's.
    assert set(served.signatures["sample"].structured_input_signature[1]) == {
        "num_samples",
        "temperature",
        "seed",
    }


def saved_while_loops(path: str) -> list[str]:
    """Names of the while loops in every function of a SavedModel."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    return [
        node.name
        for function in saved.meta_graphs[0].graph_def.library.function
        for node in function.node_def
        if node.op in ("While", "StatelessWhile")
    ]


@pytest.mark.slow
def test_export_sample_signature_takes_guidance_and_denoise(tmp_path, assert_close):
    """A conditional TarFlow trained with Gaussian noise, served without tfflows: the sample
    signature's guidance and denoise give model.sample's results for the same seed and options."""
    model = random_model(conditional=True, noise="gaussian", noise_std=0.2)
    path = tfflows.export_saved_model(model, os.path.join(tmp_path, "serving", "tarflow", "1"))
    with open(os.path.join(path, "assets.extra", "model_card.json")) as f:
        inputs = json.load(f)["signatures"]["sample"]["inputs"]
    assert set(inputs) == {"num_samples", "temperature", "seed", "labels", "guidance", "denoise"}
    assert inputs["guidance"]["dtype"] == "float32" and inputs["guidance"]["default"] == 0.0
    assert inputs["denoise"]["dtype"] == "bool" and inputs["denoise"]["default"] is False
    assert "3.2 pixel levels" in inputs["denoise"]["description"]  # σ = 0.2 · 2⁵ / 2
    # The cached sampler is compiled into the SavedModel; the uncached reference is not.
    loops = saved_while_loops(path)
    assert any(name.endswith("cached_inverse") for name in loops)
    assert not any("uncached_inverse" in name for name in loops)

    options = {
        "plain": (0.0, False),
        "guided": (2.0, False),
        "denoised": (0.0, True),
        "both": (2.0, True),
        "bad_guidance": (float("nan"), False),
    }
    arrays = {
        "n": np.array(3, "int32"),
        "t": np.array(0.8, "float32"),
        "seed": np.array(4, "int64"),
        "label": np.array([1], "int32"),
    }
    requests = {}
    for rid, (w, d) in options.items():
        arrays["w_" + rid], arrays["d_" + rid] = np.array(w, "float32"), np.array(d)
        requests[rid] = [
            "sample",
            {
                "num_samples": "n",
                "temperature": "t",
                "seed": "seed",
                "labels": "label",
                "guidance": "w_" + rid,
                "denoise": "d_" + rid,
            },
        ]
    arrays["zero"] = np.array(0, "int32")
    requests["empty"] = ["sample", {**requests["both"][1], "num_samples": "zero"}]
    root = tmp_path
    np.savez(root / "arrays.npz", **arrays)
    (root / "loader.py").write_text(CLEAN_LOADER)
    (root / "plan.json").write_text(
        json.dumps({"tarflow": {"path": path, "arrays": str(root / "arrays.npz"), "requests": requests}})
    )
    loader = run_clean([sys.executable, str(root / "loader.py"), str(root)], cwd=str(root))
    want = {
        rid: model.sample(3, temperature=0.8, seed=4, context=1, guidance=w, denoise=d).numpy()
        for rid, (w, d) in options.items()
        if rid != "bad_guidance"
    }
    _, err = loader.communicate(timeout=600)
    assert loader.returncode == 0, err[-4000:]
    report = json.loads((root / "report.json").read_text())
    assert report["attempts"] == [] and report["loaded_modules"] == []
    kind, message = report["errors"]["tarflow/bad_guidance"]
    assert kind == "InvalidArgumentError" and "sample: guidance must be finite" in message
    with np.load(root / "outputs.npz") as f:
        got = {rid: f[f"tarflow/{rid}/images_float"] for rid in want}
        assert f["tarflow/empty/images"].shape == (0, 8, 8, 1)
    for rid in want:
        assert_close("tarflow_export_sample_options", got[rid], want[rid], atol=1e-3, rtol=1e-4)
    # Each option changes the samples, far beyond that tolerance.
    assert np.abs(got["guided"] - got["plain"]).max() > 1.0
    assert np.abs(got["denoised"] - got["plain"]).max() > 0.5
    assert np.abs(got["both"] - got["guided"]).max() > 0.5


def test_class_conditional_guidance_sampling():
    model = random_model(conditional=True)
    labels = np.array([0, 1, 2, 0])
    plain = model.sample(4, seed=2, context=labels).numpy()
    np.testing.assert_array_equal(model.sample(4, seed=2, context=labels, guidance=0.0).numpy(), plain)
    guided = model.sample(4, seed=2, context=labels, guidance=2.0).numpy()
    assert guided.shape == (4, 8, 8, 1) and np.all(np.isfinite(guided))
    assert np.abs(guided - plain).max() > 1e-2
    # Each label's sample depends on its label.
    same_z = model.sample(4, seed=2, context=np.array([1, 1, 1, 1])).numpy()
    assert np.abs(same_z[0] - plain[0]).max() > 1e-2
    np.testing.assert_allclose(same_z[1], plain[1], rtol=1e-6, atol=1e-6)


def test_label_dropout_uses_the_null_class():
    model = tiny(num_classes=3, label_dropout=0.5)
    labels = tf.constant(np.arange(2000) % 3, tf.int32)
    _, context = model.augment(tf.zeros((2000, 8, 8, 1)), labels, tf.constant([3, 4], tf.int64))
    rows = context.numpy()
    dropped = np.all(rows == 0, axis=1)
    kept = rows[~dropped]
    np.testing.assert_array_equal(np.argmax(kept, 1), labels.numpy()[~dropped])
    assert abs(dropped.mean() - 0.5) < 5 * math.sqrt(0.25 / 2000)


@pytest.mark.slow
def test_gaussian_noise_training_and_denoise(assert_close):
    model = tiny(noise="gaussian", noise_std=0.1)
    sigma = 0.1 * 2**NUM_BITS / 2
    assert model.level_noise_std == pytest.approx(sigma)
    x = levels(4)
    # Fresh model: log p = −½|x/2ⁿ − ½|² + const, so the score is −(x/2ⁿ − ½)/2ⁿ.
    want = x - sigma**2 * (x / 2**NUM_BITS - 0.5) / 2**NUM_BITS
    assert np.abs(want - x).max() > 0.02  # the step moves the pixels
    assert_close("tarflow_denoise", model.denoise(x).numpy(), want, atol=1e-4, rtol=1e-5)
    noisy, _ = model.augment(tf.constant(x), None, tf.constant([3, 4], tf.int64))
    spread = float(np.std(noisy.numpy() - x))
    assert 0.8 * sigma < spread < 1.2 * sigma
    model.compile(optimizer=make_optimizer(3e-3), jit_compile=False)
    history = model.fit(levels(16), batch_size=8, epochs=1, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    raw = model.sample(2, seed=4).numpy()
    np.testing.assert_allclose(
        model.sample(2, seed=4, denoise=True).numpy(), model.denoise(raw).numpy(), rtol=1e-5, atol=1e-4
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"patch_size": 3}, r"divisible by patch_size = 3, got 8x8"),
        ({"width": 10, "heads": 4}, r"width must be divisible by heads, got width=10 and heads=4"),
        ({"noise": "laplace"}, r"noise must be one of \('uniform', 'gaussian'\), got 'laplace'"),
        ({"noise_std": 0.0}, r"noise_std must be a finite number > 0, got 0.0"),
        ({"label_dropout": 1.0}, r"label_dropout must be in \[0, 1\), got 1.0"),
        ({"num_steps": 0}, r"num_steps must be a positive integer, got 0"),
    ],
    ids=["patch", "heads", "noise", "noise_std", "label_dropout", "num_steps"],
)
def test_model_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny(**kwargs)


def test_model_rejects_bad_sampling_options():
    model = random_model()
    with pytest.raises(ValueError, match=r"guidance is for class-conditional models"):
        model.sample(1, guidance=1.0)
    with pytest.raises(ValueError, match=r"denoise is for models trained with noise='gaussian'"):
        model.sample(1, denoise=True)
    with pytest.raises(ValueError, match=r"guidance must be a finite number, got nan"):
        random_model(conditional=True).sample(1, context=0, guidance=float("nan"))
    with pytest.raises(ValueError, match=r"expected x of shape \[batch, 8, 8, 1\]"):
        model.log_prob(np.zeros((2, 8, 4, 1), "float32"))


def test_cli_sample_passes_guidance_and_denoise(tmp_path):
    """``tfflows sample --guidance W --denoise`` draws what ``sample(guidance=W, denoise=True)`` draws."""
    from PIL import Image

    from tfflows import cli
    from tfflows.callbacks import samples_picture

    model = random_model(conditional=True, noise="gaussian", noise_std=0.2)
    path = os.path.join(tmp_path, "tarflow.keras")
    model.save(path)

    def draw(name, *flags):
        out = os.path.join(tmp_path, name)
        assert cli.main(["sample", path, "--out", out, "--temperatures", "0.5", *flags]) == 0
        return np.asarray(Image.open(out))

    plain, guided = draw("plain.png"), draw("guided.png", "--guidance", "2", "--denoise")
    options = {"guidance": 2.0, "denoise": True}
    want = samples_picture(model, [0.5], seed=0, num_bits=NUM_BITS, sample_options=options)
    np.testing.assert_array_equal(guided, want.reshape(guided.shape))
    assert np.mean(guided != plain) > 0.05
