"""Export a trained model into saved_models/ with a model card and recorded test figures.

    python saved_models/ship.py runs/glow_digits/model.keras --name glow_digits \
        --dataset digits --command "tfflows train"

Writes ``saved_models/<name>/1/`` (the SavedModel, TF Serving's layout),
``saved_models/<name>/model.keras`` (the Keras model, to fine-tune or to load
with ``tfflows.pretrained``), ``saved_models/<name>/card.json`` (what the
tests check), ``saved_models/<name>/MODEL_CARD.md`` and ``samples.png``
(``--root`` puts ``<name>/`` in another folder). Each folder stays under
``FOLDER_BUDGET_BYTES`` (15 MiB).

The test figures are computed through the SavedModel's own signatures on the
whole real test split (a class-conditional model is given each image's
label). For images, the headline is the bits/dim with uniform
dequantization: each n-bit level k scored at k + u, u ~ U[0, 1), through
``log_prob_float``; its expectation over u bounds the discrete model's
bits/dim from above, the figure papers report. It is the mean over
``DEQUANTIZATION["draws"]`` stateless noise draws (draw i from seed
``[DEQUANTIZATION["seed"] + i, first row of the batch]``), each recorded. Second
comes the bits/dim at the bin centres (``log_prob``, every level at k + ½):
deterministic, a midpoint estimate of the discrete bits/dim, not a bound.
For 2-D toys the figure is the NLL in nats of a fixed seeded test sample.

Every model the export takes ships the same way (Glow, RealNVP, TarFlow,
Jet, vector flows). The card's example ``sample`` call is written from the
signature itself, so it names every input the model's ``sample`` takes:
``labels`` for class-conditional models, and TarFlow's ``guidance`` and
``denoise`` where it has them.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

HERE = os.path.dirname(os.path.abspath(__file__))
TOY_TEST = {"n": 20000, "seed": 2}
SAMPLE_TEMPERATURES = [0.5, 0.7, 0.85, 1.0]
DEQUANTIZATION = {"seed": 0, "draws": 4}
FOLDER_BUDGET_BYTES = 15 * 2**20
KERAS_FILE = "model.keras"


def test_inputs(dataset: str, num_bits: int | None):
    """The real test split as the SavedModel's clients send it."""
    from tfflows import data

    if dataset in data.TOY_NAMES:
        return data.sample_toy(dataset, TOY_TEST["n"], seed=TOY_TEST["seed"]).astype(np.float32)
    images = data.load_images(dataset, split="test")
    source = data.num_bits_of(dataset)
    # Clients send 8-bit pixels; an n-bit level k travels as k * 2^(8-n).
    return (images.astype(np.int32) << (8 - source)).astype(np.uint8)


def test_labels(dataset: str) -> np.ndarray:
    """The class ids of the test split, in the order of :func:`test_inputs`."""
    from tfflows import data

    return np.asarray(data.load_images(dataset, split="test", with_labels=True)[1], np.int32)


def _signature_means(serving, signature: str, batches, labels: np.ndarray | None) -> float:
    """Mean bits/dim (or NLL in nats) of a signature over ``batches`` of (row, data)."""
    fn = serving.signatures[signature]
    names = set(fn.structured_input_signature[1])
    if ("labels" in names) != (labels is not None):
        raise ValueError(
            f"score: the {signature} signature takes {sorted(names)}; got "
            f"{'labels' if labels is not None else 'no labels'}."
        )
    key = (names - {"labels"}).pop()
    out = []
    for i, x in batches:
        request = {key: tf.constant(x)}
        if labels is not None:
            request["labels"] = tf.constant(labels[i : i + len(x)])
        res = fn(**request)
        out.append(res["bits_per_dim"].numpy() if "bits_per_dim" in res else -res["log_prob"].numpy())
    return float(np.mean(np.concatenate(out)))


def score(serving, inputs: np.ndarray, batch: int = 500, labels: np.ndarray | None = None) -> float:
    """Mean bits/dim at the bin centres (images) or mean NLL in nats (vectors) from the SavedModel.

    ``labels`` (one per example) go to a class-conditional model's ``labels`` input.
    """
    batches = ((i, inputs[i : i + batch]) for i in range(0, len(inputs), batch))
    return _signature_means(serving, "log_prob", batches, labels)


def dequantized_score(
    serving, images: np.ndarray, num_bits: int, draw: int, batch: int = 500, labels: np.ndarray | None = None
) -> float:
    """Mean bits/dim of uint8 ``images`` with uniform dequantization noise draw ``draw``.

    Each 8-bit pixel is reduced to its n-bit level k and spread to k + u
    (``tfflows.data.dequantize``, stateless: the seed of the batch starting at
    row i is ``[DEQUANTIZATION["seed"] + draw, i]``), then scored through the
    SavedModel's ``log_prob_float``.
    """
    from tfflows.data import dequantize

    seed = DEQUANTIZATION["seed"] + draw

    def batches():
        for i in range(0, len(images), batch):
            key = tf.constant([seed, i], tf.int64)
            yield i, dequantize(images[i : i + batch], num_bits, 8, seed=key).numpy()

    return _signature_means(serving, "log_prob_float", batches(), labels)


def folder_bytes(path: str) -> int:
    """Bytes of every file under ``path``."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def sample_request(signature_card: dict[str, Any]) -> dict[str, str]:
    """Python source of each input of the card's example ``sample`` call, in the signature's order.

    Eight samples at temperature 0.7 from seed 0; a conditional model's label
    (or context) is class 0 (zeros) for all of them; each model option is at its
    ``default``, except ``denoise``, which is on: the samples of a model trained
    with Gaussian noise are meant to be denoised.
    """
    literal = {"num_samples": "tf.constant(8)", "temperature": "tf.constant(0.7)",
               "seed": "tf.constant(0, tf.int64)", "labels": "tf.constant([0])",
               "denoise": "tf.constant(True)"}
    request = {}
    for name, spec in signature_card["inputs"].items():
        if name in literal:
            request[name] = literal[name]
        elif name == "context":
            request[name] = f"tf.zeros([1, {spec['shape'][-1]}])"
        elif "default" in spec:
            request[name] = f"tf.constant({spec['default']!r}, tf.{spec['dtype']})"
        else:
            raise ValueError(f"sample_request: no example value for the sample input {name!r} "
                             f"({spec['dtype']}); expected num_samples, temperature, seed, labels, "
                             "context or an input with a default.")
    return request


def sample_call(signature_card: dict[str, Any]) -> str:
    """The card's example call of the ``sample`` signature, one line of Python."""
    request = sample_request(signature_card)
    return f"m.signatures['sample']({', '.join(f'{k}={v}' for k, v in request.items())})"


def picture_options(signature_card: dict[str, Any]) -> dict[str, Any]:
    """``model.sample`` options that match the example call (denoised where the model can)."""
    return {"denoise": True} if "denoise" in signature_card["inputs"] else {}


def ship_model(
    model,
    name: str,
    dataset: str,
    command: str,
    root: str = HERE,
    notes: str = "",
    training: dict[str, Any] | None = None,
    ship_command: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Writes ``<root>/<name>/``: the SavedModel, ``model.keras``, the card, MODEL_CARD.md, samples.

    Args:
      model: the trained FlowModel.
      name: the folder's name.
      dataset: the data it was trained on (its test split is scored).
      command: the training command, for the card.
      root: the folder that gets ``<name>/``.
      notes: a paragraph appended to MODEL_CARD.md.
      training: the training run's ``results.json`` (``test_bits_per_dim``,
        ``train_seconds``), where known.
      ship_command: the command that shipped it, for the card.
      extra: more card entries (``reship.py``'s record of the recovery).

    Raises:
      ValueError: the folder would be over ``FOLDER_BUDGET_BYTES``.
    """
    from tfflows.callbacks import save_samples_picture
    from tfflows.export import describe_signatures, export_saved_model
    from tfflows.io import atomic_write_json, atomic_write_text

    training = training or {}
    folder = os.path.join(root, name)
    version = os.path.join(folder, "1")
    export_saved_model(model, version, overwrite=True)
    model.save(os.path.join(folder, KERAS_FILE))
    serving = tf.saved_model.load(version)
    inputs = test_inputs(dataset, getattr(model, "num_bits", None))
    conditional = getattr(model, "num_classes", None) is not None
    labels = test_labels(dataset) if conditional else None
    is_image = len(model.event_shape) == 3
    bin_centre = score(serving, inputs, labels=labels)
    dequantization = None
    if is_image:
        values = [
            round(dequantized_score(serving, inputs, model.num_bits or 8, i, labels=labels), 5)
            for i in range(DEQUANTIZATION["draws"])
        ]
        dequantization = {**DEQUANTIZATION, "values": values}
        value = float(np.mean(values))
    else:
        value = bin_centre
    metric = "test_bits_per_dim_dequantized" if is_image else "test_nll_nats"
    card = {
        "name": name,
        "model": type(model).__name__,
        "config": model.get_config(),
        "parameters": model.count_params(),
        "dataset": dataset,
        "test_examples": int(len(inputs)),
        "metric": metric,
        "value": round(value, 5),
        "dequantization": dequantization,
        "test_bits_per_dim_bin_centre": round(bin_centre, 5) if is_image else None,
        "toy_test": TOY_TEST if not is_image else None,
        "files": {"saved_model": "1", "keras": KERAS_FILE},
        "training_command": command,
        "training_test_bits_per_dim_dequantized": training.get("test_bits_per_dim") if is_image else None,
        "training_seconds": training.get("train_seconds"),
        "ship_command": ship_command
        or f"python saved_models/ship.py MODEL.keras --name {name} --dataset {dataset} --command \"{command}\"",
        "recovered": None,
        **(extra or {}),
    }
    atomic_write_json(os.path.join(folder, "card.json"), card)
    sample_card = describe_signatures(model)["signatures"]["sample"]
    options = picture_options(sample_card)
    save_samples_picture(
        model,
        os.path.join(folder, "samples.png"),
        SAMPLE_TEMPERATURES if is_image else [1.0],
        num_bits=getattr(model, "num_bits", 8),
        sample_options=options,
    )
    atomic_write_text(os.path.join(folder, "MODEL_CARD.md"), model_card_text(card, sample_card, notes))
    size = folder_bytes(folder)
    if size > FOLDER_BUDGET_BYTES:
        raise ValueError(
            f"ship: {folder} holds {size:,} bytes, over the budget of {FOLDER_BUDGET_BYTES:,} "
            "(15 MiB); ship a smaller model."
        )
    print(json.dumps({"name": name, metric: card["value"], "bytes": size}))
    return card


def model_card_text(card: dict[str, Any], sample_card: dict[str, Any], notes: str = "") -> str:
    """MODEL_CARD.md from ``card.json``: the figures (dequantized first), the commands, loading, samples.

    ``sample_card`` is the ``sample`` signature's entry of the SavedModel's model card.
    """
    name, config = card["name"], card["config"]
    is_image = card["dequantization"] is not None
    conditional = config.get("num_classes") is not None
    given = ", each image given its test label" if conditional else ""
    arch = {k: v for k, v in config.items() if k not in ("name", "trainable", "dtype")}
    lines = [
        f"# {name}",
        "",
        f"- **Model**: `{card['model']}` ({card['parameters']:,} parameters)",
        f"- **Architecture**: `{json.dumps(arch)}`",
        f"- **Data**: `{card['dataset']}`, {card['test_examples']} test examples",
    ]
    if is_image:
        deq = card["dequantization"]
        lines += [
            f"- **Test bits/dim with uniform dequantization**: {card['value']:.4f} (the likelihood "
            "bound papers report: each pixel level k scored at k + u, u ~ U[0, 1); mean of "
            f"{deq['draws']} noise draws from seed {deq['seed']}, the whole test split through the "
            f"SavedModel's `log_prob_float`{given})",
            f"- **Test bits/dim at bin centres**: {card['test_bits_per_dim_bin_centre']:.4f} (uint8 "
            "pixels scored at k + ½ through the SavedModel's `log_prob`: deterministic, a midpoint "
            "estimate of the discrete model's bits/dim, not a bound)",
        ]
        if card.get("training_test_bits_per_dim_dequantized") is not None:
            lines.append(
                "- **Test bits/dim with uniform dequantization, the training run's own evaluation** "
                f"(other noise draws): {card['training_test_bits_per_dim_dequantized']:.4f}"
            )
    else:
        lines.append(f"- **Test NLL (nats)**: {card['value']:.4f} (a seeded sample of {card['test_examples']})")
    if config.get("noise") == "gaussian":
        lines.append(
            f"- **Trained with Gaussian noise** (std {config['noise_std']} on the data scaled "
            "to [-1, 1]): the figures are the density of a noise-smoothed model, not "
            "comparable with models trained on uniformly dequantized data"
        )
    seconds = card.get("training_seconds")
    lines += [
        f"- **Trained with**: `{card['training_command']}`"
        + (f" ({seconds:.0f} s on a 2-core CPU)" if seconds else ""),
        f"- **Shipped with**: `{card['ship_command']}`",
    ]
    recovered = card.get("recovered")
    if recovered:
        lines.append(
            f"- **Recovered** from the SavedModel of an older exporter (tfflows "
            f"{recovered['source_tfflows_version']}; the training run is gone): its "
            f"{recovered['variables']} variables matched by name to the {recovered['weights']} weights "
            "of the model built from the card's config; its log_prob agrees with the old "
            f"SavedModel's on {recovered['examples']} test examples to a relative "
            f"{recovered['max_rel_log_prob_difference']:.1e} at most (float32 round-off; "
            f"{recovered['max_abs_log_prob_difference']:.2g} nats)"
        )
    lines += [
        "",
        "Load it anywhere TensorFlow runs (no tfflows needed):",
        "",
        "```python",
        "import tensorflow as tf",
        f"m = tf.saved_model.load('saved_models/{name}/1')",
        sample_call(sample_card) if is_image else "m.signatures['log_prob'](x=tf.zeros([1, 2]))",
        "```",
        "",
        "Or as a Keras model, to sample, score or fine-tune with tfflows:",
        "",
        "```python",
        "import tfflows",
        f"model = tfflows.pretrained({name!r})",
        "```",
        "",
    ]
    described = {k: v for k, v in sample_card["inputs"].items() if "default" in v}
    if is_image and described:
        lines += [
            "Options of its `sample` signature (every input is required; the default "
            "reproduces the plain sample):",
            "",
        ]
        lines += [
            f"- `{k}` ({v['dtype']}, default `{v['default']!r}`): {v['description']}"
            for k, v in described.items()
        ]
        lines.append("")
    caption = (
        "Samples (rows: temperatures 0.5, 0.7, 0.85, 1.0"
        + ("; one column per class" if conditional else "")
        + ("; denoised" if picture_options(sample_card).get("denoise") else "")
        + "):"
    )
    lines += [caption if is_image else "Density of samples:", "", "![samples](samples.png)"]
    if notes:
        lines += ["", notes]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    import keras

    import tfflows  # noqa: F401  (registers every class load_model may meet)

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model_path")
    p.add_argument("--name", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--command", required=True, help="the training command, for the card")
    p.add_argument("--notes", default="")
    p.add_argument("--root", default=HERE, help="the folder that gets <name>/ (default: saved_models/)")
    args = p.parse_args(argv)

    model = keras.models.load_model(args.model_path)
    results_path = os.path.join(os.path.dirname(os.path.abspath(args.model_path)), "results.json")
    training = json.load(open(results_path)) if os.path.exists(results_path) else {}
    ship_command = (
        f"python saved_models/ship.py {args.model_path} --name {args.name} "
        f'--dataset {args.dataset} --command "{args.command}"'
    )
    return ship_model(
        model, args.name, args.dataset, args.command, args.root, args.notes, training, ship_command
    )


if __name__ == "__main__":
    main()
