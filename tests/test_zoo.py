"""tfflows.pretrained: a shipped model by name, as a Keras model or a SavedModel, from the folder it names.

The shipped models' own figures are checked in test_shipped_models.py; here,
how a name, a kind and a folder are found and refused. The small two-moons
RealNVP (1 MB) is the model copied into temporary folders.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import tfflows
from tfflows import zoo

ROOT = os.path.join(os.path.dirname(__file__), "..", "saved_models")
SMALL = "realnvp_two_moons"


@pytest.fixture
def models(tmp_path):
    """A folder of models holding a copy of the small RealNVP."""
    shutil.copytree(os.path.join(ROOT, SMALL), tmp_path / SMALL)
    return tmp_path


def test_the_checkout_is_the_default_folder(monkeypatch):
    monkeypatch.delenv(zoo.ENV_VAR, raising=False)
    assert os.path.samefile(zoo.models_folder(), ROOT)
    names = zoo.available_models()
    assert {"glow_digits", "glow_fashion_mnist", "jet_fashion_mnist", SMALL} <= set(names)
    assert names == sorted(names) and not any(n.startswith("idf_") for n in names)


def test_an_unknown_name_is_refused_with_the_available_ones(monkeypatch):
    monkeypatch.delenv(zoo.ENV_VAR, raising=False)
    with pytest.raises(ValueError, match="no shipped model named 'glow_cifar'") as caught:
        tfflows.pretrained("glow_cifar")
    message = str(caught.value)
    assert "\n" not in message
    assert f"available: {', '.join(zoo.available_models())}." in message


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match=r"kind must be one of \['keras', 'saved_model'\], got 'onnx'"):
        tfflows.pretrained(SMALL, kind="onnx")


def test_the_environment_variable_names_the_folder(models, monkeypatch):
    monkeypatch.setenv(zoo.ENV_VAR, str(models))
    assert zoo.available_models() == [SMALL]
    model = tfflows.pretrained(SMALL)
    assert isinstance(model, tfflows.VectorRealNVP)
    served = tfflows.pretrained(SMALL, kind="saved_model")
    x = np.random.default_rng(0).normal(size=(5, 2)).astype("float32")
    got = served.signatures["log_prob"](x=tf.constant(x))["log_prob"].numpy()
    np.testing.assert_allclose(got, model.log_prob(x).numpy(), rtol=1e-5)


def test_the_root_argument_wins_over_the_environment(models, tmp_path_factory, monkeypatch):
    monkeypatch.setenv(zoo.ENV_VAR, str(tmp_path_factory.mktemp("empty")))
    assert zoo.available_models() == []
    assert zoo.available_models(root=models) == [SMALL]
    with pytest.raises(ValueError, match=r"available: \(none\)\."):
        tfflows.pretrained(SMALL)


def test_a_missing_folder_says_how_to_name_one(tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(
        ValueError, match=rf"no models folder at .*nowhere. \(from {zoo.ENV_VAR}\); set {zoo.ENV_VAR}"
    ):
        tfflows.pretrained(SMALL)


def test_a_folder_without_the_kind_says_which_file(models):
    os.remove(models / SMALL / "model.keras")
    with pytest.raises(
        ValueError, match=f"{SMALL} has no model.keras .*reship.py {SMALL}.*kind='saved_model'"
    ):
        tfflows.pretrained(SMALL, root=models)
    assert "log_prob" in tfflows.pretrained(SMALL, kind="saved_model", root=models).signatures
