"""``tfflows score``: out-of-distribution scores of images under a model."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from tfflows.cli.common import load_model, recorded_source

if TYPE_CHECKING:
    import argparse

__all__ = ["run"]


def _density(path: str, what: str):
    """An OOD density from a .keras file or an exported SavedModel folder."""
    from tfflows.ood import ImageDensity

    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise ValueError(
                f"{what}: expected a .keras file or a SavedModel folder, got the folder "
                f"{path!r} without saved_model.pb."
            )
        return ImageDensity.from_saved_model(path)
    return ImageDensity.from_model(load_model(path), name=os.path.basename(path))


def run(args: argparse.Namespace) -> dict:
    from tfflows import ood
    from tfflows.io import atomic_write_json, strict_json

    model = _density(args.model_path, "MODEL")
    background = None if args.background is None else _density(args.background, "--background")
    dataset = args.in_dataset
    if dataset is None:
        recorded = recorded_source(args.model_path) if not os.path.isdir(args.model_path) else {}
        if not recorded:
            raise ValueError(
                "pass --in-dataset: there is no results.json beside the model to say "
                "which data it was trained on."
            )
        dataset = recorded["dataset"]
    load = dict(max_examples=args.max_examples, seed=args.seed, data_dir=args.data_dir)
    shape = model.event_shape
    inside = ood.load_ood_images(dataset, shape, split=args.split, **load)
    train = None
    if args.train_examples > 0:
        train = ood.load_ood_images(
            dataset,
            shape,
            split="train",
            data_dir=args.data_dir,
            max_examples=args.train_examples,
            seed=args.seed,
        )
    outside = {
        spec: ood.load_ood_images(spec, shape, split=args.split, **{**load, "seed": args.seed + 1 + i})
        for i, spec in enumerate(args.ood_dataset)
    }
    print(
        f"tfflows score: {model.name} ({model.num_bits} bits, {list(shape)}) on {len(inside)} "
        f"{args.split} images of {dataset!r}"
        + (f", background {background.name}" if background else ", no --background: no likelihood ratio"),
        file=sys.stderr,
    )
    table = ood.evaluate(
        model,
        inside,
        outside,
        background=background,
        train_data=train,
        batch_size=args.batch_size,
        typicality_batch=args.typicality_batch if train is not None else None,
    )
    table = strict_json(
        {
            "model": args.model_path,
            "background": args.background,
            "in_dataset": dataset,
            "split": args.split,
            **table,
        }
    )
    print(ood.format_table(table))
    if args.json_out:
        atomic_write_json(args.json_out, table)
        print(f"tfflows score: table written to {args.json_out}", file=sys.stderr)
    return table
