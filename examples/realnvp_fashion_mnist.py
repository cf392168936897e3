"""RealNVP on Fashion-MNIST (checkerboard and channel couplings, ResNet conditioners).

python examples/realnvp_fashion_mnist.py --epochs 10 --out runs/realnvp_fm
"""

import argparse
import os

import tfflows
from tfflows import data
from tfflows.callbacks import SampleGrid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="runs/realnvp_fashion_mnist")
    args = parser.parse_args()

    train = data.make_dataset(
        data.load_images("fashion_mnist", "train", args.data_dir), batch_size=args.batch_size, seed=0
    )
    test = data.make_dataset(
        data.load_images("fashion_mnist", "test", args.data_dir), batch_size=256, shuffle=False, seed=1
    )
    model = tfflows.RealNVP((28, 28, 1), num_levels=2, depth=args.blocks, width=args.width)
    model.compile(optimizer=tfflows.make_optimizer(1e-3, warmup_steps=500))
    model.fit(
        train,
        epochs=args.epochs,
        validation_data=test,
        callbacks=[SampleGrid(os.path.join(args.out, "samples"))],
    )
    model.save(os.path.join(args.out, "realnvp.keras"))
    print("test bits/dim:", model.evaluate(test, return_dict=True, verbose=0)["bits_per_dim"])


if __name__ == "__main__":
    main()
