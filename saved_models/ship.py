"""Export a trained model into saved_models/ with a model card and recorded test figures.

    python saved_models/ship.py runs/glow_digits/model.keras --name glow_digits \
        --dataset digits --command "tfflows train"

Writes ``saved_models/<name>/1/`` (the SavedModel, TF Serving's layout),
``saved_models/<name>/card.json`` (what the tests check) and
``saved_models/<name>/MODEL_CARD.md``. The recorded test figure is computed
through the SavedModel's own ``log_prob`` signature on the whole real test
split: for images, uint8 pixels scored at their bin centres (deterministic);
for 2-D toys, a fixed seeded test sample.
"""

from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np
import tensorflow as tf

HERE = os.path.dirname(os.path.abspath(__file__))
TOY_TEST = {"n": 20000, "seed": 2}


def test_inputs(dataset: str, num_bits: int | None):
    """The real test split as the SavedModel's clients send it."""
    from tfflows import data

    if dataset in data.TOY_NAMES:
        return data.sample_toy(dataset, TOY_TEST["n"], seed=TOY_TEST["seed"]).astype(np.float32)
    images = data.load_images(dataset, split="test")
    source = data.num_bits_of(dataset)
    # Clients send 8-bit pixels; an n-bit level k travels as k * 2^(8-n).
    return (images.astype(np.int32) << (8 - source)).astype(np.uint8)


def score(serving, inputs: np.ndarray, batch: int = 500) -> float:
    """Mean bits/dim (images) or mean NLL in nats (vectors) from the SavedModel."""
    fn = serving.signatures["log_prob"]
    key = list(fn.structured_input_signature[1].keys())[0]
    out = []
    for i in range(0, len(inputs), batch):
        res = fn(**{key: tf.constant(inputs[i:i + batch])})
        out.append(res["bits_per_dim"].numpy() if "bits_per_dim" in res else -res["log_prob"].numpy())
    return float(np.mean(np.concatenate(out)))


def main() -> None:
    import keras

    import tfflows
    from tfflows.callbacks import save_samples_picture

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model_path")
    p.add_argument("--name", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--command", required=True, help="the training command, for the card")
    p.add_argument("--notes", default="")
    args = p.parse_args()

    model = keras.models.load_model(args.model_path)
    folder = os.path.join(HERE, args.name)
    version = os.path.join(folder, "1")
    tfflows.export_saved_model(model, version, overwrite=True)
    serving = tf.saved_model.load(version)
    inputs = test_inputs(args.dataset, getattr(model, "num_bits", None))
    value = score(serving, inputs)
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
    with open(os.path.join(folder, "card.json"), "w") as f:
        json.dump(card, f, indent=2)
    picture = os.path.join(folder, "samples.png")
    save_samples_picture(model, picture, [0.5, 0.7, 0.85, 1.0] if is_image else [1.0],
                         num_bits=getattr(model, "num_bits", 8))
    unit = "bits/dim (uint8 pixels at bin centres, via the SavedModel)" if is_image else "NLL (nats)"
    dequant = card["training_test_bits_per_dim_dequantized"]
    lines = [
        f"# {args.name}", "",
        f"- **Model**: `{type(model).__name__}` ({model.count_params():,} parameters)",
        f"- **Architecture**: `{json.dumps({k: v for k, v in model.get_config().items() if k not in ('name', 'trainable', 'dtype')})}`",
        f"- **Data**: `{args.dataset}`, {len(inputs)} test examples",
        f"- **Test {unit}**: {value:.4f}",
    ]
    if dequant is not None:
        lines.append(f"- **Test bits/dim with uniform dequantization noise** (training's own "
                     f"evaluation): {dequant:.4f}")
    lines += [
        f"- **Trained with**: `{args.command}`" + (
            f" ({training['train_seconds']:.0f} s on a 2-core CPU)" if training.get("train_seconds") else ""),
        f"- **Exported with**: `{card['ship_command']}`",
        "", "Load it anywhere TensorFlow runs (no tfflows needed):", "",
        "```python", "import tensorflow as tf",
        f"m = tf.saved_model.load('saved_models/{args.name}/1')",
        "m.signatures['sample'](num_samples=tf.constant(8), temperature=tf.constant(0.7), "
        "seed=tf.constant(0, tf.int64))" if is_image else
        "m.signatures['log_prob'](x=tf.zeros([1, 2]))", "```", "",
        "Samples (rows: temperatures 0.5, 0.7, 0.85, 1.0):" if is_image else "Density of samples:",
        "", "![samples](samples.png)",
    ]
    if args.notes:
        lines += ["", args.notes]
    with open(os.path.join(folder, "MODEL_CARD.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(json.dumps({"name": args.name, metric: round(value, 5)}))


if __name__ == "__main__":
    main()
