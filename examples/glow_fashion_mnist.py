"""Glow on Fashion-MNIST with a grid of samples at several temperatures per epoch.

Needs the Fashion-MNIST IDX files: Debian's `dataset-fashion-mnist`, a folder
given with --data-dir, or a network for TFDS.

    python examples/glow_fashion_mnist.py --epochs 10 --out runs/glow_fm
"""

import argparse
import os

import keras

import tfflows
from tfflows import data
from tfflows.callbacks import SampleGrid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="runs/glow_fashion_mnist")
    args = parser.parse_args()

    train = data.make_dataset(
        data.load_images("fashion_mnist", "train", args.data_dir), batch_size=args.batch_size, seed=0
    )
    test = data.make_dataset(
        data.load_images("fashion_mnist", "test", args.data_dir), batch_size=256, shuffle=False, seed=1
    )
    model = tfflows.Glow((28, 28, 1), num_levels=args.levels, num_steps=args.steps, width=args.width)
    model.compile(optimizer=tfflows.make_optimizer(1e-3, warmup_steps=500))
    os.makedirs(args.out, exist_ok=True)
    model.fit(
        train,
        epochs=args.epochs,
        validation_data=test,
        callbacks=[
            SampleGrid(os.path.join(args.out, "samples")),
            keras.callbacks.ModelCheckpoint(os.path.join(args.out, "glow.keras")),
        ],
    )
    print("test bits/dim:", model.evaluate(test, return_dict=True, verbose=0)["bits_per_dim"])


if __name__ == "__main__":
    main()
