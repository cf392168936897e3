"""OOD detection with a Fashion-MNIST Glow: AUROC/AUPR/FPR95 of every tfflows.ood method.

In-distribution: the Fashion-MNIST test split. OOD sets: (a) the 8x8 sklearn
digits (all 1,797) upscaled to 28x28 and rescaled to 0..255, (b) uniform
noise, (c) constant images, and (d) one Fashion-MNIST class held out of
training, scored by a second Glow trained (for a bounded time) without it.

    # 1. a background model for the likelihood ratio (5 minutes on a CPU):
    tfflows train --model glow --dataset fashion_mnist --width 32 --steps 2 --levels 2 \
        --perturb 0.2 --time-limit 5 --epochs 100 --out runs/bg_fashion_p02
    # 2. the held-out-class model (also 5 minutes), then every table:
    python bench/ood.py --background runs/bg_fashion_p02/model.keras \
        --heldout-class 0 --heldout-minutes 5 --heldout-out runs/heldout_0 --json-out ood.json

A finished held-out model in --heldout-out is reused, not retrained (so is
--matched-out: a small Glow of the background's architecture trained on every
class with --matched-minutes, which scores (a)-(c) with a background of its
own size).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from machine import cpu_name  # bench/machine.py (this folder is on sys.path when run)


def train_small(k: int | None, minutes: float, out: str, width: int, seed: int):
    """A small Glow trained on Fashion-MNIST without class ``k`` (None: every class), ``minutes`` at most."""
    import keras

    import tfflows
    from tfflows import ood
    from tfflows.io import atomic_write_json

    path = os.path.join(out, "model.keras")
    if os.path.exists(path):
        print(f"held-out model: reusing {path}")
        return keras.models.load_model(path)
    spec = "fashion_mnist" if k is None else f"fashion_mnist:without={k}"
    train = ood.load_ood_images(spec, (28, 28, 1), split="train")
    model = tfflows.Glow((28, 28, 1), num_levels=2, num_steps=2, width=width, num_bits=8, seed=seed)
    start = time.time()
    ood.train_background(model, train, rate=0.0, epochs=1000, time_limit=minutes * 60, seed=seed, verbose=2)
    os.makedirs(out, exist_ok=True)
    model.save(path)
    atomic_write_json(
        os.path.join(out, "results.json"),
        {
            "dataset": spec,
            "train_images": len(train),
            "width": width,
            "minutes_limit": minutes,
            "train_seconds": round(time.time() - start, 1),
        },
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        default="saved_models/glow_fashion_mnist/1",
        help="the in-distribution model: SavedModel folder or .keras file",
    )
    parser.add_argument("--background", default=None, help="background model (.keras or SavedModel)")
    parser.add_argument("--n-in", type=int, default=10000, help="Fashion-MNIST test images scored")
    parser.add_argument("--n-synthetic", type=int, default=2000, help="noise and constant images")
    parser.add_argument("--n-train", type=int, default=5000, help="training images for the typicality mean")
    parser.add_argument("--heldout-class", type=int, default=None)
    parser.add_argument("--heldout-minutes", type=float, default=5.0)
    parser.add_argument("--heldout-width", type=int, default=32)
    parser.add_argument("--heldout-out", default="runs/heldout")
    parser.add_argument(
        "--matched-minutes",
        type=float,
        default=None,
        help="also train a small Glow (--heldout-width) on every class for this long "
        "and score sets (a)-(c) with it: the background model's own architecture",
    )
    parser.add_argument("--matched-out", default="runs/small_all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()

    from tfflows import ood
    from tfflows.io import atomic_write_json

    start = time.time()
    model = (
        ood.as_density(args.model)
        if os.path.isdir(args.model)
        else ood.ImageDensity.from_model(__import__("keras").models.load_model(args.model))
    )
    background = None
    if args.background:
        import keras

        import tfflows  # noqa: F401  (registers the classes)

        background = (
            ood.as_density(args.background)
            if os.path.isdir(args.background)
            else ood.ImageDensity.from_model(keras.models.load_model(args.background))
        )
    shape = model.event_shape
    inside = ood.load_ood_images("fashion_mnist", shape, max_examples=args.n_in)
    train = ood.load_ood_images("fashion_mnist", shape, split="train", max_examples=args.n_train)
    digits = np.concatenate([ood.load_ood_images("digits", shape, split=s) for s in ("train", "test")])
    sets = {
        "digits_28x28": digits,
        "noise": ood.load_ood_images("noise", shape, max_examples=args.n_synthetic, seed=args.seed + 1),
        "constant": ood.load_ood_images("constant", shape, max_examples=args.n_synthetic, seed=args.seed + 2),
    }
    result = {
        "command": "python bench/ood.py " + " ".join(os.sys.argv[1:]),
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "model": args.model,
        "background": args.background,
    }
    table = ood.evaluate(model, inside, sets, background=background, train_data=train)
    print(ood.format_table(table))
    result["main"] = table
    if args.heldout_class is not None:
        k = args.heldout_class
        held = ood.ImageDensity.from_model(
            train_small(k, args.heldout_minutes, args.heldout_out, args.heldout_width, args.seed)
        )
        inside_k = ood.load_ood_images(f"fashion_mnist:without={k}", shape, max_examples=args.n_in)
        train_k = ood.load_ood_images(
            f"fashion_mnist:without={k}", shape, split="train", max_examples=args.n_train
        )
        class_k = ood.load_ood_images(f"fashion_mnist:class={k}", shape)
        table_k = ood.evaluate(
            held, inside_k, {f"fashion_class_{k}": class_k}, background=background, train_data=train_k
        )
        print(ood.format_table(table_k))
        result["heldout"] = {"class": k, "model": args.heldout_out, **table_k}
    if args.matched_minutes:
        small = ood.ImageDensity.from_model(
            train_small(None, args.matched_minutes, args.matched_out, args.heldout_width, args.seed)
        )
        table_s = ood.evaluate(small, inside, sets, background=background, train_data=train)
        print(ood.format_table(table_s))
        result["matched"] = {"model": args.matched_out, **table_s}
    result["seconds"] = round(time.time() - start, 1)
    if args.json_out:
        atomic_write_json(args.json_out, result)
    print(json.dumps({"seconds": result["seconds"], "cpu": result["cpu"]}))


if __name__ == "__main__":
    main()
