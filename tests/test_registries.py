"""Transforms and OOD scores are registries, like conditioners and models: one function plus one
registration reaches every consumer (the layers, Glow and the CLI; score(), evaluate and export)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import tfflows
from tfflows import ood
from tfflows.bijectors import AffineTransform, register_transform, transform_names
from tfflows.layers import CouplingLayer

IMAGES = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 1)).astype(np.uint8)


def exp_affine(scale_fn, tanh_factor, maps_to_latent, name, **_):
    """An affine coupling with an unbounded exp scale: a transform a user might add."""
    return AffineTransform("exp", tanh_factor, maps_to_latent, name=name)


register_transform("exp-affine", exp_affine, overwrite=True)


def test_a_registered_transform_reaches_the_layers_and_glow():
    assert transform_names()[:3] == ("affine", "additive", "spline") and "exp-affine" in transform_names()
    layer = CouplingLayer(
        "half", 0, transform="exp-affine", conditioner="mlp", hidden_units=4, num_hidden=1, dtype="float64"
    )
    x = tf.constant(np.random.default_rng(1).standard_normal((3, 4)))
    layer.build(x.shape)
    for w in layer.trainable_weights:
        w.assign(w + 0.1)
    bij = layer.bijector(None)
    y = bij.forward(x)
    np.testing.assert_allclose(bij.inverse(tf.identity(y)).numpy(), x.numpy(), atol=1e-10)
    model = tfflows.Glow((8, 8, 1), num_levels=1, num_steps=1, width=4, num_bits=5, coupling="exp-affine")
    assert np.all(np.isfinite(model.log_prob(np.full((2, 8, 8, 1), 3.5, np.float32)).numpy()))
    with pytest.raises(ValueError, match=r"coupling must be one of \(.*'exp-affine'\), got 'nope'"):
        tfflows.Glow((8, 8, 1), num_levels=1, coupling="nope")


def test_register_transform_refuses_bad_registrations():
    with pytest.raises(ValueError, match="a transform named 'affine' is registered already"):
        register_transform("affine", exp_affine)
    with pytest.raises(ValueError, match="factory must be callable, got int"):
        register_transform("x", 3)


def mean_level(images, bits_per_dim, num_bits):
    return tf.reduce_mean(tf.cast(images, tf.float32), axis=[1, 2, 3])


@pytest.fixture
def mean_level_score():
    score = ood.register_score(ood.ImageScore("mean_level", mean_level, "the mean pixel"), overwrite=True)
    yield score
    ood.unregister_score("mean_level")


def test_a_registered_score_reaches_score_and_evaluate(mean_level_score):
    model = tfflows.Glow((8, 8, 1), num_levels=1, num_steps=1, width=4, num_bits=5)
    out = ood.score(model, IMAGES, batch_size=4)
    np.testing.assert_allclose(out["mean_level"], IMAGES.reshape(6, -1).mean(1), rtol=1e-6)
    assert [s.name for s in ood.image_scores()] == ["complexity_corrected", "mean_level"]
    table = ood.evaluate(model, IMAGES, {"flipped": 255 - IMAGES}, batch_size=4)
    assert "mean_level" in table["methods"]


def test_register_score_refuses_reserved_and_taken_names():
    with pytest.raises(ValueError, match="'nll' is a name of score\\(\\)'s own outputs"):
        ood.register_score(ood.ImageScore("nll", mean_level, ""))
    with pytest.raises(ValueError, match="name must be an identifier, got 'a b'"):
        ood.register_score(ood.ImageScore("a b", mean_level, ""))


@pytest.mark.slow
def test_a_registered_score_reaches_the_exported_signature(mean_level_score, tmp_path):
    from tfflows.export import export_saved_model

    model = tfflows.Glow((8, 8, 1), num_levels=1, num_steps=1, width=4, num_bits=5)
    model.initialize(IMAGES)
    export_saved_model(model, tmp_path / "sm")
    out = tf.saved_model.load(str(tmp_path / "sm")).signatures["score"](images=tf.constant(IMAGES))
    np.testing.assert_allclose(out["mean_level"].numpy(), IMAGES.reshape(6, -1).mean(1), rtol=1e-6)


def test_every_keras_serializable_name_of_tfflows_names_one_class():
    """Two classes registered under one name (the codec's ConvNet and the conditioners' ConvNet were
    both "tfflows>ConvNet") make the later import win, and .keras files of the other stop loading."""
    import importlib
    import inspect
    import pkgutil

    import keras

    import tfflows

    classes = set()
    for info in pkgutil.walk_packages(tfflows.__path__, "tfflows."):
        if info.name.startswith("tfflows.cli.__main__"):
            continue
        module = importlib.import_module(info.name)
        classes |= {c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == info.name}
    clashes = []
    for cls in classes:
        name = keras.saving.get_registered_name(cls)
        if name.startswith("tfflows") and keras.saving.get_registered_object(name) is not cls:
            clashes.append(f"{cls.__module__}.{cls.__qualname__} as {name!r}")
    assert not clashes, clashes
