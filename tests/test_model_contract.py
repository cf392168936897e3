"""The model contract: every registered model, from one list, through the same properties.

The list is :func:`tfflows.models.registry.entries` — each model's tiny
configuration, unconditional and with each conditioning it takes — plus a toy
model registered below, which gets every test here, the CLI and export without
touching any other file (the proof that adding a model is one file and one
registration). Each variant is built once per session (``variant``): ActNorm
initialised from data, then N(0, 0.05²) added to every trainable weight, since
a fresh flow's zero-initialised couplings are identities and prove nothing.

Properties, in float64 where numbers are compared:
change of variables against the autodiff Jacobian, encode/decode round trip,
sampling, a few ``fit`` steps that move every weight, the ``.keras`` round
trip, the live TFP ``TransformedDistribution``, ``summary``, and one bad input
of each kind (shape, level, context). Exporting a SavedModel and loading it in
a process without tfflows is in the slow tier.
"""

from __future__ import annotations

import functools
import json
import math
import pathlib
import subprocess
import sys
import textwrap
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfflows
from tfflows.layers import CouplingLayer
from tfflows.models import registry
from tfflows.models.registry import BuildOptions, ModelEntry

from helpers import CONDITIONED, cli, registered_models

tfd = tfp.distributions
BATCH = 3


# -- a toy model, registered here and nowhere else ---------------------------------------------


@keras.saving.register_keras_serializable(package="tfflows_tests")
class ToyCoupling(tfflows.FlowModel):
    """Two half-mask affine couplings on vectors: the smallest flow a contributor might add."""

    def __init__(self, event_shape: Any = 2, width: int = 8, **kwargs: Any) -> None:
        event_shape = (event_shape,) if isinstance(event_shape, int) else tuple(event_shape)
        super().__init__(event_shape, **kwargs)
        self.width = width
        self._finish_init()

    def _make_steps(self) -> list:
        return [
            CouplingLayer(
                "half",
                parity,
                scale_fn="tanh",
                conditioner="mlp",
                hidden_units=self.width,
                num_hidden=1,
                name=f"coupling_{parity}",
            )
            for parity in (0, 1)
        ]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "width": self.width}


TOY = registry.register_model(
    ModelEntry(
        name="toy-coupling",
        data_kind="vector",
        model_class=ToyCoupling,
        summary="a test's toy: two affine couplings",
        build=lambda o: ToyCoupling(o.event_shape, width=o.width, num_classes=o.num_classes, **o.policy),
        tiny=lambda **kw: ToyCoupling(3, width=8, **kw),
    ),
    overwrite=True,
)


# -- the variants ---------------------------------------------------------------------------------


def _variants() -> dict[str, tuple[ModelEntry, dict[str, int]]]:
    # Every model registered by now, the toy above included (library_only=False); the codec's
    # integer flow is a model of another contract, with its own tests.
    models = registered_models(conditioning=(None, *CONDITIONED), library_only=False)
    return {name: (m.entry, dict(m.conditioning)) for name, m in models.items()}


VARIANTS = _variants()
NAMES = sorted(VARIANTS)
# The costly properties (autodiff Jacobians, fit, the .keras round trip) run in the fast tier for
# each model unconditionally and for its conditional variants in the full suite (marked slow).
TIERED_NAMES = [pytest.param(n, marks=pytest.mark.slow) if VARIANTS[n][1] else n for n in NAMES]


def data_for(model: Any, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    spec = model.spec
    if spec.models_pixel_levels:
        levels = rng.integers(0, 2**spec.num_bits, (n, *spec.event_shape))
        return (levels + rng.uniform(0.05, 0.95, levels.shape)).astype(spec.dtype)
    return rng.standard_normal((n, *spec.event_shape)).astype(spec.dtype)


def context_for(model: Any, n: int, seed: int) -> Any:
    spec = model.spec
    if spec.num_classes is not None:
        return (np.arange(n) + seed) % spec.num_classes
    if spec.context_dim is not None:
        return np.random.default_rng(seed + 1).standard_normal((n, spec.context_dim)).astype(spec.dtype)
    return None


@functools.cache
def variant(name: str, dtype: str = "float32") -> tuple[Any, np.ndarray, Any]:
    """(model, a batch, its context): built, initialised and moved off the identity once."""
    entry, conditioning = VARIANTS[name]
    keras.utils.set_random_seed(0)
    model = entry.tiny(dtype=dtype, **conditioning)
    x, context = data_for(model, 16, 7), context_for(model, 16, 7)
    model.initialize(x if context is None else (x, context))
    rng = np.random.default_rng(1)
    for v in model.trainable_variables:
        v.assign((v.numpy() + 0.05 * rng.standard_normal(v.shape)).astype(v.dtype))
    return model, data_for(model, BATCH, 0), context_for(model, BATCH, 0)


def test_every_registered_model_is_in_the_list():
    names = {(e.name, e.data_kind) for e in registry.entries()}
    assert set(registry.BUILTIN) <= names and ("toy-coupling", "vector") in names
    assert {n.split("-")[0] for n in NAMES} >= {"glow", "realnvp", "tarflow", "jet", "nsf", "maf"}


@pytest.mark.parametrize("name", TIERED_NAMES)
def test_change_of_variables_is_the_autodiff_jacobian(name, assert_close):
    """log p(x) − log N(f(x)) = log|det ∂f/∂x|, the Jacobian by autodiff, in float64."""
    model, x, context = variant(name, "float64")
    x = tf.constant(x[:2])
    context = None if context is None else context[:2]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        z = model.encode(x, context)
        rows = [z[:, i] for i in range(model.num_dims)] if model.num_dims < 8 else None
    if rows is None:
        jac = tape.batch_jacobian(z, x).numpy().reshape(2, model.num_dims, model.num_dims)
    else:  # a few backward passes beat pfor's (a spline's while-loop fallback is slow to build)
        jac = np.stack([tape.gradient(r, x).numpy() for r in rows], axis=1)
    del tape
    sign, log_abs_det = np.linalg.slogdet(jac)
    assert np.all(sign != 0)
    base = -0.5 * np.sum(z.numpy() ** 2, -1) - 0.5 * model.num_dims * math.log(2 * math.pi)
    assert_close(
        "contract: log-det vs jacobian",
        model.log_prob(x, context).numpy() - base,
        log_abs_det,
        atol=1e-8,
        rtol=1e-10,
    )


@pytest.mark.parametrize("name", NAMES)
def test_decode_inverts_encode(name, assert_close):
    model, x, context = variant(name, "float64")
    z = model.encode(tf.constant(x), context)
    assert z.shape == (BATCH, model.num_dims)
    assert_close(
        "contract: round trip", model.decode(tf.identity(z), context).numpy(), x, atol=1e-8, rtol=1e-8
    )
    z0 = 0.5 * np.random.default_rng(1).standard_normal((BATCH, model.num_dims))
    assert_close(
        "contract: z -> x -> z",
        model.encode(model.decode(z0, context), context).numpy(),
        z0,
        atol=1e-8,
        rtol=1e-8,
    )


@pytest.mark.parametrize("name", NAMES)
def test_samples_have_the_event_shape_and_are_seeded(name):
    model, _, context = variant(name)
    one = None if context is None else context[:1][0]
    a = model.sample(4, temperature=0.5, seed=3, context=one)
    b = model.sample(4, temperature=0.5, seed=3, context=one)
    assert a.shape == (4, *model.event_shape)
    assert np.all(np.isfinite(a.numpy())) and np.array_equal(a.numpy(), b.numpy())
    assert np.abs(a.numpy() - model.sample(4, temperature=0.5, seed=4, context=one).numpy()).max() > 1e-3
    cold = model.sample(2, temperature=0.0, seed=3, context=one).numpy()
    zeros_context = None if one is None else np.stack([one, one])
    np.testing.assert_allclose(
        cold,
        model.decode(np.zeros((2, model.num_dims), "float32"), zeros_context).numpy(),
        rtol=1e-6,
        atol=1e-6,
    )
    assert model.sample(0, context=one).shape == (0, *model.event_shape)


@pytest.mark.parametrize("name", NAMES)
def test_the_distribution_is_a_live_transformed_distribution(name, assert_close):
    model, x, context = variant(name)
    dist = model.distribution_for(context)
    assert isinstance(dist, tfd.TransformedDistribution)
    assert dist.bijector.model is model and dist.distribution.event_shape == (model.num_dims,)
    want_batch = () if context is None else (BATCH,)
    assert tuple(dist.batch_shape) == want_batch and tuple(dist.event_shape) == model.event_shape
    assert_close(
        "contract: distribution log_prob",
        dist.log_prob(x).numpy(),
        model.log_prob(x, context).numpy(),
        atol=1e-4,
        rtol=1e-5,
    )
    sample, log_prob = dist.experimental_sample_and_log_prob(2, seed=1)
    assert sample.shape == (2, *want_batch, *model.event_shape)
    assert_close(
        "contract: sample_and_log_prob", log_prob.numpy(), dist.log_prob(sample).numpy(), atol=2e-3, rtol=1e-4
    )
    with pytest.raises(NotImplementedError, match="monte_carlo_entropy"):
        dist.entropy()


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_refused_by_the_contract(name):
    model, x, context = variant(name)
    owner = type(model).__name__
    with pytest.raises(ValueError, match=rf"{owner}: expected x of shape \[batch, "):
        model.log_prob(x[0], context)
    if model.spec.models_pixel_levels:
        with pytest.raises(ValueError, match=rf"{owner}: expected x as pixel levels in \[0, "):
            model.log_prob(x + 2.0**model.spec.num_bits, context)
    else:
        with pytest.raises(ValueError, match=rf"{owner}: expected finite x, got 1 inf or NaN"):
            model.log_prob(np.where(np.arange(x.size).reshape(x.shape) == 0, np.nan, x), context)
    if model.spec.num_classes is not None:
        with pytest.raises(
            ValueError,
            match=rf"{owner}: expected class labels in 0\.\.2, got labels "
            r"from 0 to 1099511627776",
        ):
            model.log_prob(x, np.array([0, 1, 2**40]))
    elif model.spec.context_dim is not None:
        with pytest.raises(ValueError, match=rf"{owner}: expected a finite context"):
            model.log_prob(x, np.full_like(context, np.nan))
    else:
        with pytest.raises(ValueError, match=rf"{owner}: this model is not conditional"):
            model.log_prob(x, np.zeros(BATCH, np.int32))


@pytest.mark.parametrize("name", TIERED_NAMES)
def test_keras_file_round_trip_keeps_log_prob(name, tmp_path):
    model, x, context = variant(name)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.log_prob(x, context).numpy(), model.log_prob(x, context).numpy())
    one = None if context is None else context[:1][0]
    np.testing.assert_array_equal(
        loaded.sample(2, seed=3, context=one).numpy(), model.sample(2, seed=3, context=one).numpy()
    )
    if context is not None:  # each context gives its own density
        other = np.roll(context, 1, axis=0)
        assert np.abs(model.log_prob(x, other).numpy() - model.log_prob(x, context).numpy()).max() > 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_summary_lists_every_flow_layer(name, capsys):
    model, _, _ = variant(name)
    model.summary()
    out = capsys.readouterr().out
    assert f"{model.count_params():,}" in out
    assert all(layer.name in out for layer in model.flow_layers)


@pytest.mark.parametrize("name", TIERED_NAMES)
def test_a_few_fit_steps_move_every_weight(name):
    entry, conditioning = VARIANTS[name]
    keras.utils.set_random_seed(0)
    model = entry.tiny(**conditioning)
    # Two steps: the first moves the zero-initialised output layers, the second every weight behind
    # them. Eagerly: tracing the step would cost several times what two steps cost.
    x, context = data_for(model, 16, 3), context_for(model, 16, 3)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), run_eagerly=True)
    before = [v.numpy().copy() for v in model.trainable_variables]
    history = model.fit(x, context, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1]) and int(model.optimizer.iterations.numpy()) == 2
    still = [v.path for v, b in zip(model.trainable_variables, before) if np.array_equal(v.numpy(), b)]
    assert still == []


def test_the_toy_gets_the_cli_and_its_builder():
    from tfflows.cli import build_parser
    from tfflows.cli.common import build_model

    args = build_parser().parse_args(
        ["train", "--model", "toy-coupling", "--dataset", "two_moons", "--width", "4"]
    )
    model = build_model(args, (2,), None, None)
    assert isinstance(model, ToyCoupling) and model.width == 4
    assert registry.get_model("toy-coupling", "vector") is TOY
    with pytest.raises(ValueError, match="--model toy-coupling is a vector flow; use it with a 2-D toy"):
        build_model(args, (8, 8, 1), 5, None)


def test_the_toy_gets_export_through_the_cli(tmp_path):
    """``tfflows export`` writes the toy's SavedModel (``export_saved_model``), which scores as the toy."""
    model, x, _ = variant("toy-coupling-vector")
    model.save(tmp_path / "toy.keras")
    out = cli("export", str(tmp_path / "toy.keras"), str(tmp_path / "serving"), "--version", "1")
    assert str(tmp_path / "serving" / "1") in out
    loaded = tf.saved_model.load(str(tmp_path / "serving" / "1"))
    got = loaded.signatures["log_prob"](x=tf.constant(x))["log_prob"].numpy()
    np.testing.assert_allclose(got, model.log_prob(x).numpy(), rtol=1e-5, atol=1e-5)
    samples = loaded.signatures["sample"](
        num_samples=tf.constant(2), temperature=tf.constant(0.5), seed=tf.constant(3, tf.int64)
    )["x"].numpy()
    assert samples.shape == (2, *model.event_shape) and np.all(np.isfinite(samples))


def test_build_options_reach_every_builder():
    """Every registered builder takes the CLI's shared options, for its kind of data."""
    for entry in registry.entries():
        if entry.train is not None:
            continue  # trained its own way, from the CLI's arguments
        image = entry.data_kind == "image"
        options = BuildOptions(
            event_shape=(4, 4, 1) if image else (3,),
            num_bits=5 if image else None,
            num_levels=1,
            num_steps=2,
            width=8,
            depth=1,
            extra={"patch_size": 2, "heads": 2} if image else {},
        )
        model = entry.build(options)
        assert isinstance(model, entry.model_class), entry.name
        assert model.event_shape == options.event_shape


def test_image_builders_need_num_bits():
    """An image model's builder reads ``image_num_bits``: the int, or a ValueError saying it is missing."""
    assert BuildOptions(event_shape=(4, 4, 1), num_bits=5).image_num_bits == 5
    with pytest.raises(ValueError, match=r"an image model needs num_bits .* got None .* \(4, 4, 1\)"):
        registry.get_model("glow", "image").build(BuildOptions(event_shape=(4, 4, 1)))


EXPORTED = [n for n in NAMES if not VARIANTS[n][1]]

# One process without tfflows loads every exported model (one TensorFlow start-up, not one per
# model) and scores each, recording per model its log_prob, or its error, and whether tfflows got in.
SCORE_ELSEWHERE = textwrap.dedent("""
    import json, sys, numpy as np, tensorflow as tf
    root, names = sys.argv[1], sys.argv[2:]
    report = {}
    for name in names:
        try:
            loaded = tf.saved_model.load(f"{root}/{name}")
            x = np.load(f"{root}/{name}.x.npy")
            key = "log_prob_float" if "log_prob_float" in loaded.signatures else "log_prob"
            arg = "images" if x.ndim == 4 else "x"
            out = loaded.signatures[key](**{arg: tf.constant(x, tf.float32)})["log_prob"].numpy()
            np.save(f"{root}/{name}.out.npy", out)
            report[name] = {"error": None, "tfflows_imported": "tfflows" in sys.modules}
        except Exception as err:
            report[name] = {"error": f"{type(err).__name__}: {err}"[:4000], "tfflows_imported": None}
    json.dump(report, open(f"{root}/report.json", "w"))
""")


@pytest.fixture(scope="module")
def served_elsewhere(tmp_path_factory) -> dict[str, Any]:
    """name -> (its log_prob here, its SavedModel's log_prob in a process without tfflows, that
    process's report), or the error exporting it raised; every model exported once per module."""
    from tfflows.export import export_saved_model

    root = tmp_path_factory.mktemp("served")
    results: dict[str, Any] = {}
    for name in EXPORTED:
        model, x, _ = variant(name)
        try:
            export_saved_model(model, root / name)
        except Exception as err:  # raised again by this model's test, not by every test
            results[name] = err
            continue
        np.save(root / f"{name}.x.npy", x)
        results[name] = model.log_prob(x).numpy()
    exported = [n for n in EXPORTED if not isinstance(results[n], Exception)]
    subprocess.run([sys.executable, "-c", SCORE_ELSEWHERE, str(root), *exported], check=True, timeout=600)
    report = json.loads((root / "report.json").read_text())
    for name in exported:
        out = root / f"{name}.out.npy"
        results[name] = (results[name], np.load(out) if out.exists() else None, report[name])
    return results


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPORTED)
def test_exported_saved_model_serves_without_tfflows(name, served_elsewhere):
    """The SavedModel a registered model exports loads and scores in a process without tfflows."""
    if isinstance(served_elsewhere[name], Exception):
        raise served_elsewhere[name]
    want, got, report = served_elsewhere[name]
    assert report["error"] is None, report["error"]
    assert report["tfflows_imported"] is False
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


LEGACY = sorted(p.stem for p in (pathlib.Path(__file__).parent / "data" / "legacy_models").glob("*.keras"))


@pytest.mark.parametrize("name", LEGACY)
def test_files_saved_before_the_contract_load_with_identical_log_prob(name):
    """Tiny models of every kind saved by the release before the model contract (old argument
    names in their configs) load without a warning and score their data as then, to float32
    round-off (the files were scored with oneDNN's kernels on; off, sums round otherwise)."""
    import warnings

    folder = pathlib.Path(__file__).parent / "data" / "legacy_models"
    saved = np.load(folder / f"{name}.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # a saved file is not the user's code
        model = keras.models.load_model(folder / f"{name}.keras")
    context = saved["context"] if "context" in saved else None
    np.testing.assert_allclose(
        model.log_prob(saved["x"], context).numpy(), saved["log_prob"], rtol=1e-6, atol=1e-5
    )
