"""The serving export: SavedModel signatures checked in a process without tfflows or TFP.

One module fixture exports every registered model's tiny configuration
(``helpers.registered_models``: every model unconditioned, the first image
model with class labels and the first vector model with a context), plus one
variant, the registered RealNVP on 8-bit pixels (its uint8 input is used as
is, where the others drop bits). It writes the requests and the Keras models'
answers beside them, then runs three processes at once:

- a clean Python that blocks any import of tfflows and TFP, loads every
  SavedModel with ``tf.saved_model.load`` and answers every request (good and
  bad), recording outputs, error types and messages, and each signature's
  input and output specs;
- ``saved_model_cli show --all`` and ``saved_model_cli run`` on the image Glow.

The tests compare those answers with the Keras models.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfflows
from tfflows import cli
from tfflows.export import MAX_SAMPLES, describe_signatures, export_saved_model
from tfflows.images import to_uint8

from helpers import CLEAN_LOADER, derived, registered_models, run_clean

RTOL = 1e-5

TINY = {
    **registered_models(),
    # Conditional: the first image model with class labels, the first vector model with a context.
    **registered_models("image", ["num_classes"], first_per_kind=True),
    **registered_models("vector", ["context_dim"], first_per_kind=True),
}
MODELS = {
    # name: (constructor, export keyword arguments); a conditional model is exported with a
    # sampling cap other than the default.
    **{name: (make, {"max_samples": 64} if make.conditioning else {}) for name, make in TINY.items()},
    "realnvp-image-8bit": (lambda: derived(TINY["realnvp-image"], num_bits=8), {}),
}
IMAGE_MODELS = tuple(n for n in MODELS if "-image" in n)  # ids are name-kind[-conditioning]
CONDITIONAL = {
    **{n: "labels" for n in MODELS if n.endswith("-num_classes")},
    **{n: "context" for n in MODELS if n.endswith("-context_dim")},
}
CLI_MODEL = "glow-image"  # the one saved_model_cli shows and runs (8×8×1, 5 bits)


def randomise(model, x, context, seed: int = 0) -> None:
    """Data-dependent ActNorm init, then every trainable weight nudged off its (often zero) start."""
    model.initialize((x, context))
    rng = np.random.default_rng(seed)
    for w in model.trainable_weights:
        w.assign(np.asarray(w) + 0.05 * rng.standard_normal(w.shape).astype("float32"))


def grid_images(rng, n: int, num_bits: int, shape) -> np.ndarray:
    """uint8 images whose values sit on the num_bits grid, as ``to_uint8`` writes them."""
    levels = rng.integers(0, 2**num_bits, size=(n, *shape))
    return to_uint8(levels + 0.5, num_bits)


def centres(images: np.ndarray, num_bits: int) -> np.ndarray:
    return (np.floor(images.astype(np.float64) / 2 ** (8 - num_bits)) + 0.5).astype("float32")


def build_case(name: str, root: Path):
    """Exports one model; returns (plan entry, expected outputs, the model)."""
    keras.utils.set_random_seed(0)
    model = MODELS[name][0]()
    rng = np.random.default_rng(1)
    image = name in IMAGE_MODELS
    n = 4
    a: dict[str, np.ndarray] = {}
    ctx_key = CONDITIONAL.get(name)
    if ctx_key == "labels":
        a["ctx"] = np.array([0, 1, 2, 1], dtype="int32")
    elif ctx_key == "context":
        a["ctx"] = rng.normal(size=(n, model.context_dim)).astype("float32")
    ctx = a.get("ctx")
    shape = model.event_shape
    if image:
        bits = model.num_bits
        a["any_images"] = rng.integers(0, 256, size=(n, *shape)).astype("uint8")
        a["grid_images"] = grid_images(rng, n, bits, shape)
        a["levels"] = (rng.integers(0, 2**bits, size=(n, *shape)) + rng.random((n, *shape))).astype("float32")
        randomise(model, centres(a["any_images"], bits), ctx)
    else:
        a["x"] = rng.normal(size=(n, model.num_dims)).astype("float32")
        randomise(model, a["x"], ctx)
    data_key = "images" if image else "x"
    scored = a["any_images"] if image else a["x"]
    with_ctx = {ctx_key: "ctx"} if ctx_key else {}

    want: dict[str, np.ndarray] = {}
    requests: dict[str, list] = {}
    requests["log_prob"] = ["log_prob", {data_key: "any_images" if image else "x", **with_ctx}]
    requests["serving_default"] = ["serving_default", requests["log_prob"][1]]
    want["log_prob"] = model.log_prob(centres(scored, bits) if image else scored, ctx).numpy()
    round_trip = a["grid_images"] if image else a["x"]
    requests["encode"] = ["encode", {data_key: "grid_images" if image else "x", **with_ctx}]
    want["latents"] = model.encode(centres(round_trip, bits) if image else round_trip, ctx).numpy()
    a["latents"] = want["latents"]
    requests["decode"] = ["decode", {"latents": "latents", **with_ctx}]
    if image:
        requests["score"] = ["score", {"images": "any_images", **with_ctx}]
        bpd = -want["log_prob"] / (model.num_dims * np.log(2.0))
        png = (
            np.array(
                [
                    len(tf.io.encode_png(im // 2 ** (8 - model.num_bits), compression=9).numpy())
                    for im in a["any_images"]
                ]
            )
            * 8.0
            / model.num_dims
        )
        want["score"], want["complexity_bits_per_dim"] = bpd - png, png
        requests["log_prob_float"] = ["log_prob_float", {"images": "levels", **with_ctx}]
        want["log_prob_float"] = model.log_prob(a["levels"], ctx).numpy()

    # Sampling: the same seed twice, another seed once.
    a["n"], a["t"] = np.array(3, "int32"), np.array(0.8, "float32")
    a["seed"], a["seed2"] = np.array(7, "int64"), np.array(8, "int64")
    sample_ctx = {}
    model_ctx = None
    if ctx_key == "labels":
        a["sample_ctx"] = np.array([2], dtype="int32")  # one label for every sample
        sample_ctx, model_ctx = {"labels": "sample_ctx"}, 2
    elif ctx_key == "context":
        a["sample_ctx"] = a["ctx"][:1]
        sample_ctx, model_ctx = {"context": "sample_ctx"}, a["ctx"][0]
    scalars = {"num_samples": "n", "temperature": "t"}
    requests["sample"] = ["sample", {**scalars, "seed": "seed", **sample_ctx}]
    requests["sample_again"] = ["sample", {**scalars, "seed": "seed", **sample_ctx}]
    requests["sample_other_seed"] = ["sample", {**scalars, "seed": "seed2", **sample_ctx}]
    want["sample"] = model.sample(3, temperature=0.8, seed=7, context=model_ctx).numpy()
    if ctx_key == "labels":
        a["labels_each"] = np.array([0, 1, 2], dtype="int32")
        requests["sample_each"] = ["sample", {**scalars, "seed": "seed", "labels": "labels_each"}]
        want["sample_each"] = model.sample(3, temperature=0.8, seed=7, context=a["labels_each"]).numpy()

    add_empty_requests(name, model, a, requests, data_key, ctx_key, sample_ctx, scalars)
    add_bad_requests(name, model, a, requests, data_key, with_ctx, sample_ctx, scalars)
    path = root / "serving" / name / "1"
    export_saved_model(model, path, **MODELS[name][1])
    arrays = root / f"{name}.npz"
    np.savez(arrays, **a)
    return {"path": str(path), "arrays": str(arrays), "requests": requests}, want, model


def add_empty_requests(name, model, a, requests, data_key, ctx_key, sample_ctx, scalars) -> None:
    """Requests with no examples, each named ``empty_<signature>``: valid, with empty outputs."""
    image = name in IMAGE_MODELS
    a["empty_data"] = np.zeros((0, *model.event_shape), "uint8" if image else "float32")
    a["empty_latents"] = np.zeros((0, model.num_dims), "float32")
    a["zero"] = np.array(0, "int32")
    ctx0 = {}
    if ctx_key:
        a["empty_ctx"] = a["ctx"][:0]
        ctx0 = {ctx_key: "empty_ctx"}
    requests["empty_log_prob"] = ["log_prob", {data_key: "empty_data", **ctx0}]
    requests["empty_encode"] = ["encode", {data_key: "empty_data", **ctx0}]
    requests["empty_decode"] = ["decode", {"latents": "empty_latents", **ctx0}]
    requests["empty_sample"] = ["sample", {**scalars, "num_samples": "zero", "seed": "seed", **sample_ctx}]
    if image:
        a["empty_levels"] = np.zeros((0, *model.event_shape), "float32")
        requests["empty_log_prob_float"] = ["log_prob_float", {"images": "empty_levels", **ctx0}]


@pytest.mark.parametrize("name", list(MODELS))
def test_empty_batches_give_empty_outputs(served, name):
    """A request of 0 examples (or 0 samples) answers with a batch dimension of 0."""
    image = name in IMAGE_MODELS
    event = served["models"][name].event_shape
    num_dims = served["models"][name].num_dims
    assert got(served, name, "empty_log_prob", "log_prob").shape == (0,)
    assert got(served, name, "empty_encode", "latents").shape == (0, num_dims)
    data_out = "images_float" if image else "x"
    for rid in ("empty_decode", "empty_sample"):
        assert got(served, name, rid, data_out).shape == (0, *event), rid
    if image:
        assert got(served, name, "empty_log_prob", "bits_per_dim").shape == (0,)
        assert got(served, name, "empty_log_prob_float", "log_prob").shape == (0,)
        assert got(served, name, "empty_sample", "images").shape == (0, *event)


def add_bad_requests(name, model, a, requests, data_key, with_ctx, sample_ctx, scalars) -> None:
    """Requests that must fail, each named ``bad_<what>``."""
    seed = {"seed": "seed"}
    for rid, value in (
        ("num_samples_negative", -3),
        ("num_samples_huge", MODELS[name][1].get("max_samples", MAX_SAMPLES) + 1),
    ):
        a[rid] = np.array(value, "int32")
        requests["bad_" + rid] = ["sample", {**scalars, "num_samples": rid, **seed, **sample_ctx}]
    for rid, value in (
        ("temperature_nan", np.nan),
        ("temperature_inf", np.inf),
        ("temperature_negative", -0.5),
    ):
        a[rid] = np.array(value, "float32")
        requests["bad_" + rid] = ["sample", {**scalars, "temperature": rid, **seed, **sample_ctx}]
    a["nan_latents"] = np.full((1, model.num_dims), np.nan, "float32")
    ctx1 = {k: "ctx1" for k in with_ctx}
    if with_ctx:
        a["ctx1"] = a["ctx"][:1]
    requests["bad_latents_nan"] = ["decode", {"latents": "nan_latents", **ctx1}]
    if name in IMAGE_MODELS:
        top = 2.0**model.num_bits
        h, w, c = model.event_shape
        for rid, value in (("level_too_big", top), ("level_negative", -0.25), ("level_nan", np.nan)):
            a[rid] = np.full((1, h, w, c), value, "float32")
            requests["bad_" + rid] = ["log_prob_float", {"images": rid, **ctx1}]
        a["three_channels"] = np.zeros((1, h, w, c + 2), "uint8")
        a["wrong_size"] = np.zeros((1, 2 * h, w, c), "uint8")
        a["float_images"] = np.zeros((1, h, w, c), "float32")
        a["flat_images"] = np.zeros((h * w * c,), "uint8")
        for rid in ("three_channels", "wrong_size", "float_images", "flat_images"):
            requests["bad_" + rid] = ["log_prob", {"images": rid, **ctx1}]
    else:
        d = model.num_dims
        a["nan_x"] = np.full((1, d), np.nan, "float32")
        requests["bad_x_nan"] = ["log_prob", {"x": "nan_x", **ctx1}]
        a["x_one_feature_more"] = np.zeros((2, d + 1), "float32")
        requests["bad_x_one_feature_more"] = ["log_prob", {"x": "x_one_feature_more", **ctx1}]
        a["latents_too_short"] = np.zeros((1, d - 1), "float32")
        requests["bad_latents_too_short"] = ["decode", {"latents": "latents_too_short", **ctx1}]
    scored = {data_key: "any_images" if data_key == "images" else "x"}
    if CONDITIONAL.get(name) == "labels":
        for rid, labels in (
            ("label_too_big", [0, 1, 3, 0]),
            ("label_negative", [0, -1, 0, 0]),
            ("labels_too_few", [0, 1, 2]),
        ):
            a[rid] = np.array(labels, "int32")
            requests["bad_" + rid] = ["log_prob", {**scored, "labels": rid}]
        a["two_labels"] = np.array([0, 1], "int32")
        requests["bad_sample_labels_count"] = ["sample", {**scalars, **seed, "labels": "two_labels"}]
    if CONDITIONAL.get(name) == "context":
        a["nan_context"] = np.full((4, model.context_dim), np.nan, "float32")
        requests["bad_context_nan"] = ["log_prob", {"x": "x", "context": "nan_context"}]
        a["two_contexts"] = a["ctx"][:2]
        requests["bad_sample_context_count"] = ["sample", {**scalars, **seed, "context": "two_contexts"}]


def saved_model_cli() -> str:
    """The ``saved_model_cli`` script installed with TensorFlow, beside this Python."""
    script = Path(sys.executable).parent / "saved_model_cli"
    found = str(script) if script.exists() else shutil.which("saved_model_cli")
    assert found, "saved_model_cli is not installed (it comes with the tensorflow package)"
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    (root / "loader.py").write_text(CLEAN_LOADER)
    # The clean process imports TensorFlow while the models export, then waits for plan.json.
    procs = {"loader": run_clean([sys.executable, str(root / "loader.py"), str(root)], cwd=str(root))}
    plan, want, models = {}, {}, {}
    for name in MODELS:
        plan[name], want[name], models[name] = build_case(name, root)
        if name == CLI_MODEL:
            glow, tool, cli_out = plan[name]["path"], [saved_model_cli()], root / "cli_run"
            np.save(root / "pixels_200.npy", np.full((2, *models[name].event_shape), 200, np.uint8))
            procs["show"] = run_clean(tool + ["show", "--dir", glow, "--all"], cwd=str(root))
            procs["run"] = run_clean(
                tool
                + [
                    "run",
                    "--dir",
                    glow,
                    "--tag_set",
                    "serve",
                    "--signature_def",
                    "log_prob",
                    "--inputs",
                    f"images={root / 'pixels_200.npy'}",
                    "--outdir",
                    str(cli_out),
                ],
                cwd=str(root),
            )
    (root / "plan.tmp").write_text(json.dumps(plan))
    os.replace(root / "plan.tmp", root / "plan.json")
    done = {k: p.communicate(timeout=600) for k, p in procs.items()}
    for key, proc in procs.items():
        assert proc.returncode == 0, f"{key} failed:\n{done[key][1][-4000:]}"
    report = json.loads((root / "report.json").read_text())
    with np.load(root / "outputs.npz") as f:
        outputs = {k: f[k] for k in f.files}
    return {
        "root": root,
        "plan": plan,
        "want": want,
        "models": models,
        "report": report,
        "outputs": outputs,
        "show": done["show"][0],
        "cli_out": cli_out,
    }


def got(served, name: str, request: str, output: str) -> np.ndarray:
    key = f"{name}/{request}/{output}"
    errors = served["report"]["errors"]
    assert key in served["outputs"], f"{name}/{request} failed: {errors.get(f'{name}/{request}')}"
    return served["outputs"][key]


def error(served, name: str, request: str) -> tuple[str, str]:
    errors = served["report"]["errors"]
    assert f"{name}/{request}" in errors, f"{name}/{request} was accepted but should fail"
    return tuple(errors[f"{name}/{request}"])


# -- loading without tfflows --------------------------------------------------


def test_saved_models_load_and_run_without_tfflows_or_tfp(served):
    report = served["report"]
    assert report["attempts"] == []
    assert report["loaded_modules"] == []
    for name in MODELS:
        assert got(served, name, "log_prob", "log_prob").shape == (4,)


def test_layout_is_tf_serving_with_a_model_card(served):
    for name in MODELS:
        path = Path(served["plan"][name]["path"])
        assert path.parent.name == name and path.name == "1"  # <base>/<model_name>/<version>
        assert (path / "saved_model.pb").is_file()
        assert (path / "variables" / "variables.index").is_file()
        assert not (path / "keras_metadata.pb").exists()
        card = json.loads((path / "assets.extra" / "model_card.json").read_text())
        assert card["model"] == type(served["models"][name]).__name__
        assert card == json.loads(json.dumps(describe_signatures(served["models"][name], **MODELS[name][1])))


def test_model_card_describes_every_signature_truly(served):
    for name in MODELS:
        card = json.loads(
            (Path(served["plan"][name]["path"]) / "assets.extra" / "model_card.json").read_text()
        )["signatures"]
        specs = served["report"]["specs"][name]
        assert set(card) == set(specs)
        for signature, spec in specs.items():
            for side in ("inputs", "outputs"):
                described = {
                    k: [v["dtype"], [None if d == -1 else d for d in v["shape"]]]
                    for k, v in card[signature][side].items()
                }
                assert described == spec[side], f"{name}:{signature} {side}"


def test_signatures_and_their_inputs(served):
    image = {"serving_default", "log_prob", "log_prob_float", "score", "sample", "encode", "decode"}
    for name in MODELS:
        specs = served["report"]["specs"][name]
        model = served["models"][name]
        event = [None, *model.event_shape]
        assert set(specs) == (image if name in IMAGE_MODELS else image - {"log_prob_float", "score"})
        extra = {CONDITIONAL[name]} if name in CONDITIONAL else set()
        data = "images" if name in IMAGE_MODELS else "x"
        assert set(specs["log_prob"]["inputs"]) == {data} | extra
        assert set(specs["sample"]["inputs"]) == {"num_samples", "temperature", "seed"} | extra
        assert set(specs["decode"]["inputs"]) == {"latents"} | extra
        if name in IMAGE_MODELS:
            assert specs["score"]["inputs"]["images"] == ["uint8", event]
            assert set(specs["score"]["outputs"]) == {
                "score",
                "bits_per_dim",
                "complexity_bits_per_dim",
                "finite",
            }
        assert specs["sample"]["inputs"]["seed"] == ["int64", []]
        if name in IMAGE_MODELS:
            assert specs["log_prob"]["inputs"]["images"] == ["uint8", event]
            assert specs["log_prob_float"]["inputs"]["images"] == ["float32", event]
            assert set(specs["log_prob"]["outputs"]) == {"log_prob", "bits_per_dim", "finite"}
            assert specs["sample"]["outputs"]["images"] == ["uint8", event]
        else:
            assert specs["log_prob"]["inputs"]["x"] == ["float32", event]
            assert specs["sample"]["outputs"] == {"x": ["float32", event], "finite": ["bool", [None]]}
        # uint8 cannot hold NaN: every sample says whether it is finite.
        for endpoint in ("sample", "decode"):
            assert specs[endpoint]["outputs"]["finite"] == ["bool", [None]]


# -- the same numbers as the Keras model ---------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
def test_log_prob_matches_the_keras_model(served, name, assert_close):
    want = served["want"][name]["log_prob"]
    assert np.all(np.isfinite(want))
    for request in ("log_prob", "serving_default"):
        assert_close("served log_prob", got(served, name, request, "log_prob"), want, atol=0, rtol=RTOL)
    if name in IMAGE_MODELS:
        dims = served["models"][name].num_dims
        bpd = got(served, name, "log_prob", "bits_per_dim")
        assert_close("served bits/dim", bpd, -want / (dims * np.log(2.0)), atol=0, rtol=RTOL)
        assert_close(
            "served log_prob_float",
            got(served, name, "log_prob_float", "log_prob"),
            served["want"][name]["log_prob_float"],
            atol=0,
            rtol=RTOL,
        )


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_score_is_complexity_corrected_bits_per_dim_without_tfflows(served, name, assert_close):
    want = served["want"][name]
    complexity = got(served, name, "score", "complexity_bits_per_dim")
    # PNG bytes are exact integers; the clean process computed them without tfflows.
    np.testing.assert_array_equal(complexity, want["complexity_bits_per_dim"].astype("float32"))
    assert_close("served score", got(served, name, "score", "score"), want["score"], atol=1e-4, rtol=RTOL)
    assert_close(
        "score's bits/dim",
        got(served, name, "score", "bits_per_dim"),
        got(served, name, "log_prob", "bits_per_dim"),
        atol=0,
        rtol=RTOL,
    )


def test_uint8_pixels_are_reduced_to_num_bits_and_scored_at_the_bin_centre(served):
    # The Glow has 5 bits: pixels 200..207 are level 25 and score as 25.5.
    model = served["models"][CLI_MODEL]
    assert model.num_bits == 5
    run = served["cli_out"]
    want = model.log_prob(np.full((2, *model.event_shape), 25.5, "float32")).numpy()
    np.testing.assert_allclose(np.load(run / "log_prob.npy"), want, rtol=RTOL)
    np.testing.assert_allclose(
        np.load(run / "bits_per_dim.npy"), -want / (model.num_dims * np.log(2.0)), rtol=RTOL
    )
    other = model.log_prob(np.full((2, *model.event_shape), 24.5, "float32")).numpy()
    assert not np.allclose(want, other)


@pytest.mark.parametrize("name", list(MODELS))
def test_samples_are_deterministic_and_match_the_keras_model(served, name, assert_close):
    image = name in IMAGE_MODELS
    key = "images_float" if image else "x"
    first = got(served, name, "sample", key)
    assert np.array_equal(first, got(served, name, "sample_again", key))
    assert not np.allclose(first, got(served, name, "sample_other_seed", key))
    want = served["want"][name]["sample"]
    assert_close("served sample", first, want, atol=1e-4, rtol=RTOL)
    if image:
        bits = served["models"][name].num_bits
        images = got(served, name, "sample", "images")
        assert images.dtype == np.uint8
        assert np.array_equal(images, got(served, name, "sample_again", "images"))
        # Equal up to pixels that sit within float noise of a level boundary.
        assert np.mean(images == to_uint8(want, bits)) > 0.99
    if CONDITIONAL.get(name) == "labels":
        assert_close(
            "served sample",
            got(served, name, "sample_each", "images_float"),
            served["want"][name]["sample_each"],
            atol=1e-4,
            rtol=RTOL,
        )


@pytest.mark.parametrize("name", list(MODELS))
def test_encode_decode_round_trip(served, name, assert_close):
    latents = got(served, name, "encode", "latents")
    assert_close("served encode", latents, served["want"][name]["latents"], atol=1e-4, rtol=RTOL)
    arrays = np.load(served["plan"][name]["arrays"])
    if name in IMAGE_MODELS:
        bits = served["models"][name].num_bits
        assert_close(
            "served decode",
            got(served, name, "decode", "images_float"),
            centres(arrays["grid_images"], bits),
            atol=1e-3,
            rtol=0,
        )
        assert np.array_equal(got(served, name, "decode", "images"), arrays["grid_images"])
    else:
        assert_close("served decode", got(served, name, "decode", "x"), arrays["x"], atol=1e-4, rtol=0)


# -- bad requests ----------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
def test_bad_sampling_requests_name_the_limit(served, name):
    cap = MODELS[name][1].get("max_samples", MAX_SAMPLES)
    for request in ("num_samples_negative", "num_samples_huge"):
        kind, message = error(served, name, "bad_" + request)
        assert kind == "InvalidArgumentError" and f"num_samples must be in 0..{cap}" in message
    for request, words in (
        ("temperature_nan", "temperature must be finite"),
        ("temperature_inf", "temperature must be finite"),
        ("temperature_negative", "temperature must be >= 0"),
    ):
        kind, message = error(served, name, "bad_" + request)
        assert kind == "InvalidArgumentError" and words in message, message


@pytest.mark.parametrize("name", list(MODELS))
def test_bad_values_are_refused(served, name):
    kind, message = error(served, name, "bad_latents_nan")
    assert kind == "InvalidArgumentError" and "decode: latents must be finite" in message
    if name in IMAGE_MODELS:
        top = 2 ** served["models"][name].num_bits
        for request in ("level_too_big", "level_negative", "level_nan"):
            kind, message = error(served, name, "bad_" + request)
            assert kind == "InvalidArgumentError"
            assert f"images must be finite pixel levels in [0, {top})" in message
    else:
        kind, message = error(served, name, "bad_x_nan")
        assert kind == "InvalidArgumentError" and "x must be finite" in message


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_wrong_image_shape_or_dtype_is_refused_with_a_clear_message(served, name):
    h, w, c = served["models"][name].event_shape
    for request, shape in (
        ("three_channels", f"[1,{h},{w},{c + 2}]"),
        ("wrong_size", f"[1,{2 * h},{w},{c}]"),
        ("flat_images", f"[{h * w * c}]"),
    ):
        kind, message = error(served, name, "bad_" + request)
        assert kind == "InvalidArgumentError"
        assert (
            f"Shape of tensor images {shape} is not compatible with expected shape [?,{h},{w},{c}]" in message
        )
    kind, message = error(served, name, "bad_float_images")
    assert kind == "InvalidArgumentError" and "expected to be a uint8 tensor but is a float" in message


@pytest.mark.parametrize("name", [n for n in MODELS if n not in IMAGE_MODELS])
def test_wrong_vector_or_latent_shapes_are_refused(served, name):
    d = served["models"][name].num_dims
    for request, words in (
        (
            "x_one_feature_more",
            f"Shape of tensor x [2,{d + 1}] is not compatible with expected shape [?,{d}]",
        ),
        ("latents_too_short", f"Shape of tensor latents [1,{d - 1}] is not compatible"),
    ):
        kind, message = error(served, name, "bad_" + request)
        assert kind == "InvalidArgumentError" and words in message, message


@pytest.mark.parametrize("name", list(CONDITIONAL))
def test_bad_labels_and_contexts_are_refused(served, name):
    if CONDITIONAL[name] == "labels":
        top = served["models"][name].num_classes - 1
        requests = (
            ("label_too_big", f"labels must be class ids in 0..{top}"),
            ("label_negative", f"labels must be class ids in 0..{top}"),
            ("labels_too_few", "labels must have one entry per example"),
            ("sample_labels_count", "labels must have 1 row"),
        )
    else:
        requests = (
            ("context_nan", "context must be finite"),
            ("sample_context_count", "context must have 1 row"),
        )
    for request, words in requests:
        kind, message = error(served, name, "bad_" + request)
        assert kind == "InvalidArgumentError" and words in message, message


# -- tools -------------------------------------------------------------------------


def test_saved_model_cli_lists_the_signatures(served):
    show = served["show"]
    for signature in ("serving_default", "log_prob", "log_prob_float", "sample", "encode", "decode"):
        assert f"signature_def['{signature}']" in show
    for words in (
        "inputs['images'] tensor_info:",
        "DT_UINT8",
        "inputs['num_samples']",
        "inputs['seed']",
        "DT_INT64",
        "outputs['bits_per_dim']",
        "outputs['latents']",
    ):
        assert words in show


def test_cli_export_writes_a_version_folder(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    model = tfflows.VectorRealNVP(2, num_steps=1, width=4)
    model.compile(optimizer="adam")
    model.save(tmp_path / "m.keras")
    base = tmp_path / "serving" / "toy"
    assert cli.main(["export", str(tmp_path / "m.keras"), str(base), "--version", "3"]) == 0
    assert (base / "3" / "saved_model.pb").is_file()
    assert (base / "3" / "assets.extra" / "model_card.json").is_file()
    assert str(base / "3") in capsys.readouterr().out
    # Versions are immutable: a second export to the same version is refused.
    assert cli.main(["export", str(tmp_path / "m.keras"), str(base), "--version", "3"]) == 2
    assert "not empty" in capsys.readouterr().err
    loaded = tf.saved_model.load(str(base / "3"))
    x = np.array([[0.3, -1.2]], "float32")
    np.testing.assert_allclose(
        loaded.signatures["log_prob"](x=tf.constant(x))["log_prob"], model.log_prob(x), rtol=RTOL
    )


@pytest.mark.slow
def test_more_than_8_bits_take_uint16(tmp_path):
    keras.utils.set_random_seed(0)
    model = tfflows.Glow((4, 4, 1), num_levels=1, num_steps=1, width=4, num_bits=10)
    rng = np.random.default_rng(0)
    randomise(model, rng.uniform(0, 1024, (4, 4, 4, 1)).astype("float32"), None)
    path = export_saved_model(model, tmp_path / "glow10" / "1")
    serve = tf.saved_model.load(path).signatures
    images = rng.integers(0, 65536, size=(2, 4, 4, 1)).astype("uint16")
    want = model.log_prob((images // 64 + 0.5).astype("float32")).numpy()
    np.testing.assert_allclose(serve["log_prob"](images=tf.constant(images))["log_prob"], want, rtol=RTOL)
    out = serve["sample"](
        num_samples=tf.constant(2), temperature=tf.constant(0.5, tf.float32), seed=tf.constant(1, tf.int64)
    )
    assert out["images"].dtype == tf.uint16


def test_export_refuses_bad_arguments(tmp_path):
    model = tfflows.VectorRealNVP(2, num_steps=1, width=4)
    with pytest.raises(ValueError, match="max_samples must be a positive integer"):
        export_saved_model(model, tmp_path / "a", max_samples=0)
    with pytest.raises(ValueError, match="expected a tfflows FlowModel"):
        export_saved_model(keras.Sequential([keras.layers.Dense(1)]), tmp_path / "b")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds no SavedModel"):
        export_saved_model(model, tmp_path / "c", overwrite=True)
    assert (tmp_path / "c" / "notes.txt").exists()


def test_each_flow_computation_is_saved_once(tmp_path):
    """The signatures share the flow's functions, and nothing is saved twice.

    Six image signatures (and serving_default) call one density, one latent
    and one inverse function: each is one FunctionDef in saved_model.pb, as is
    each signature's own body.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    model = tfflows.Glow((4, 4, 1), num_levels=1, num_steps=1, width=8, num_bits=5)
    model.initialize(np.random.default_rng(0).integers(0, 32, (4, 4, 4, 1)).astype("float32"))
    path = export_saved_model(model, tmp_path / "1")
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    names = [f.signature.name for f in saved.meta_graphs[0].graph_def.library.function]

    def count(function: str) -> int:
        return sum(
            1 for n in names if n.startswith(f"__inference_{function}_") and n.rsplit("_", 1)[1].isdigit()
        )

    assert {f: count(f) for f in ("log_prob", "encode", "decode", "serve")} == {
        "log_prob": 1,
        "encode": 1,
        "decode": 1,
        "serve": 6,
    }
