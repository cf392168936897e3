"""``export_saved_model``: a model's serving endpoints written as one SavedModel with its model card."""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any

import tensorflow as tf

from tfflows.data.pixels import integer_pixel_bits, saved_model_pixel_dtype
from tfflows.export.endpoints import CARD_FILE, MAX_SAMPLES, Endpoint, Endpoints, declared_num_bits
from tfflows.guard import check_finite_weights
from tfflows.io import atomic_dir, atomic_write_json, remove_leftovers
from tfflows.layers.convolution import conv_implementation

if TYPE_CHECKING:
    from tfflows.models.base import FlowModel

__all__ = ["describe_signatures", "export_saved_model", "is_saved_model_folder"]


def _card(model: FlowModel, endpoints: list[Endpoint], max_samples: int) -> dict[str, Any]:
    import tfflows

    signatures = {e.name: e.card() for e in endpoints}
    signatures = {"serving_default": {**signatures["log_prob"], "same_as": "log_prob"}, **signatures}
    card = {
        "format": "tfflows SavedModel signatures v1",
        "model": type(model).__name__,
        "tfflows_version": tfflows.__version__,
        "tensorflow_version": tf.__version__,
        "event_shape": list(model.event_shape),
        "num_dims": int(model.num_dims),
        "num_classes": model.num_classes,
        "context_dim": model.context_dim,
        "max_samples": max_samples,
        "config": model.get_config(),
        "signatures": signatures,
    }
    if model.data_kind == "image":
        n = declared_num_bits(model)
        card["num_bits"] = n
        card["dequantization"] = (
            f"integer pixels x are reduced to k = floor(x / 2^("
            f"{integer_pixel_bits(saved_model_pixel_dtype(n), n)} - {n})) and "
            "scored at k + 0.5: log_prob is the density at the bin centre in pixel-level units "
            "(a deterministic estimate of the log-probability of the integer image); "
            "log_prob_float scores float levels as given."
        )
    return card


def describe_signatures(model: FlowModel, max_samples: int = MAX_SAMPLES) -> dict[str, Any]:
    """The model card written beside an export: every signature's inputs and outputs.

    Args:
      model: a :class:`~tfflows.models.FlowModel`.
      max_samples: the cap on ``num_samples``.

    Returns:
      A JSON-safe dict; ``["signatures"][name]["inputs"|"outputs"][tensor]``
      gives ``dtype``, ``shape`` (−1 for the batch) and ``description``.
    """
    return _card(model, Endpoints(model, max_samples).endpoints(), max_samples)


def is_saved_model_folder(path: str) -> bool:
    """True where ``path`` holds what :func:`export_saved_model` writes: the graph and the model card."""
    return os.path.isfile(os.path.join(path, "saved_model.pb")) and os.path.isfile(
        os.path.join(path, CARD_FILE)
    )


def _check_path(path: str, overwrite: bool) -> bool:
    """Whether ``path`` has something to replace; raises where it must not be replaced."""
    if not os.path.lexists(path):
        return False
    if not os.path.isdir(path) or os.path.islink(path):
        raise ValueError(f"export_saved_model: path {path!r} exists and is not a folder.")
    if not os.listdir(path):
        return True  # an empty folder: nothing lost by replacing it
    if not overwrite:
        raise ValueError(
            f"export_saved_model: {path!r} is not empty; TF Serving versions are immutable, "
            "so export to a new version folder or pass overwrite=True."
        )
    if not is_saved_model_folder(path):
        raise ValueError(
            f"export_saved_model: {path!r} is not empty and holds no SavedModel written by tfflows "
            f"(expected saved_model.pb and {CARD_FILE}); refusing to overwrite it."
        )
    return True


def export_saved_model(
    model: FlowModel, path: str | os.PathLike, *, max_samples: int = MAX_SAMPLES, overwrite: bool = False
) -> str:
    """Writes ``model`` as a SavedModel with the signatures of this module's docstring.

    For TF Serving, ``path`` is ``<base>/<model_name>/<version>``. Besides
    the SavedModel, ``assets.extra/model_card.json`` describes every
    signature (see :func:`describe_signatures`).

    Args:
      model: a :class:`~tfflows.models.FlowModel` (trained: an uninitialised
        ActNorm is exported as it is, with a warning).
      path: the version folder to write; must be missing or empty unless
        ``overwrite``.
      max_samples: the largest ``num_samples`` a ``sample`` request may ask for.
      overwrite: replace an existing SavedModel at ``path`` (one written by
        tfflows: with ``saved_model.pb`` and ``assets.extra/model_card.json``).

    The new version is written completely into a hidden temporary folder
    beside ``path`` and then moved into place; the old version is removed
    only after that, so a failed or killed export leaves it whole.

    Returns:
      ``path`` as a string.

    Raises:
      NonFiniteWeightsError: a weight holds inf or NaN (a ``ValueError``).
      ValueError: not a flow model, a bad ``max_samples`` or an occupied ``path``.
    """
    from tfflows.models.base import FlowModel

    if not isinstance(model, FlowModel):
        raise ValueError(f"export_saved_model: expected a tfflows FlowModel, got {type(model).__name__}.")
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise ValueError(f"export_saved_model: max_samples must be a positive integer, got {max_samples!r}.")
    if model.data_kind == "image" and not 1 <= declared_num_bits(model) <= 16:
        raise ValueError(f"export_saved_model: num_bits must be in 1..16, got {model.num_bits!r}.")
    check_finite_weights(model, "export")
    if not model.is_initialized:
        warnings.warn(
            f"export_saved_model: {type(model).__name__} has ActNorm layers that were "
            "never initialised (an untrained model?); exporting it as it is.",
            RuntimeWarning,
            stacklevel=2,
        )
    if not isinstance(overwrite, bool):
        raise ValueError(f"export_saved_model: overwrite must be True or False, got {overwrite!r}.")
    path = os.fspath(path)
    if not path.strip():
        raise ValueError(f"export_saved_model: expected a path for the version folder, got {path!r}.")
    parent = os.path.dirname(os.path.abspath(path))
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise ValueError(f"export_saved_model: cannot write {path!r}: {parent!r} is a file, not a folder.")
    replace = _check_path(path, overwrite)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # The base folder holds every version: a killed export of any of them left its hidden
    # temporary folder here (only tfflows' own names of writers that are gone are removed).
    remove_leftovers(os.path.dirname(os.path.abspath(path)), recursive=False)

    endpoints = Endpoints(model, max_samples).endpoints()
    # Stock convolutions in the graph: the CPU matmul forms suit training here,
    # not necessarily the machine that serves.
    with conv_implementation("conv"):
        concrete = {e.name: e.function().get_concrete_function() for e in endpoints}
    card = _card(model, endpoints, max_samples)
    with atomic_dir(path, overwrite=replace) as tmp:
        _write_signatures(concrete, tmp)
        os.makedirs(os.path.join(tmp, "assets.extra"), exist_ok=True)
        atomic_write_json(os.path.join(tmp, CARD_FILE), card)
    return path


def _write_signatures(concrete: dict[str, Any], path: str) -> None:
    """Saves traced functions as a SavedModel's signatures, and the variables they read.

    The saved object holds exactly the TF variables the graphs capture, in
    ``signature_variables``: holding the Keras model would add its Keras
    wrappers as a second, unnamed copy of every weight, which TF1-style loaders
    (TF Serving, ``saved_model_cli run``) restore in place of the captured ones,
    which then read as uninitialised. The functions are saved as signatures
    only, not also as attributes of the saved object: TensorFlow writes a
    second copy of every graph (and of every function it calls) for an
    attribute, which doubled ``saved_model.pb``; loaders reach the
    functions through ``loaded.signatures[name]``. TF Serving's
    ``serving_default`` is the first function (``log_prob``).
    """
    seen: dict[int, tf.Variable] = {}
    for function in concrete.values():
        for variable in function.variables:
            seen.setdefault(id(variable), variable)
    root = tf.Module()
    root.signature_variables = list(seen.values())
    first = next(iter(concrete.values()))
    tf.saved_model.save(root, path, signatures={**concrete, "serving_default": first})
