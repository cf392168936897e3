"""Export a trained model into saved_models/ with a model card and recorded test figures.

    python saved_models/ship.py runs/glow_digits/model.keras --name glow_digits \
        --dataset digits --command "tfflows train"

Writes ``saved_models/<name>/1/`` (the SavedModel, TF Serving's layout),
``saved_models/<name>/card.json`` (what the tests check) and
``saved_models/<name>/MODEL_CARD.md`` (``--root`` puts ``<name>/`` in another
folder). The recorded test figure is computed through the SavedModel's own
``log_prob`` signature on the whole real test split: for images, uint8
pixels scored at their bin centres (deterministic; a class-conditional
model given each image's label); for 2-D toys, a fixed seeded test sample.

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
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

HERE = os.path.dirname(os.path.abspath(__file__))
TOY_TEST = {"n": 20000, "seed": 2}
SAMPLE_TEMPERATURES = [0.5, 0.7, 0.85, 1.0]


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


def score(serving, inputs: np.ndarray, batch: int = 500, labels: np.ndarray | None = None) -> float:
    """Mean bits/dim (images) or mean NLL in nats (vectors) from the SavedModel.

    ``labels`` (one per example) go to a class-conditional model's ``labels`` input.
    """
    fn = serving.signatures["log_prob"]
    names = set(fn.structured_input_signature[1])
    if ("labels" in names) != (labels is not None):
        raise ValueError(f"score: the log_prob signature takes {sorted(names)}; got "
                         f"{'labels' if labels is not None else 'no labels'}.")
    key = (names - {"labels"}).pop()
    out = []
    for i in range(0, len(inputs), batch):
        request = {key: tf.constant(inputs[i:i + batch])}
        if labels is not None:
            request["labels"] = tf.constant(labels[i:i + batch])
        res = fn(**request)
        out.append(res["bits_per_dim"].numpy() if "bits_per_dim" in res else -res["log_prob"].numpy())
    return float(np.mean(np.concatenate(out)))


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


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    import keras

    import tfflows
    from tfflows.callbacks import save_samples_picture
    from tfflows.export import describe_signatures
    from tfflows.io import atomic_write_json, atomic_write_text

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model_path")
    p.add_argument("--name", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--command", required=True, help="the training command, for the card")
    p.add_argument("--notes", default="")
    p.add_argument("--root", default=HERE, help="the folder that gets <name>/ (default: saved_models/)")
    args = p.parse_args(argv)

    model = keras.models.load_model(args.model_path)
    folder = os.path.join(args.root, args.name)
    version = os.path.join(folder, "1")
    tfflows.export_saved_model(model, version, overwrite=True)
    serving = tf.saved_model.load(version)
    inputs = test_inputs(args.dataset, getattr(model, "num_bits", None))
    conditional = getattr(model, "num_classes", None) is not None
    value = score(serving, inputs, labels=test_labels(args.dataset) if conditional else None)
    is_image = len(model.event_shape) == 3
    metric = "test_bits_per_dim_bin_centre" if is_image else "test_nll_nats"
    results_path = os.path.join(os.path.dirname(os.path.abspath(args.model_path)), "results.json")
    training = json.load(open(results_path)) if os.path.exists(results_path) else {}
    card = {
        "name": args.name, "model": type(model).__name__, "config": model.get_config(),
        "parameters": model.count_params(), "dataset": args.dataset,
        "test_examples": int(len(inputs)), "metric": metric, "value": round(value, 5),
        "toy_test": TOY_TEST if not is_image else None,
        "training_command": args.command,
        "training_test_bits_per_dim_dequantized": training.get("test_bits_per_dim") if is_image else None,
        "training_seconds": training.get("train_seconds"),
        "ship_command": f"python saved_models/ship.py {args.model_path} --name {args.name} "
                        f"--dataset {args.dataset} --command \"{args.command}\"",
    }
    atomic_write_json(os.path.join(folder, "card.json"), card)
    sample_card = describe_signatures(model)["signatures"]["sample"]
    options = picture_options(sample_card)
    save_samples_picture(model, os.path.join(folder, "samples.png"),
                         SAMPLE_TEMPERATURES if is_image else [1.0],
                         num_bits=getattr(model, "num_bits", 8), sample_options=options)
    unit = "bits/dim (uint8 pixels at bin centres, via the SavedModel)" if is_image else "NLL (nats)"
    if conditional:
        unit += ", each image given its test label"
    dequant = card["training_test_bits_per_dim_dequantized"]
    config = model.get_config()
    lines = [
        f"# {args.name}", "",
        f"- **Model**: `{type(model).__name__}` ({model.count_params():,} parameters)",
        f"- **Architecture**: `{json.dumps({k: v for k, v in config.items() if k not in ('name', 'trainable', 'dtype')})}`",
        f"- **Data**: `{args.dataset}`, {len(inputs)} test examples",
        f"- **Test {unit}**: {value:.4f}",
    ]
    if dequant is not None:
        lines.append(f"- **Test bits/dim with uniform dequantization noise** (training's own "
                     f"evaluation): {dequant:.4f}")
    if config.get("noise") == "gaussian":
        lines.append(f"- **Trained with Gaussian noise** (std {config['noise_std']} on the data scaled "
                     f"to [-1, 1]): the figures are the density of a noise-smoothed model, not "
                     f"comparable with models trained on uniformly dequantized data")
    lines += [
        f"- **Trained with**: `{args.command}`" + (
            f" ({training['train_seconds']:.0f} s on a 2-core CPU)" if training.get("train_seconds") else ""),
        f"- **Exported with**: `{card['ship_command']}`",
        "", "Load it anywhere TensorFlow runs (no tfflows needed):", "",
        "```python", "import tensorflow as tf",
        f"m = tf.saved_model.load('saved_models/{args.name}/1')",
        sample_call(sample_card) if is_image else
        "m.signatures['log_prob'](x=tf.zeros([1, 2]))", "```", "",
    ]
    described = {k: v for k, v in sample_card["inputs"].items() if "default" in v}
    if is_image and described:
        lines += ["Options of its `sample` signature (every input is required; the default "
                  "reproduces the plain sample):", ""]
        lines += [f"- `{k}` ({v['dtype']}, default `{v['default']!r}`): {v['description']}"
                  for k, v in described.items()]
        lines.append("")
    caption = "Samples (rows: temperatures 0.5, 0.7, 0.85, 1.0" + (
        "; one column per class" if conditional else "") + (
        "; denoised" if options.get("denoise") else "") + "):"
    lines += [caption if is_image else "Density of samples:", "", "![samples](samples.png)"]
    if args.notes:
        lines += ["", args.notes]
    atomic_write_text(os.path.join(folder, "MODEL_CARD.md"), "\n".join(lines) + "\n")
    print(json.dumps({"name": args.name, metric: round(value, 5)}))
    return card


if __name__ == "__main__":
    main()
