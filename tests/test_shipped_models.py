"""The models in saved_models/ load without tfflows and score their recorded test figures."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfflows import data

ROOT = os.path.join(os.path.dirname(__file__), "..", "saved_models")
CARDS = sorted(
    os.path.join(ROOT, name, "card.json")
    for name in os.listdir(ROOT)
    if os.path.exists(os.path.join(ROOT, name, "card.json"))
)
_spec = importlib.util.spec_from_file_location("ship", os.path.join(ROOT, "ship.py"))
ship = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ship)


def _folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def test_the_three_promised_models_are_shipped():
    names = {json.load(open(c))["name"] for c in CARDS}
    assert {"realnvp_two_moons", "glow_digits", "glow_fashion_mnist"} <= names


def test_folder_stays_under_30_mb():
    assert _folder_bytes(ROOT) < 30 * 2**20


@pytest.mark.parametrize("card_path", CARDS, ids=lambda p: os.path.basename(os.path.dirname(p)))
def test_recorded_test_figure_on_real_test_data(card_path):
    card = json.load(open(card_path))
    if card["dataset"] == "fashion_mnist" and not any(
        os.path.isdir(d) for d in data.idx_search_dirs("fashion_mnist")
    ):
        pytest.skip("Fashion-MNIST IDX files not installed (apt-get install dataset-fashion-mnist)")
    serving = tf.saved_model.load(os.path.join(os.path.dirname(card_path), "1"))
    inputs = ship.test_inputs(card["dataset"], card["config"].get("num_bits"))
    assert len(inputs) == card["test_examples"]
    value = ship.score(serving, inputs)
    assert value == pytest.approx(card["value"], abs=2e-4)
    # A trained model beats the uniform baseline by a clear margin.
    if card["metric"] == "test_bits_per_dim_bin_centre":
        assert value < card["config"]["num_bits"] - 0.5
    else:
        assert value < 2 * np.log(8.0)


@pytest.mark.parametrize("card_path", CARDS, ids=lambda p: os.path.basename(os.path.dirname(p)))
def test_card_matches_the_saved_model(card_path):
    card = json.load(open(card_path))
    folder = os.path.dirname(card_path)
    assert os.path.exists(os.path.join(folder, "MODEL_CARD.md"))
    serving_card = json.load(open(os.path.join(folder, "1", "assets.extra", "model_card.json")))
    assert serving_card["config"] == card["config"]
