"""Ship a trained IDF (the codec's model) into saved_models/: weights only, with its test figure.

    python saved_models/ship_idf.py /work/runs/idf_fmnist/checkpoints/epoch_40.keras --name idf_fashion_mnist \\
        --dataset fashion_mnist --log /work/runs/idf_fmnist/train.log

Writes ``saved_models/<name>/model.keras`` (no optimizer state: a third of the
training checkpoint) and ``saved_models/<name>/codec_card.json`` with the model's
exact test bits/dim (−log₂ P of the whole test split, float32 as trained) and
the training record. ``tfflows compress saved_models/<name>/model.keras ...``
uses it directly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--name", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--log", default=None, help="the trainer's train.log (one JSON line per epoch)")
    parser.add_argument("--part-size", type=int, default=0,
                        help="the trainer's --part-size (training images per logged epoch; 0: the whole set)")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    from tfflows.data.images import load_images
    from tfflows.io import atomic_path, atomic_write_json
    from tfflows.models.idf import IDF

    trained = keras.models.load_model(args.checkpoint)
    model = IDF.from_config(trained.get_config())
    model.set_weights(trained.get_weights())
    x = load_images(args.dataset, "test").astype(np.float32)
    bpd = float(np.mean(np.concatenate([np.asarray(model.bits_per_dim(x[i:i + 500]))
                                        for i in range(0, len(x), 500)])))
    folder = os.path.join(HERE, args.name)
    os.makedirs(folder, exist_ok=True)
    with atomic_path(os.path.join(folder, "model.keras")) as tmp:
        model.save(tmp)
    history = [json.loads(line) for line in open(args.log)] if args.log else []
    card = {"model": "IDF", "dataset": args.dataset, "test_examples": len(x),
            "metric": "test_bits_per_dim_exact", "value": round(bpd, 4),
            "config": {k: v for k, v in model.get_config().items() if k not in ("name", "trainable", "dtype")},
            "parameters": int(model.count_params()), "logged_epochs": len(history),
            "training_images_seen": len(history) * (args.part_size or len(load_images(args.dataset, "train"))),
            "train_cpu_s": round(sum(h.get("cpu_s", 0.0) for h in history), 1),
            "train_wall_s": round(sum(h.get("wall_s", 0.0) for h in history), 1), "history": history}
    atomic_write_json(os.path.join(folder, "codec_card.json"), card)
    print(json.dumps({k: v for k, v in card.items() if k != "history"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
