"""Recover a shipped model's weights from its SavedModel and ship it again with today's exporter.

    python saved_models/reship.py                       # every shipped folder with a card and 1/
    python saved_models/reship.py glow_digits jet_fashion_mnist
    python saved_models/reship.py --cards-only           # rewrite MODEL_CARD.md from card.json

The models first shipped in saved_models/ are SavedModels of an older
exporter, and their training runs are gone. For each folder this script:

1. builds the model from ``card.json``'s config (configs with old argument
   names load through ``from_config``);
2. loads ``1/`` with ``tf.saved_model.load`` and gathers its variables: the
   ones the object holds (``model_variables`` of the first exporter,
   ``signature_variables`` of today's) and every one a signature captures;
3. matches them to the model's weights by name (the Keras path, e.g.
   ``coupling_l0_k0/conditioner/conv2d/kernel``), with the layout changes
   listed in ``LAYOUT_CHANGES`` and the training state in ``FRESH``; every
   weight must be matched exactly once and every variable used exactly once,
   with equal shape and dtype, or it refuses and names each problem;
4. checks that the recovered model's ``log_prob`` equals the old SavedModel's
   ``log_prob`` signature on the real test split (a seeded sample for 2-D
   toys), to ``RTOL`` of float32 round-off, and records the largest difference;
5. ships it with ``ship.ship_model`` (SavedModel with today's signatures,
   ``model.keras``, card, MODEL_CARD.md, samples), keeping the training
   command, time and figure of the old card and the notes of the old
   MODEL_CARD.md, and records the recovery in the card (``recovered``).

Run again on a folder it already shipped, it recovers from today's SavedModel
the same way (the check then compares today's export with the Keras model).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("ship", os.path.join(HERE, "ship.py"))
ship = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ship)

RTOL = 1e-5
"""Relative tolerance of the log_prob check (float32 has 6e-8; a flow adds up thousands of terms)."""

ATOL = 1e-3
"""Absolute tolerance of the log_prob check, in nats (for log-densities near 0)."""

FRESH = {
    "nonfinite_steps": "the count of training steps skipped for a non-finite loss: training "
    "bookkeeping that no signature reads, so older exports left it out; it starts at 0",
}
"""Weights (by last name) that an export may lack, kept at their start value."""


def packed_lu(parts: dict[str, np.ndarray]) -> np.ndarray:
    """The LU 1x1 convolution's one weight from its three older ones.

    Before commit 9bdd026 the layer kept ``lower`` (L below its
    diagonal), ``upper`` (U above it) and ``log_diag``; now one c×c
    ``lower_upper`` holds all three: L's strict lower triangle, U's strict
    upper triangle, log_diag on the diagonal. Only those parts were ever read.
    """
    lower, upper, log_diag = parts["lower"], parts["upper"], parts["log_diag"]
    return np.tril(lower, -1) + np.triu(upper, 1) + np.diag(log_diag)


LAYOUT_CHANGES = {"lower_upper": (("lower", "upper", "log_diag"), packed_lu)}
"""A weight's last name → (the older variables it replaces, in its layer; how to combine them)."""


def saved_variables(loaded: Any) -> dict[str, tf.Variable]:
    """Every variable of a loaded SavedModel by name (``:0`` dropped); refuses a name twice."""
    found: dict[int, tf.Variable] = {}
    held = list(getattr(loaded, "model_variables", [])) + list(getattr(loaded, "signature_variables", []))
    for variable in held + [v for fn in loaded.signatures.values() for v in fn.variables]:
        found.setdefault(id(variable), variable)
    names = Counter(v.name for v in found.values())
    twice = sorted(n for n, k in names.items() if k > 1)
    if twice:
        raise ValueError(f"reship: the SavedModel has several variables named {twice}; cannot match by name.")
    return {v.name.removesuffix(":0"): v for v in found.values()}


def match_weights(model: Any, old: dict[str, tf.Variable]) -> tuple[list, dict[str, Any]]:
    """(weight, value) pairs for every weight of ``model``, from ``old``, and a record of the match.

    Raises:
      ValueError: a weight unmatched or matched twice, a variable left over or
        used twice, or a shape or dtype that differs; every problem is named.
    """
    weights = {w.path: w for w in model.weights}
    problems = []
    if len(weights) != len(model.weights):
        problems.append("the model has two weights with one path")
    used: Counter = Counter()
    pairs, migrated, fresh = [], [], []
    for path, weight in weights.items():
        layer, _, last = path.rpartition("/")
        if path in old:
            value = old[path].numpy()
            used[path] += 1
        elif last in LAYOUT_CHANGES and all(f"{layer}/{p}" in old for p in LAYOUT_CHANGES[last][0]):
            names, combine = LAYOUT_CHANGES[last]
            value = combine({p: old[f"{layer}/{p}"].numpy() for p in names})
            used.update(f"{layer}/{p}" for p in names)
            migrated.append(path)
        elif last in FRESH:
            fresh.append(path)
            continue
        else:
            problems.append(f"weight {path} {tuple(weight.shape)} has no variable in the SavedModel")
            continue
        if tuple(value.shape) != tuple(weight.shape) or value.dtype != np.dtype(weight.dtype):
            problems.append(
                f"weight {path} is {tuple(weight.shape)} {weight.dtype}; the SavedModel's is "
                f"{tuple(value.shape)} {value.dtype}"
            )
            continue
        pairs.append((weight, value))
    problems += [f"variable {n} used {k} times" for n, k in used.items() if k > 1]
    problems += [f"variable {n} {tuple(old[n].shape)} matches no weight" for n in sorted(set(old) - set(used))]
    if problems:
        raise ValueError(f"reship {model.name}: cannot recover the weights by name:\n  " + "\n  ".join(problems))
    record = {"variables": len(old), "weights": len(weights), "migrated": migrated, "fresh": fresh}
    return pairs, record


def old_log_prob(loaded: Any, inputs: np.ndarray, labels: np.ndarray | None, batch: int = 500) -> np.ndarray:
    """The ``log_prob`` output of the SavedModel's ``log_prob`` signature, per example."""
    fn = loaded.signatures["log_prob"]
    key = (set(fn.structured_input_signature[1]) - {"labels"}).pop()
    out = []
    for i in range(0, len(inputs), batch):
        request = {key: tf.constant(inputs[i : i + batch])}
        if labels is not None:
            request["labels"] = tf.constant(labels[i : i + batch])
        out.append(fn(**request)["log_prob"].numpy())
    return np.concatenate(out)


def new_log_prob(model: Any, inputs: np.ndarray, labels: np.ndarray | None, batch: int = 500) -> np.ndarray:
    """The recovered Keras model's ``log_prob`` of the same inputs (uint8 pixels at their bin centres)."""
    score = tf.function(model.log_prob, autograph=False)
    out = []
    for i in range(0, len(inputs), batch):
        context = None if labels is None else tf.constant(labels[i : i + batch])
        out.append(score(tf.constant(inputs[i : i + batch]), context).numpy())
    return np.concatenate(out)


def recover(folder: str) -> tuple[Any, dict[str, Any]]:
    """The model of ``folder`` with the weights of its SavedModel, and the record of the check."""
    import keras

    import tfflows

    card = json.load(open(os.path.join(folder, "card.json")))
    keras.backend.clear_session()  # auto-named layers (conv2d_1, ...) then get the names they had
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # old argument names in old cards
        model = getattr(tfflows, card["model"]).from_config(card["config"])
    version = os.path.join(folder, "1")
    loaded = tf.saved_model.load(version)
    pairs, record = match_weights(model, saved_variables(loaded))
    for weight, value in pairs:
        weight.assign(value)
    inputs = ship.test_inputs(card["dataset"], getattr(model, "num_bits", None))
    labels = ship.test_labels(card["dataset"]) if getattr(model, "num_classes", None) else None
    want = old_log_prob(loaded, inputs, labels)
    got = new_log_prob(model, inputs, labels)
    difference = np.abs(got - want)
    if not (np.all(np.isfinite(got)) and np.all(difference <= ATOL + RTOL * np.abs(want))):
        worst = int(np.argmax(difference))
        raise ValueError(
            f"reship {card['name']}: the recovered log_prob differs from the SavedModel's beyond "
            f"atol {ATOL} + rtol {RTOL}: example {worst}: {got[worst]} against {want[worst]}."
        )
    source = os.path.join(version, "assets.extra", "model_card.json")
    record.update(
        {
            "source_tfflows_version": json.load(open(source)).get("tfflows_version", "unknown")
            if os.path.exists(source)
            else "unknown",
            "examples": int(len(inputs)),
            "max_abs_log_prob_difference": float(difference.max()),
            "max_rel_log_prob_difference": float((difference / np.maximum(np.abs(want), 1e-30)).max()),
            "tolerance": {"atol": ATOL, "rtol": RTOL},
            "value_before": card["value"],
            "metric_before": card["metric"],
            "command": f"python saved_models/reship.py {card['name']}",
        }
    )
    return model, record


def notes_of(folder: str) -> str:
    """The notes paragraph(s) after the samples picture of the folder's MODEL_CARD.md."""
    text = open(os.path.join(folder, "MODEL_CARD.md")).read()
    return text.split("![samples](samples.png)", 1)[-1].strip() if "![samples]" in text else ""


def reship(name: str, root: str = HERE) -> dict[str, Any]:
    """Recovers ``root/name`` and ships it again; returns the new card."""
    folder = os.path.join(root, name)
    old_card = json.load(open(os.path.join(folder, "card.json")))
    model, record = recover(folder)
    training = {
        "test_bits_per_dim": old_card.get("training_test_bits_per_dim_dequantized"),
        "train_seconds": old_card.get("training_seconds"),
    }
    card = ship.ship_model(
        model,
        name,
        old_card["dataset"],
        old_card["training_command"],
        root,
        notes_of(folder),
        training,
        ship_command=f"python saved_models/reship.py {name}",
        extra={"recovered": record},
    )
    before = old_card.get("test_bits_per_dim_bin_centre", old_card["value"])
    after = card["test_bits_per_dim_bin_centre"] if card["dequantization"] else card["value"]
    if abs(after - before) > 2e-4:
        raise ValueError(f"reship {name}: the test figure moved from {before} to {after}.")
    return card


def rewrite_card(name: str, root: str = HERE) -> None:
    """Writes ``MODEL_CARD.md`` again from ``card.json`` and the SavedModel's model card (no model needed)."""
    from tfflows.io import atomic_write_text

    folder = os.path.join(root, name)
    card = json.load(open(os.path.join(folder, "card.json")))
    served = json.load(open(os.path.join(folder, "1", "assets.extra", "model_card.json")))
    text = ship.model_card_text(card, served["signatures"]["sample"], notes_of(folder))
    atomic_write_text(os.path.join(folder, "MODEL_CARD.md"), text)


def shipped(root: str = HERE) -> list[str]:
    """The folders with a card.json and a SavedModel, by name."""
    return sorted(
        n
        for n in os.listdir(root)
        if os.path.isfile(os.path.join(root, n, "card.json")) and os.path.isdir(os.path.join(root, n, "1"))
    )


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="folders of saved_models/ (default: every shipped one)")
    p.add_argument("--cards-only", action="store_true", help="only write MODEL_CARD.md again from card.json")
    args = p.parse_args(argv)
    for name in args.names or shipped():
        if args.cards_only:
            rewrite_card(name)
            continue
        card = reship(name)
        print(json.dumps({"name": name, "recovered": card["recovered"]}))


if __name__ == "__main__":
    main()
