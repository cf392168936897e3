"""The models in saved_models/ load without tfflows and score their recorded test figures.

Every folder with a ``card.json`` is checked, so a newly shipped model (a
TarFlow, a Jet) is covered as soon as it is there. ``ship.py`` itself is
checked on a tiny TarFlow and Jet written into a temporary folder.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfflows
from tfflows import data

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


def _folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def check_recorded_figure(card_path: str) -> None:
    """The SavedModel scores the real test split as the card records, and beats the uniform baseline."""
    card = json.load(open(card_path))
    if card["dataset"] == "fashion_mnist" and not any(
        os.path.isdir(d) for d in data.idx_search_dirs("fashion_mnist")
    ):
        pytest.skip("Fashion-MNIST IDX files not installed (apt-get install dataset-fashion-mnist)")
    serving = tf.saved_model.load(os.path.join(os.path.dirname(card_path), "1"))
    inputs = ship.test_inputs(card["dataset"], card["config"].get("num_bits"))
    labels = ship.test_labels(card["dataset"]) if card["config"].get("num_classes") else None
    assert len(inputs) == card["test_examples"]
    value = ship.score(serving, inputs, labels=labels)
    assert value == pytest.approx(card["value"], abs=2e-4)
    # A trained model beats the uniform baseline by a clear margin.
    if card["metric"] == "test_bits_per_dim_bin_centre":
        assert value < card["config"]["num_bits"] - 0.5
    else:
        assert value < 2 * np.log(8.0)


def check_card(card_path: str) -> None:
    card = json.load(open(card_path))
    folder = os.path.dirname(card_path)
    assert os.path.exists(os.path.join(folder, "MODEL_CARD.md"))
    serving_card = json.load(open(os.path.join(folder, "1", "assets.extra", "model_card.json")))
    assert serving_card["config"] == card["config"]


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
    if card["metric"] == "test_bits_per_dim_bin_centre":
        shape = card["config"].get("event_shape") or card["config"].get("input_shape")
        assert out["images"].shape == (8, *shape) and out["images"].dtype == tf.uint8
        if "finite" in out:  # (older exports have no finite output)
            assert bool(tf.reduce_all(out["finite"]))
    else:
        assert np.all(np.isfinite(out["log_prob"].numpy()))
    return out


def test_the_three_promised_models_are_shipped():
    names = {json.load(open(c))["name"] for c in CARDS}
    assert {"realnvp_two_moons", "glow_digits", "glow_fashion_mnist"} <= names


def test_folder_stays_under_30_mb():
    assert _folder_bytes(ROOT) < 30 * 2**20


@pytest.mark.parametrize("card_path", TIERED_CARDS, ids=lambda p: os.path.basename(os.path.dirname(p)))
def test_recorded_test_figure_on_real_test_data(card_path):
    check_recorded_figure(card_path)


@pytest.mark.parametrize("card_path", TIERED_CARDS, ids=lambda p: os.path.basename(os.path.dirname(p)))
def test_card_matches_the_saved_model(card_path):
    check_card(card_path)
    check_card_example(card_path)


TINY = {
    # A class-conditional TarFlow trained with Gaussian noise: its sample signature has
    # every extra input (labels, guidance, denoise).
    "tarflow": lambda: tfflows.TarFlow(
        (8, 8, 1),
        patch_size=4,
        num_steps=2,
        depth=1,
        width=16,
        heads=2,
        mlp_ratio=2,
        num_bits=5,
        num_classes=10,
        noise="gaussian",
        noise_std=0.1,
    ),
    "jet": lambda: tfflows.Jet(
        (8, 8, 1), patch_size=2, num_steps=2, depth=1, width=16, heads=2, mlp_ratio=2, num_bits=5
    ),
}


@pytest.mark.slow  # exports a SavedModel and scores the digits' test split through it, per kind
@pytest.mark.parametrize("kind", list(TINY))
def test_ship_writes_transformer_flows_as_for_glow(tmp_path, kind):
    """ship.py on a small TarFlow or Jet, into a temporary folder.

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
    name = f"{kind}_digits"
    card = ship.main(
        [path, "--name", name, "--dataset", "digits", "--command", "a test", "--root", str(tmp_path)]
    )
    glow = json.load(open(os.path.join(ROOT, "glow_digits", "card.json")))
    assert set(card) == set(glow) and card["model"] == type(model).__name__
    card_path = str(tmp_path / name / "card.json")
    assert json.load(open(card_path)) == json.loads(json.dumps(card))
    assert card["test_examples"] == len(ship.test_inputs("digits", 5)) and np.isfinite(card["value"])
    assert card["metric"] == "test_bits_per_dim_bin_centre" and card["training_seconds"] is None
    check_card(card_path)
    check_card_example(card_path)
    text = open(tmp_path / name / "MODEL_CARD.md").read()
    if kind == "tarflow":
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
