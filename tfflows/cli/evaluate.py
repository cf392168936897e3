"""``tfflows evaluate``: a trained model's NLL on a split of its data."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from tfflows.cli.common import load_data, load_model, pipeline, recorded_source

if TYPE_CHECKING:
    import argparse

__all__ = ["run"]


def run(args: argparse.Namespace) -> dict:
    from tfflows.io import strict_json

    model = load_model(args.model_path)
    dataset, data_dir = args.dataset, args.data_dir
    recorded = recorded_source(args.model_path)
    if dataset is None:
        if not recorded:
            raise ValueError(
                "pass --dataset: there is no results.json beside the model to say "
                "which data it was trained on."
            )
        dataset = recorded["dataset"]
    if data_dir is None and dataset == recorded.get("dataset"):
        # an older results.json kept it only among the arguments
        data_dir = recorded.get("data_dir", (recorded.get("args") or {}).get("data_dir"))
    source = f"dataset {dataset!r}" + (f" from {data_dir!r}" if data_dir else "")
    if recorded and args.dataset is None:
        source += f" (as recorded in {recorded['path']})"
    print(f"tfflows evaluate: {args.split} split of {source}", file=sys.stderr)
    num_bits = getattr(model, "num_bits", None)
    # A CSV file is split as it was for training (its recorded columns, fraction and seed).
    trained = (recorded.get("args") or {}) if dataset == recorded.get("dataset") else {}
    x, y, num_bits, source_bits = load_data(
        dataset,
        data_dir,
        args.split,
        num_bits,
        with_labels=model.is_conditional,
        columns=trained.get("columns"),
        val_fraction=trained.get("val_fraction", 0.2),
        seed=trained.get("seed", 0),
        test_fraction=trained.get("test_fraction", 0.0),  # 0: a run from before the three-way split
    )
    if tuple(x.shape[1:]) != tuple(model.event_shape):
        raise ValueError(
            f"expected data of the model's shape {tuple(model.event_shape)}, got examples of shape "
            f"{tuple(x.shape[1:])} in --dataset {dataset!r}."
        )
    ds = pipeline(x, y, num_bits, source_bits, args.batch_size, False, args.seed)
    out = model.evaluate(ds, return_dict=True, verbose=0)
    out = strict_json(
        {"dataset": dataset, "data_dir": data_dir, "split": args.split, "examples": len(x), **out}
    )
    print(json.dumps(out, allow_nan=False))
    return out
