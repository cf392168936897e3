"""The model zoo: the trained models shipped in ``saved_models/``, loaded by name.

Each shipped model is a folder ``<name>/`` holding ``1/`` (the SavedModel of
:func:`tfflows.export_saved_model`, TF Serving's layout), ``model.keras`` (the
Keras model, to sample, score or fine-tune), ``card.json`` and
``MODEL_CARD.md`` (the data, the test figures, the commands). A folder with a
``card.json`` is a shipped model; its name is the folder's.

Where the models are found, first match wins:

1. the ``root`` argument;
2. the environment variable ``TFFLOWS_MODELS`` (:data:`ENV_VAR`): a folder of
   model folders;
3. ``saved_models/`` beside the ``tfflows`` package: a source checkout, or an
   editable install (``pip install -e .``) of one.

The models are not package data: a wheel would carry tens of megabytes of
them. With tfflows installed from a wheel, set ``TFFLOWS_MODELS`` to a
checkout's ``saved_models/``.
"""

from __future__ import annotations

import os
from typing import Any, Literal

__all__ = ["ENV_VAR", "KINDS", "available_models", "models_folder", "pretrained"]

ENV_VAR = "TFFLOWS_MODELS"
"""The environment variable naming the folder of shipped models."""

KINDS = {"keras": "model.keras", "saved_model": "1"}
"""What :func:`pretrained` can load, and the file or folder of a model's folder each one reads."""

_CARD = "card.json"


def models_folder(root: str | os.PathLike | None = None) -> str:
    """The folder of shipped models: ``root``, else ``$TFFLOWS_MODELS``, else the checkout's models.

    Raises:
      ValueError: that folder does not exist.
    """
    if root is not None:
        folder, source = os.fspath(root), "root"
    elif os.environ.get(ENV_VAR):
        folder, source = os.environ[ENV_VAR], ENV_VAR
    else:
        package = os.path.dirname(os.path.abspath(__file__))
        folder, source = os.path.join(os.path.dirname(package), "saved_models"), "the checkout"
    if not os.path.isdir(folder):
        raise ValueError(
            f"tfflows.pretrained: no models folder at {folder!r} (from {source}); set {ENV_VAR} to "
            "a folder of shipped models, such as a tfflows checkout's saved_models/."
        )
    return folder


def available_models(root: str | os.PathLike | None = None) -> list[str]:
    """The names of the shipped models (folders with a ``card.json``), sorted.

    Args:
      root: the folder of models; see :func:`models_folder` for the default.
    """
    folder = models_folder(root)
    return sorted(n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n, _CARD)))


def pretrained(
    name: str, kind: Literal["keras", "saved_model"] = "keras", root: str | os.PathLike | None = None
) -> Any:
    """Loads a shipped model by name.

    ``kind="keras"`` gives the :class:`~tfflows.models.FlowModel` of
    ``model.keras`` (``log_prob``, ``sample``, ``fit`` to fine-tune);
    ``kind="saved_model"`` gives ``tf.saved_model.load`` of ``1/``, whose
    ``signatures`` need neither tfflows nor TFP (see :mod:`tfflows.export`).

    Args:
      name: a name from :func:`available_models`, e.g. ``"glow_digits"``.
      kind: ``"keras"`` or ``"saved_model"``.
      root: the folder of models; by default ``$TFFLOWS_MODELS``, else the
        checkout's ``saved_models/`` (see :func:`models_folder`).

    Returns:
      The Keras model, or the loaded SavedModel.

    Raises:
      ValueError: an unknown ``kind`` or ``name`` (naming the available
        ones), or a model folder without the file ``kind`` reads.
    """
    if kind not in KINDS:
        raise ValueError(f"tfflows.pretrained: kind must be one of {sorted(KINDS)}, got {kind!r}.")
    folder = models_folder(root)
    names = available_models(folder)
    if name not in names:
        raise ValueError(
            f"tfflows.pretrained: no shipped model named {name!r} in {folder}; "
            f"available: {', '.join(names) or '(none)'}."
        )
    path = os.path.join(folder, name, KINDS[kind])
    if not os.path.exists(path):
        raise ValueError(
            f"tfflows.pretrained: {name} has no {KINDS[kind]} (expected {path}); ship it again with "
            f"saved_models/reship.py {name}, or load kind="
            f"{next(k for k in KINDS if k != kind)!r}."
        )
    if kind == "saved_model":
        import tensorflow as tf

        return tf.saved_model.load(path)
    import keras

    from tfflows import register_keras_objects

    register_keras_objects()
    return keras.models.load_model(path)
