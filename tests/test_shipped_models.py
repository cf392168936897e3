"""The models in saved_models/ load without tfflows and score their recorded test figures.

Every folder with a ``card.json`` is checked, so a newly shipped model (a
TarFlow, a Jet) is covered as soon as it is there: its SavedModel scores the
card's figures (the first dequantization draw and the bin centres, on the
whole test split), its ``model.keras`` scores as its SavedModel does, its
MODEL_CARD.md headlines the dequantized figure, and the folder keeps to the
size budget. ``ship.py`` itself is checked on every registered image model
(``helpers.registered_models``, at the digits' 8×8×1) and a class-conditional
TarFlow trained with noise, written
into a temporary folder.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfflows
from tfflows import data

from helpers import derived, registered_models

ROOT = os.path.join(os.path.dirname(__file__), "..", "saved_models")
CARDS = sorted(
    os.path.join(ROOT, name, "card.json")
    for name in os.listdir(ROOT)
    if os.path.exists(os.path.join(ROOT, name, "card.json"))
)
# The fast tier loads the small shipped models (the digits and two-moons ones); scoring the
# Fashion-MNIST test split with the larger ones is in the full suite.
TIERED_CARDS = [
    pytest.param(c, marks=pytest.mark.slow) if "fashion_mnist" in os.path.basename(os.path.dirname(c)) else c
    for c in CARDS
]
_spec = importlib.util.spec_from_file_location("ship", os.path.join(ROOT, "ship.py"))
ship = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ship)


SHIPPED_FILES = {"1", "model.keras", "card.json", "MODEL_CARD.md", "samples.png"}


@functools.cache
def load_serving(folder: str):
    """A shipped folder's SavedModel, loaded once per session: the whole-split figures and the Keras
    model's comparison read the same loaded signatures (each load and each signature's first call
    costs seconds for the Fashion-MNIST models). Loaded SavedModels are only called, never changed."""
    return tf.saved_model.load(os.path.join(folder, "1"))


def check_recorded_figure(card_path: str) -> None:
    """The SavedModel scores the real test split as the card records, and beats the uniform baseline.

    Images: the bin-centre figure, and the first of the dequantization draws
    (the headline is their mean); 2-D toys: the NLL of the seeded sample.
    """
    card = json.load(open(card_path))
    if card["dataset"] == "fashion_mnist" and not any(
        os.path.isdir(d) for d in data.idx_search_dirs("fashion_mnist")
    ):
        pytest.skip("Fashion-MNIST IDX files not installed (apt-get install dataset-fashion-mnist)")
    serving = load_serving(os.path.dirname(card_path))
    num_bits = card["config"].get("num_bits")
    inputs = ship.test_inputs(card["dataset"], num_bits)
    labels = ship.test_labels(card["dataset"]) if card["config"].get("num_classes") else None
    assert len(inputs) == card["test_examples"]
    value = ship.score(serving, inputs, labels=labels)
    if card["metric"] == "test_bits_per_dim_dequantized":
        assert value == pytest.approx(card["test_bits_per_dim_bin_centre"], abs=2e-4)
        deq = card["dequantization"]
        assert len(deq["values"]) == deq["draws"] == ship.DEQUANTIZATION["draws"]
        assert card["value"] == pytest.approx(np.mean(deq["values"]), abs=1e-5)
        first = ship.dequantized_score(serving, inputs, num_bits, 0, labels=labels)
        assert first == pytest.approx(deq["values"][0], abs=2e-4)
        # A trained model beats the uniform baseline by a clear margin, and the bound
        # lies above the midpoint estimate.
        assert value < card["value"] < num_bits - 0.5
    else:
        assert card["metric"] == "test_nll_nats"
        assert value == pytest.approx(card["value"], abs=2e-4)
        assert value < 2 * np.log(8.0)


def check_keras_model(card_path: str, examples: int = 100) -> None:
    """``model.keras`` scores the first test examples as the SavedModel's ``log_prob`` does."""
    card = json.load(open(card_path))
    folder = os.path.dirname(card_path)
    model = tfflows.pretrained(card["name"], root=os.path.dirname(folder))
    assert model.get_config() == card["config"]
    inputs = ship.test_inputs(card["dataset"], card["config"].get("num_bits"))[:examples]
    labels = ship.test_labels(card["dataset"])[:examples] if card["config"].get("num_classes") else None
    key = "images" if inputs.dtype == np.uint8 else "x"
    request = {key: tf.constant(inputs)} | ({} if labels is None else {"labels": tf.constant(labels)})
    served = load_serving(folder).signatures["log_prob"](**request)
    np.testing.assert_allclose(model.log_prob(inputs, labels).numpy(), served["log_prob"].numpy(), rtol=1e-5)


def check_card(card_path: str) -> None:
    card = json.load(open(card_path))
    folder = os.path.dirname(card_path)
    assert os.path.exists(os.path.join(folder, "MODEL_CARD.md"))
    serving_card = json.load(open(os.path.join(folder, "1", "assets.extra", "model_card.json")))
    assert serving_card["config"] == card["config"]
    assert SHIPPED_FILES <= set(os.listdir(folder))
    assert card["files"] == {"saved_model": "1", "keras": "model.keras"}
    assert ship.folder_bytes(folder) <= ship.FOLDER_BUDGET_BYTES
    # Today's signatures (images: the OOD score and the float density beside the rest).
    image = card["metric"] == "test_bits_per_dim_dequantized"
    expected = {"serving_default", "log_prob", "sample", "encode", "decode"}
    assert set(serving_card["signatures"]) == expected | ({"score", "log_prob_float"} if image else set())
    text = open(os.path.join(folder, "MODEL_CARD.md")).read()
    if image:
        # The headline is the likelihood bound; the bin-centre figure comes second, named.
        headline = f"- **Test bits/dim with uniform dequantization**: {card['value']:.4f}"
        second = f"- **Test bits/dim at bin centres**: {card['test_bits_per_dim_bin_centre']:.4f}"
        assert headline in text and second in text
        assert text.index(headline) < text.index(second)


def run_card_example(folder: str) -> dict:
    """Runs the Python example of MODEL_CARD.md on this folder's SavedModel; returns its outputs."""
    text = open(os.path.join(folder, "MODEL_CARD.md")).read()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    name = os.path.basename(os.path.normpath(folder))
    shipped = f"'saved_models/{name}/1'"
    assert shipped in code, f"the example of {name} loads another folder:\n{code}"
    tree = ast.parse(code.replace(shipped, repr(os.path.join(folder, "1"))))
    last = ast.Expression(tree.body.pop().value)
    namespace: dict = {}
    exec(compile(tree, "MODEL_CARD.md", "exec"), namespace)
    return eval(compile(last, "MODEL_CARD.md", "eval"), namespace)


def check_card_example(card_path: str) -> dict:
    """The card's example call runs: every input the signature needs, samples of the model's shape."""
    card = json.load(open(card_path))
    out = run_card_example(os.path.dirname(card_path))
    if card["metric"] == "test_bits_per_dim_dequantized":
        shape = card["config"]["event_shape"]
        assert out["images"].shape == (8, *shape) and out["images"].dtype == tf.uint8
        assert bool(tf.reduce_all(out["finite"]))
    else:
        assert np.all(np.isfinite(out["log_prob"].numpy()))
    return out


def test_the_three_promised_models_are_shipped():
    names = {json.load(open(c))["name"] for c in CARDS}
    assert {"realnvp_two_moons", "glow_digits", "glow_fashion_mnist"} <= names


def test_each_folder_keeps_to_the_budget_and_all_to_40_mb():
    for name in os.listdir(ROOT):
        if os.path.isdir(os.path.join(ROOT, name)):
            assert ship.folder_bytes(os.path.join(ROOT, name)) <= ship.FOLDER_BUDGET_BYTES, name
    assert ship.folder_bytes(ROOT) < 40 * 2**20


@pytest.mark.parametrize("card_path", TIERED_CARDS, ids=lambda p: os.path.basename(os.path.dirname(p)))
def test_recorded_test_figure_on_real_test_data(card_path):
    check_recorded_figure(card_path)


@pytest.mark.parametrize("card_path", TIERED_CARDS, ids=lambda p: os.path.basename(os.path.dirname(p)))
def test_card_matches_the_saved_model(card_path):
    check_card(card_path)
    check_card_example(card_path)


@pytest.mark.parametrize("card_path", CARDS, ids=lambda p: os.path.basename(os.path.dirname(p)))
def test_keras_model_scores_as_the_saved_model(card_path):
    check_keras_model(card_path)


# Every registered image model at the digits' size; and one variant derived from the registered
# TarFlow: class-conditional (the digits' 10 classes) and trained with Gaussian noise, so its
# sample signature has every extra input (labels, guidance, denoise). The fast tier ships the
# variant and the first registered image model; the others are slow.
TINY = {
    name: functools.partial(derived, make, event_shape=(8, 8, 1))
    for name, make in registered_models("image").items()
}
TINY["tarflow-image-labels-noise"] = functools.partial(
    derived, TINY["tarflow-image"], num_classes=10, noise="gaussian", noise_std=0.1
)
FAST = [*registered_models("image", first_per_kind=True), "tarflow-image-labels-noise"]


@pytest.mark.parametrize("kind", [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in TINY])
def test_ship_writes_every_image_flow_as_for_glow(tmp_path, kind):
    """ship.py on a small image flow, into a temporary folder.

    Its weights are moved off their start (where every block is the identity)
    by random steps of 0.05 instead of training, which would only add time.
    """
    keras.utils.set_random_seed(0)
    model = TINY[kind]()
    rng = np.random.default_rng(0)
    for w in model.trainable_weights:
        w.assign(np.asarray(w) + 0.05 * rng.standard_normal(w.shape).astype("float32"))
    path = str(tmp_path / "run" / "model.keras")
    os.makedirs(os.path.dirname(path))
    model.save(path)
    name = f"{kind.replace('-', '_')}_digits"
    card = ship.main(
        [path, "--name", name, "--dataset", "digits", "--command", "a test", "--root", str(tmp_path)]
    )
    glow = json.load(open(os.path.join(ROOT, "glow_digits", "card.json")))
    assert set(card) == set(glow) and card["model"] == type(model).__name__
    card_path = str(tmp_path / name / "card.json")
    assert json.load(open(card_path)) == json.loads(json.dumps(card))
    assert card["test_examples"] == len(ship.test_inputs("digits", model.num_bits))
    assert np.isfinite(card["value"])
    assert card["metric"] == "test_bits_per_dim_dequantized" and card["training_seconds"] is None
    assert card["recovered"] is None and os.path.isfile(tmp_path / name / "model.keras")
    check_card(card_path)
    check_card_example(card_path)
    text = open(tmp_path / name / "MODEL_CARD.md").read()
    if getattr(model, "noise", None) == "gaussian" and model.num_classes:
        for words in (
            "labels=tf.constant([0])",
            "guidance=tf.constant(0.0, tf.float32)",
            "denoise=tf.constant(True)",
            "- `guidance` (float32, default `0.0`)",
            "- `denoise` (bool, default `False`)",
            "Trained with Gaussian noise",
            "each image given its test label",
            "one column per class; denoised",
        ):
            assert words in text, words
    else:
        assert (
            "m.signatures['sample'](num_samples=tf.constant(8), temperature=tf.constant(0.7), "
            "seed=tf.constant(0, tf.int64))" in text
        )
        assert "guidance" not in text and "denoise" not in text


_reship_spec = importlib.util.spec_from_file_location("reship", os.path.join(ROOT, "reship.py"))
reship = importlib.util.module_from_spec(_reship_spec)
_reship_spec.loader.exec_module(reship)


def _tiny_glow() -> tfflows.Glow:
    return tfflows.Glow((4, 4, 1), num_levels=1, num_steps=2, width=8, num_bits=5, seed=0)


def _variables_of(model, older_lu: bool = False) -> dict:
    """A model's weights by path, as a SavedModel's variables; ``older_lu``: the LU 1x1 weights in 3 parts."""
    out = {}
    for w in model.weights:
        value = np.asarray(w)
        layer, _, last = w.path.rpartition("/")
        if older_lu and last == "lower_upper":
            # The older layout; what lies on and across the diagonal of lower and upper was never read.
            out[f"{layer}/lower"] = tf.constant(
                np.tril(value, -1) + 7.0 * np.eye(len(value), dtype="float32")
            )
            out[f"{layer}/upper"] = tf.constant(np.triu(value, 1) - 3.0 * np.eye(len(value), dtype="float32"))
            out[f"{layer}/log_diag"] = tf.constant(np.diag(value).copy())
        elif last != "nonfinite_steps":  # training bookkeeping, which exports leave out
            out[w.path] = tf.constant(value)
    return out


def test_reship_recovers_every_weight_once_and_packs_the_older_lu_weights():
    keras.backend.clear_session()
    source = _tiny_glow()
    rng = np.random.default_rng(0)
    for w in source.trainable_weights:
        w.assign(np.asarray(w) + 0.05 * rng.standard_normal(w.shape).astype("float32"))
    old = _variables_of(source, older_lu=True)
    keras.backend.clear_session()
    model = _tiny_glow()
    pairs, record = reship.match_weights(model, old)
    assert {w.path for w, _ in pairs} | set(record["fresh"]) == {w.path for w in model.weights}
    assert record["fresh"] == ["glow/nonfinite_steps"] and len(record["migrated"]) == 2
    for weight, value in pairs:
        weight.assign(value)
    x = rng.uniform(0, 32, (3, 4, 4, 1)).astype("float32")
    np.testing.assert_array_equal(model.log_prob(x).numpy(), source.log_prob(x).numpy())


def test_reship_refuses_what_does_not_match_and_names_each_problem():
    keras.backend.clear_session()
    old = _variables_of(_tiny_glow())
    keras.backend.clear_session()
    wider = tfflows.Glow((4, 4, 1), num_levels=1, num_steps=2, width=16, num_bits=5, seed=0)
    with pytest.raises(
        ValueError, match=r"weight .*conv2d/kernel is \(3, 3, 2, 16\) float32; the SavedModel's is"
    ):
        reship.match_weights(wider, old)
    keras.backend.clear_session()
    model = _tiny_glow()
    missing = next(k for k in old if k.endswith("/log_scale"))
    extra = {**{k: v for k, v in old.items() if k != missing}, "leftover/kernel": tf.zeros((2, 2))}
    with pytest.raises(ValueError, match="cannot recover the weights by name") as caught:
        reship.match_weights(model, extra)
    assert f"weight {missing} (4,) has no variable in the SavedModel" in str(caught.value)
    assert "variable leftover/kernel (2, 2) matches no weight" in str(caught.value)
